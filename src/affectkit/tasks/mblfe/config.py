"""Configuration of MBLFE (task ``mblfe``) and of the baselines trained by the same loop.

Values marked (release) follow the authors' code (MingshiYan/MBLFE); the README and the shell
scripts of the release disagree on some of them, and both sets ship as recipes
(commands/train/mblfe-*.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from affectkit.core.config import TrainConfig, help_field

MODELS = ("mblfe", "lightgcn-target", "lightgcn-merged", "mf-bpr", "crgcn")


@dataclass
class DataConfig:
    behaviors: list[str] = help_field([], "funnel order of the behaviors, target last ([] = from the data: a known "
                                      "funnel, else by falling interaction count)")
    target: str = help_field("", "the target behavior ('' = the last of the funnel)")
    eval_split: Literal["validation", "test"] = help_field(
        "validation", "split scored during training (selects the best epoch) and by `evaluate` (--split)")


@dataclass
class ModelConfig:
    name: Literal["mblfe", "lightgcn-target", "lightgcn-merged", "mf-bpr", "crgcn"] = help_field(
        "mblfe", "mblfe, or a baseline: lightgcn-target, lightgcn-merged, mf-bpr, crgcn (cascade)")
    dim: int = help_field(64, "embedding size d (release: 64)", min=1)
    layers: int = help_field(2, "GCN layers per behavior (release: 2)", min=0)
    gcn_variant: Literal["official", "standard"] = help_field(
        "official", "official: L2-normalise rows after each layer and sum layers (release); standard: LightGCN mean")
    label_size: int = help_field(64, "expert output size d' (release: 64)", min=1)
    num_experts: int = help_field(10, "experts K (release README: Tmall 18, Taobao 10, Yelp 14)", min=1)
    gate_mode: Literal["random_subset", "learned", "all"] = help_field(
        "random_subset", "random_subset: the release's untrained noisy gate (a random above-mean subset in training,\n"
        "all experts at inference); learned: gate values scale the slots, with a load-balancing term; all: no gate")
    gate_noise_floor: float = help_field(0.01, "added to softplus(h W_noise) in the noise scale (release: 0.01)", min=0.0)


@dataclass
class LossConfig:
    neg_count: int = help_field(4, "negatives per (user, behavior) (release: 4)", min=1)
    ssl_tau: float = help_field(0.7, "InfoNCE temperature of L_SSL (release .sh: 0.7; README 0.9 / 0.7)", min=1e-6)
    ssl_reg: float = help_field(0.1, "weight of L_SSL (release: 0.1)", min=0.0)
    reg_weight: float = help_field(1e-4, "weight of L_emb (release .sh: 1e-4; README 1e-3)", min=0.0)
    load_balance: float = help_field(1e-2, "weight of the CV^2 load-balancing term (gate_mode learned only)", min=0.0)


@dataclass
class ScheduleConfig:
    epochs: int = help_field(200, "epochs; one epoch visits every user once (release: up to 500; 200 in sibling logs)",
                             min=1)
    patience: int = help_field(20, "stop after N epochs without a better validation hit@10 (release: 20; 0: never)",
                               min=0)


def _train_defaults() -> TrainConfig:
    # train.max_steps caps the epochs (resolve_config sets steps = epochs x batches per epoch unless
    # --max-steps is smaller); evaluation, checkpoints and patience run once per epoch.
    return TrainConfig(max_steps=1_000_000_000, batch_size=1024, lr=1e-3, weight_decay=0.0, clip_grad_norm=0.0,
                       eval_every=0, checkpoint_every=0, log_every=10)


@dataclass
class MBLFEConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=_train_defaults)
