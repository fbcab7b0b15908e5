"""Configuration of task ``tqd``: the meta CSV and clips, the timestep sampler (one noise-level
convention, s = 1 is pure noise), the pixel-space denoiser and the held-out golden evaluation. Only
the abstract of TQD is public: every inferred choice (spec 6.3) is a key here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from affectkit.core.config import TrainConfig, help_field
from affectkit.core.task import MetricSpec

# held-out GOLDEN denoising loss (the first selects the best checkpoint), and per noise band
BAND_KEYS = ("0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0")
METRICS = (
    MetricSpec("golden_loss", False, "held-out golden flow loss, mean over the five noise bands (fixed draws)"),
    *(MetricSpec(f"loss {band}", False, f"held-out golden flow loss with s in [{band.replace('-', ', ')})")
      for band in BAND_KEYS),
)
SAMPLER_MODES = ("uniform", "logit-normal", "mode", "tqd-categorical", "tqd-beta", "tqd-truncated", "tqd-continuous")


@dataclass
class DataConfig:
    meta: str = help_field("meta.csv", "meta CSV under --data (Open-Sora columns path, text, aes, flow + vq, type)")
    frames: int = help_field(16, "frames per clip (shorter clips are looped, longer ones cut)", min=1)
    size: int = help_field(0, "resize clips to this short side and centre-crop square (0: as stored)", min=0)
    train_types: list[str] = help_field([], "types trained on (golden, motion, quality, low); [] = every type\n"
                                        "of the train split")
    eval_subset: str = help_field("heldout", "evaluate on test-split golden clips of this `subset` ('' = every\n"
                                  "test-split golden clip)")
    balanced: bool = help_field(False, "type-balanced batches: each type present oversampled to the largest\n"
                                "type's count, so batches hold equal shares in expectation")


@dataclass
class SamplerConfig:
    mode: Literal["uniform", "logit-normal", "mode", "tqd-categorical", "tqd-beta", "tqd-truncated",
                  "tqd-continuous"] = help_field(
        "tqd-categorical", "timestep sampler: a base density, or TQD (motion-rich clips noisier, high-quality\n"
        "clips less noisy)")
    base: Literal["logit_normal", "uniform", "mode"] = help_field("logit_normal", "the TQD modes' base density")
    mu0: float = help_field(0.0, "logit-normal mean of the base (noise-level convention: > 0 noisier)")
    logit_std: float = help_field(1.0, "logit-normal standard deviation", min=1e-3)
    mode_scale: float = help_field(1.29, "scale of the mode density (SD3)")
    delta: float = help_field(1.0, "TQD shift of the logit-normal mean: motion mu0 + delta, quality mu0 - delta",
                              min=0.0)
    p_skew: float = help_field(0.5, "share of samples drawn from their type's density (the rest: the base)",
                               min=0.0, max=1.0)
    beta_motion: list[float] = help_field([3.0, 1.5], "tqd-beta: Beta(a, b) of motion-rich clips", min=1e-3)
    beta_quality: list[float] = help_field([1.5, 3.0], "tqd-beta: Beta(a, b) of high-quality clips", min=1e-3)
    tau_m: float = help_field(0.4, "tqd-truncated: motion-rich clips draw s ~ U(tau_m, 1)", min=0.0, max=1.0)
    tau_v: float = help_field(0.6, "tqd-truncated: high-quality clips draw s ~ U(0, tau_v)", min=0.0, max=1.0)
    clip: float = help_field(2.0, "tqd-continuous: clip of the score difference z(motion) - z(quality)", min=1e-3)


@dataclass
class ModelConfig:
    kind: Literal["conv3d", "dit"] = help_field("conv3d", "pixel-space denoiser: 3D-conv residual net or tiny DiT")
    width: int = help_field(32, "channels (conv3d) or token width (dit)", min=4)
    depth: int = help_field(3, "residual blocks (conv3d) or transformer blocks (dit)", min=1)
    emb_dim: int = help_field(64, "width of the noise-level embedding", min=4)


@dataclass
class EvalConfig:
    draws: int = help_field(4, "noise draws per held-out clip and band (fixed: every run sees the same draws)",
                            min=1)
    seed: int = help_field(0, "seed of the held-out draws, the sampling noise and the gradient-similarity draws",
                           min=0)
    samples: int = help_field(64, "evaluate: clips generated for the sample metrics (0: none)", min=0)
    sample_steps: int = help_field(20, "evaluate: Euler steps per generated clip", min=1)
    gradsim_draws: int = help_field(2, "evaluate --gradsim: noise draws per pair and noise level", min=1)


def _train_defaults() -> TrainConfig:
    # spec 7.4: AdamW 2e-3, batch 16, 600 steps
    return TrainConfig(max_steps=600, batch_size=16, lr=2e-3, weight_decay=0.0, eval_every=200,
                       checkpoint_every=200, log_every=20)


@dataclass
class TqdConfig:
    data: DataConfig = field(default_factory=DataConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=_train_defaults)
