"""Configuration of SSM (task ``au-fe``). Values marked (release) follow the authors' code; the
embedded benchmark's recipe (commands/train/au-fe.yaml) changes what a from-scratch tiny encoder needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from affectkit.core.config import TrainConfig, help_field


@dataclass
class DataConfig:
    au_dir: str = help_field("", "AU dataset root ('' = the embedded benchmark's au/ folder)")
    fe_dir: str = help_field("", "FE dataset root ('' = the embedded benchmark's fe/ folder)")
    au_format: Literal["bp4d", "disfa", "ssm-bp4d", "ssm-disfa"] = help_field(
        "bp4d", "AU layout: BP4D release, DISFA release, or SSM manifests")
    fe_format: Literal["dfew", "ferv39k", "mafw", "ssm"] = help_field("dfew", "FE layout")
    au_vocab: str = help_field("bp4d", "AU vocabulary (bp4d: 12 AUs, disfa: 8 AUs)")
    fe_vocab: str = help_field("basic7", "expression vocabulary (basic7 or mafw11)")
    au_fold: int = help_field(1, "AU test fold (1-3, subject-exclusive)", min=1)
    fe_fold: int = help_field(1, "FE test fold (DFEW/MAFW 1-5; FERV39K has one split)", min=1)
    n_frames: int = help_field(16, "frames per clip (release: 16)", min=1)
    image_size: int = help_field(224, "input resolution (release: 224)", min=8)
    au_label_fraction: float = help_field(1.0, "fraction of AU training clips whose labels are used", min=0.0, max=1.0)
    fe_label_fraction: float = help_field(1.0, "fraction of FE training clips whose labels are used", min=0.0, max=1.0)
    fe_per_item: int = help_field(1, "FE clips per paired item (batch of FE clips = batch_size x this)", min=1)
    au_per_item: int = help_field(1, "AU clips per paired item", min=1)
    augment: bool = help_field(True, "training augmentation: crop, flip, brightness (same for all frames)")
    cache_frames: bool = help_field(False, "decode all frames once into memory (small datasets)")
    disfa_threshold: int = help_field(2, "DISFA: an AU is active iff intensity >= this", min=0, max=5)
    disfa_camera: Literal["Left", "Right"] = help_field("Left", "DISFA camera")
    subset_seed: int = help_field(0, "seed of the labelled-subset draw (label fractions < 1)", min=0)


@dataclass
class ModelConfig:
    vision: str = help_field("tiny", "'tiny' (random init from a small CLIPVisionConfig), a local CLIP path, or\n"
                             "'embedded' (the embedded benchmark's pretrained tiny tower, trained on first use)")
    text: str = help_field("minilm", "'minilm' (bundled sentence encoder), or a local CLIP / HF text encoder path")
    tiny_width: int = help_field(64, "tiny vision tower width", min=1)
    tiny_layers: int = help_field(4, "tiny vision tower depth", min=1)
    tiny_heads: int = help_field(4, "tiny vision tower heads", min=1)
    tiny_patch: int = help_field(8, "tiny vision tower patch size", min=1)
    moe_blocks: int = help_field(6, "blocks whose MLP becomes shared + private experts (release: last 6)", min=0)
    moe_experts: int = help_field(4, "private experts per block", min=1)
    moe_hidden: int = help_field(512, "expert hidden width", min=1)
    moe_top_k: int = help_field(2, "experts used per token", min=1)
    moe_alpha: float = help_field(0.1, "initial weight of the private experts", min=0.0)
    moe_noise: float = help_field(0.01, "routing noise std (training only)", min=0.0)
    fe_heads: int = help_field(8, "FE temporal transformer heads", min=1)
    fe_mlp: int = help_field(1024, "FE temporal transformer MLP width", min=1)
    au_heads: int = help_field(8, "AU local temporal attention heads", min=1)
    n_ctx: int = help_field(8, "learnable context tokens per class (CoOp)", min=1)
    use_tsp: bool = help_field(True, "Textual Semantic Prototypes: prompt-learned class prototypes + similarity logits")
    use_dpm: bool = help_field(True, "Dynamic Prior Mapping between AU and FE prototypes")
    branches: Literal["both", "au", "fe"] = help_field("both", "both = SSM; au / fe = single-task baselines")
    proto_scale: float = help_field(0.1, "weight of the prototype logits", min=0.0)
    proto_temp: float = help_field(0.01, "cosine temperature of the prototype logits", min=1e-6)
    smoothing: Literal["legacy-pair", "temporal5", "none"] = help_field(
        "legacy-pair", "AU logit smoothing: the release's pair conv, a 5-tap clip average, or none")


@dataclass
class LossConfig:
    au_weight: float = help_field(2.0, "weight of the AU BCE loss (release: 2)", min=0.0)
    ema_normalize: bool = help_field(True, "divide each loss by an EMA of its own value")
    ema_momentum: float = help_field(0.95, "momentum of the loss EMAs (reset every epoch)", min=0.0, max=1.0)
    ramp_epochs: int = help_field(30, "r(e) = 2 / (1 + exp(-10 e / ramp_epochs)) - 1 weights the prototype losses", min=0)
    ramp_steps: int = help_field(0, "if > 0, the ramp counts optimizer steps, r = 2 / (1 + exp(-10 step / ramp_steps)) - 1:\n"
                                 "one schedule for runs whose epochs differ in length (joint vs single-task)", min=0)
    mixup_alpha: float = help_field(0.4, "AU clip mixup Beta(alpha, alpha); 0 disables", min=0.0)


@dataclass
class OptimConfig:
    lr_encoder: float = help_field(1e-6, "visual encoder incl. MoE experts and gates (release: 1e-6)", min=0.0)
    lr_delta: float = help_field(1e-2, "DPM residuals (release: 1e-2)", min=0.0)
    lr_other: float = help_field(1e-4, "prompt contexts, temporal heads, linear heads, gates (release: 1e-4)", min=0.0)
    weight_decay: float = help_field(1e-4, "AdamW weight decay", min=0.0)
    ema_decay: float = help_field(0.99, "weight EMA decay (evaluation uses the EMA weights); 0 disables", min=0.0, max=1.0)


@dataclass
class EvalConfig:
    adaptive_f1: bool = help_field(False, "also report the release's optimistic ssm_adaptive_f1 (searched on test labels)")


@dataclass
class AUFEConfig:
    """SSM: bidirectional facial action unit detection and expression recognition."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=3000, batch_size=8, lr=1e-4, weight_decay=1e-4, schedule="multistep", milestones=[1500, 2500],
        gamma=0.1, clip_grad_norm=1.0, eval_every=500, checkpoint_every=500))
