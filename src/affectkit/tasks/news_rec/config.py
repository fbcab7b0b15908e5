"""Configuration of the SEIN-style news recommender (task ``news-rec``). No code of the paper is
public: every inferred choice (spec 2.3) is a key here, and docs/tasks/news-rec.md says which."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from affectkit.core.config import TrainConfig, help_field
from affectkit.core.task import MetricSpec

# the official MIND metrics, the first selects the best epoch (on validation)
METRICS = (
    MetricSpec("auc", True, "mean per-impression AUC (official MIND semantics)"),
    MetricSpec("mrr", True, "mean per-impression MRR; every clicked item counts"),
    MetricSpec("ndcg@5", True, "nDCG@5 with gain 2^y - 1"),
    MetricSpec("ndcg@10", True, "nDCG@10"),
)
VARIANTS = ("sein", "sein-no-lstm", "sein-no-sa", "global", "local", "nrms")


@dataclass
class DataConfig:
    train_dir: str = help_field("train", "sub-folder (of --data) with the training behaviors.tsv and news.tsv")
    eval_dir: str = help_field("dev", "sub-folder scored by evaluate (MIND-small: dev)")
    his_size: int = help_field(50, "history items kept for the NRMS-style user encoder (recommenders: 50)", min=1)
    title_size: int = help_field(30, "title tokens kept (recommenders: 30)", min=1)
    npratio: int = help_field(4, "unclicked candidates per click, from the same impression (MIND practice: 4)", min=1)
    valid_dir: str = help_field("", "sub-folder with validation impressions (Adressa: valid); '' = the last\n"
                                "valid_hours of the training split")
    valid_hours: float = help_field(24.0, "the last hours of the training split are held out for validation\n"
                                    "(not trained on; they select the best epoch)", min=0.0)


@dataclass
class ModelConfig:
    variant: Literal["sein", "sein-no-lstm", "sein-no-sa", "global", "local", "nrms"] = help_field(
        "sein", "sein: global + local (LSTM and self-attention); sein-no-lstm / sein-no-sa: one local branch;\n"
        "global / local: one module; nrms: content-only NRMS-style user encoder over the history")
    dim: int = help_field(64, "embedding size d", min=1)
    news_encoder: Literal["nrms", "bow"] = help_field(
        "nrms", "nrms: word embeddings -> multi-head self-attention -> additive attention (NRMS-style);\n"
        "bow: the mean of the word embeddings (cheaper: every step encodes every news)")
    word_dim: int = help_field(64, "word embedding size of the news encoder", min=1)
    heads: int = help_field(4, "attention heads of the news encoder and the NRMS user encoder", min=1)
    news_ids: bool = help_field(True, "add a news ID embedding to the content vector of news seen in training")
    gcn_layers_global: int = help_field(2, "LightGCN layers of the global module (layer mean, no self-loops)", min=0)
    gcn_layers_stage: int = help_field(1, "LightGCN layers of the stage encoder (shared across stages)", min=0)
    stage_hours: float = help_field(24.0, "stage width in hours (spec ablation: 6, 12, 24, 48, 168)", min=1e-3)
    n_stages: int = help_field(7, "stages before the impression's boundary that the local module sees", min=1)
    sa_layers: int = help_field(1, "self-attention (Transformer encoder) layers over the stages", min=1)
    sa_heads: int = help_field(2, "self-attention heads over the stages", min=1)
    local_fuse: Literal["gate", "linear"] = help_field("gate", "local fusion of the LSTM and self-attention outputs")
    dropout: float = help_field(0.1, "dropout in the encoders", min=0.0, max=0.9)


def _train_defaults() -> TrainConfig:
    return TrainConfig(max_steps=1_000_000_000, batch_size=128, lr=1e-3, weight_decay=1e-5, clip_grad_norm=1.0,
                       eval_every=0, checkpoint_every=0, log_every=20)


@dataclass
class ScheduleConfig:
    epochs: int = help_field(3, "epochs over the training clicks (MIND practice: 5-10 with content)", min=1)
    patience: int = help_field(2, "stop after N epochs without a better validation AUC (0: never)", min=0)


@dataclass
class NewsRecConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=_train_defaults)
