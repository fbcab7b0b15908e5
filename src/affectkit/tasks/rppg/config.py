"""Configuration of task ``rppg``: the dataset reader, face tracking, the evaluation preset, the
FreqPhys network and its conditional diffusion, and the training recipe (spec 2.2-2.6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from affectkit.core.config import TrainConfig, help_field
from affectkit.core.task import MetricSpec

# Heart-rate metrics over the evaluation units (videos, or windows under the toolbox preset with
# windows); FreqPhys training selects its best epoch on the first.
METRICS = (
    MetricSpec("mae", False, "mean absolute HR error (bpm)"),
    MetricSpec("rmse", False, "root mean squared HR error (bpm)"),
    MetricSpec("mape", False, "mean absolute percentage HR error (%)"),
    MetricSpec("pearson", True, "Pearson r of predicted and true HR"),
    MetricSpec("snr", True, "mean SNR (dB) of the predicted pulse around the true HR and its harmonic"),
)
CLASSICAL = ("pos", "chrom", "green", "ica", "lgi", "pbv", "omit")
METHODS = (*CLASSICAL, "freqphys")
DATASET_NAMES = ("auto", "ubfc-rppg", "pure", "cohface", "mmpd", "vipl-hr")


@dataclass
class DataConfig:
    dataset: Literal["auto", "ubfc-rppg", "pure", "cohface", "mmpd", "vipl-hr"] = help_field(
        "auto", "dataset layout of --data (auto: detected from the files)")
    fold: int = help_field(1, "VIPL-HR: the fold (1-5) whose fold<k>.mat lists the test subjects", min=1, max=5)
    fps: float = help_field(0.0, "frame rate to assume (0: the container's; VIPL-HR: from time.txt)", min=0.0)
    subset: str = help_field("", "only recordings whose splits.csv subset is this (e.g. hard); '' = all")
    max_videos: int = help_field(0, "score at most this many recordings of the split (0: all)", min=0)
    clip_every: int = help_field(1, "train on every k-th 10-s clip (clips start every 0.5 s; the release: 1)", min=1)


@dataclass
class FaceConfig:
    detect_every: int = help_field(30, "run the Haar face detector every N frames (boxes carried between)", min=1)
    box_scale: float = help_field(1.5, "enlarge the detected box by this factor (rPPG-Toolbox LARGE_BOX_COEF)",
                                  min=1.0)
    smooth: float = help_field(0.3, "weight of a new detection in the box's moving average (1: no smoothing)",
                               min=0.01, max=1.0)
    deadband: float = help_field(0.08, "keep the box while a new detection moves no corner by more than this\n"
                                 "fraction of its width (detector jitter then adds no colour steps)", min=0.0)


@dataclass
class EvalConfig:
    preset: Literal["toolbox", "freqphys"] = help_field(
        "toolbox", "toolbox: detrend lambda 100, Butterworth order 1, 0.6-3.3 Hz, next-pow2 FFT, whole video;\n"
        "freqphys: 0.66-3.0 Hz, nfft 3600, 10-s clips every 0.5 s, per-video mean of rounded HRs")
    hr_method: Literal["fft", "peak"] = help_field("fft", "heart rate from the spectrum peak or from peak intervals")
    window_s: float = help_field(0.0, "evaluation window in seconds (0: the preset's)", min=0.0)
    nfft: int = help_field(0, "FFT length (0: the preset's)", min=0)
    clip_every: int = help_field(1, "freqphys preset: score every k-th 10-s clip (clips start every 0.5 s;\n"
                                 "the release: 1); also spaces the classical methods' windows", min=1)


@dataclass
class ModelConfig:
    dim: int = help_field(128, "token width (paper: 128)", min=4)
    depth: int = help_field(4, "cross-domain layers (paper: 4)", min=1)
    heads: int = help_field(4, "attention heads", min=1)
    dim_head: int = help_field(32, "width per head", min=1)
    mlp_dim: int = help_field(128, "feed-forward width", min=1)
    dropout: float = help_field(0.1, "dropout", min=0.0, max=0.9)
    frequency: bool = help_field(True, "the frequency modules (PBF, PSM, ASS); false: the time-domain-only ablation")
    abs_irfft: bool = help_field(True, "rectify the inverse FFT with |.| as the released code does")
    norm_mean: float = help_field(0.49, "per-channel mean removed from the MSTmap (the release: about 0.49)")
    norm_std: float = help_field(0.26, "per-channel std dividing the MSTmap (the release: about 0.26)", min=1e-6)


@dataclass
class DiffusionConfig:
    timesteps: int = help_field(1000, "diffusion steps of the cosine schedule", min=2)
    scale: float = help_field(0.5, "signal scale of x0", min=1e-6)
    clamp: float = help_field(2.2, "clamp of x_t at +-clamp x scale", min=0.0)
    sample_steps: int = help_field(5, "DDIM steps when sampling", min=1)
    eta: float = help_field(1.0, "DDIM stochasticity (1: as released, 0: deterministic)", min=0.0)


def _train_defaults() -> TrainConfig:
    # the release: Adam lr 1e-3 without weight decay, batch 32, 50 epochs, ReduceLROnPlateau(0.5, 5)
    return TrainConfig(max_steps=1_000_000_000, batch_size=32, lr=1e-3, weight_decay=0.0, clip_grad_norm=0.0,
                       schedule="plateau", gamma=0.5, plateau_patience=5, eval_every=0, checkpoint_every=0,
                       log_every=10)


@dataclass
class RppgConfig:
    method: Literal["pos", "chrom", "green", "ica", "lgi", "pbv", "omit", "freqphys"] = help_field(
        "pos", "pulse extraction: a classical method on the face's mean RGB, or a trained FreqPhys run")
    data: DataConfig = field(default_factory=DataConfig)
    face: FaceConfig = field(default_factory=FaceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=_train_defaults)
    epochs: int = help_field(50, "training epochs over the clips (paper: 50)", min=1)
    patience: int = help_field(0, "stop after N epochs without a better validation RMSE (0: never)", min=0)
