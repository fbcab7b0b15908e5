"""Evaluation diagnostics of the TQD toy (spec 7.3): per-noise-band held-out loss, the gradient-similarity
diagnostic (the paper's Observation 2), sample-level metrics with a random-feature Frechet distance, and
their plots.

Noise level s in (0, 1), 1 = pure noise, x_s = (1 - s) x0 + s eps, target v = eps - x0. Every random draw
comes from a CPU ``torch.Generator`` seeded by the caller and depends only on the seed and the clips'
shape, never on the model, so two models are compared on exactly the same (s, eps) draws.

Clip inputs: float tensors (or float arrays) ``[N, C, T, H, W]`` in [-1, 1] (the models' layout), or uint8
``[N, T, H, W, C]`` arrays / tensors or lists of uint8 ``[T, H, W, C]`` clips (the generator's layout).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from affectkit.core.errors import UsageError
from affectkit.core.report import new_figure, save_png
from affectkit.tasks.tqd.method_flow import flow_loss

BANDS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))
S_GRID = (0.05, 0.2, 0.4, 0.6, 0.8, 0.95)
FEATURE_DIM = 64
_LUMA = np.array([0.299, 0.587, 0.114])


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


def band_label(band: tuple[float, float]) -> str:
    """The key of a band in :func:`band_losses`' result, e.g. "0.0-0.2"."""
    return f"{float(band[0]):.1f}-{float(band[1]):.1f}"


def as_batch(clips: Any) -> torch.Tensor:
    """Clips as a float32 tensor ``[N, C, T, H, W]`` in [-1, 1] (see the module doc for the accepted inputs)."""
    if isinstance(clips, (list, tuple)):
        if not clips:
            raise UsageError("no clips given")
        if all(isinstance(c, torch.Tensor) and c.is_floating_point() and c.ndim == 4 for c in clips):
            return torch.stack([c.float() for c in clips])
        clips = np.stack([c.numpy() if isinstance(c, torch.Tensor) else np.asarray(c) for c in clips])
    if isinstance(clips, torch.Tensor):
        if clips.dtype == torch.uint8:
            clips = clips.cpu().numpy()
        else:
            x = clips.float()
            if x.ndim != 5:
                raise UsageError(f"expected float clips [N, C, T, H, W], got shape {tuple(x.shape)}")
            return x
    arr = np.asarray(clips)
    if arr.ndim != 5:
        raise UsageError(f"expected a batch of clips (5-D), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(arr)).float() / 127.5 - 1.0
        return x.permute(0, 4, 1, 2, 3).contiguous()
    if not np.issubdtype(arr.dtype, np.floating):
        raise UsageError(f"clips must be uint8 [N, T, H, W, C] or float [N, C, T, H, W], got {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def _pixels(clips: Any) -> np.ndarray:
    """Clips as float64 ``[N, T, H, W, C]`` on the 0..255 grid (float clips clamped and rounded, as saved)."""
    x = as_batch(clips).detach().cpu().double().clamp(-1, 1)
    return np.ascontiguousarray(np.rint((x.permute(0, 2, 3, 4, 1).numpy() + 1.0) * 127.5))


def _luma(pix: np.ndarray) -> np.ndarray:
    """``[N, T, H, W]`` luma of ``[N, T, H, W, C]`` pixels (C = 1 or 3)."""
    if pix.shape[-1] == 3:
        return pix @ _LUMA
    if pix.shape[-1] == 1:
        return pix[..., 0]
    raise UsageError(f"clips must have 1 or 3 channels, got {pix.shape[-1]}")


# ---------------------------------------------------------------------------------------------
# per-band held-out loss
# ---------------------------------------------------------------------------------------------


def _device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def band_losses(model: nn.Module, clips: Any, seed: int = 0, n_draws: int = 4, batch_size: int = 32,
                bands: Sequence[tuple[float, float]] = BANDS) -> dict[str, float]:
    """Held-out denoising loss per noise band: {band_label(band): mean loss, ..., "mean": mean over bands}.

    For draw d = 0..n_draws-1 and each band (in order), s ~ U(lo, hi) per clip and then eps ~ N(0, I) are
    drawn from one CPU generator seeded with ``seed``: the same seed and clip shape give the same draws for
    any model. The loss of a clip is :func:`flow_loss` (MSE of v = eps - x0); a band's value averages clips
    and draws. The model is evaluated in eval mode (its mode is restored afterwards).
    """
    x0 = as_batch(clips)
    if int(n_draws) < 1 or int(batch_size) < 1:
        raise UsageError(f"n_draws and batch_size must be >= 1, got {n_draws} and {batch_size}")
    for lo, hi in bands:
        if not 0.0 <= lo < hi <= 1.0:
            raise UsageError(f"bad noise band ({lo}, {hi}): need 0 <= lo < hi <= 1")
    n = x0.shape[0]
    device = _device(model)
    gen = torch.Generator().manual_seed(int(seed))
    sums = {band_label(b): 0.0 for b in bands}
    was_training = model.training
    model.eval()
    try:
        for _ in range(int(n_draws)):
            for band in bands:
                lo, hi = float(band[0]), float(band[1])
                s = lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)
                eps = torch.randn(x0.shape, generator=gen, dtype=torch.float32)
                for i in range(0, n, int(batch_size)):
                    j = slice(i, i + int(batch_size))
                    loss = flow_loss(model, x0[j].to(device), s[j].float().to(device), eps[j].to(device))
                    sums[band_label(band)] += float(loss.double().sum())
    finally:
        model.train(was_training)
    out = {k: v / (n * int(n_draws)) for k, v in sums.items()}
    out["mean"] = float(np.mean(list(out.values())))
    return out


# ---------------------------------------------------------------------------------------------
# gradient similarity
# ---------------------------------------------------------------------------------------------


def _flat_grad(model: nn.Module, params: list[torch.nn.Parameter], x0: torch.Tensor, s: float,
               eps: torch.Tensor) -> torch.Tensor:
    """All parameter gradients of the loss on one clip, flattened into one float64 vector."""
    loss = flow_loss(model, x0, torch.full((x0.shape[0],), float(s), device=x0.device), eps).sum()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    parts = [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads, strict=True)]
    return torch.cat(parts).double()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two vectors (NaN when either is zero)."""
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0:
        return math.nan
    return float(torch.dot(a, b)) / (na * nb)


def gradient_similarity_stats(model: nn.Module, clips_a: Any, clips_b: Any, s_grid: Sequence[float] = S_GRID,
                              seed: int = 0, n_draws: int = 4) -> dict[float, dict[str, float]]:
    """Per s: {"mean", "std", "sem", "n"} of the cosine between the parameter gradients of the loss on clip
    a_i and on clip b_i (paired clips of the same content), with the same eps and s for both.

    eps is drawn per (s, draw, pair) from a CPU generator seeded with ``seed`` (the order: s, then draw, then
    pair), so the draws depend only on the seed and the clips' shape. Gradients of all trainable parameters
    are flattened together; the model is evaluated in eval mode (its mode is restored afterwards)."""
    xa, xb = as_batch(clips_a), as_batch(clips_b)
    if xa.shape != xb.shape:
        raise UsageError(f"paired clips differ in shape: {tuple(xa.shape)} vs {tuple(xb.shape)}")
    if int(n_draws) < 1:
        raise UsageError(f"n_draws must be >= 1, got {n_draws}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UsageError("the model has no trainable parameters")
    device = _device(model)
    gen = torch.Generator().manual_seed(int(seed))
    out: dict[float, dict[str, float]] = {}
    was_training = model.training
    model.eval()
    try:
        for s in s_grid:
            if not 0.0 <= float(s) <= 1.0:
                raise UsageError(f"noise level {s} is outside [0, 1]")
            values = []
            for _ in range(int(n_draws)):
                for i in range(xa.shape[0]):
                    eps = torch.randn((1, *xa.shape[1:]), generator=gen, dtype=torch.float32).to(device)
                    ga = _flat_grad(model, params, xa[i:i + 1].to(device), float(s), eps)
                    gb = _flat_grad(model, params, xb[i:i + 1].to(device), float(s), eps)
                    values.append(_cosine(ga, gb))
            v = np.asarray(values, np.float64)
            v = v[np.isfinite(v)]
            n = int(v.size)
            std = float(v.std(ddof=1)) if n > 1 else math.nan
            out[float(s)] = {"mean": float(v.mean()) if n else math.nan, "std": std,
                             "sem": std / math.sqrt(n) if n > 1 else math.nan, "n": n}
    finally:
        model.train(was_training)
    return out


def gradient_similarity(model: nn.Module, clips_a: Any, clips_b: Any, s_grid: Sequence[float] = S_GRID,
                        seed: int = 0, n_draws: int = 4) -> dict[float, float]:
    """{s: mean cosine of the parameter gradients on paired clips a_i and b_i}, averaged over pairs and draws
    (see :func:`gradient_similarity_stats`, which also gives the spread)."""
    stats = gradient_similarity_stats(model, clips_a, clips_b, s_grid, seed, n_draws)
    return {s: v["mean"] for s, v in stats.items()}


# ---------------------------------------------------------------------------------------------
# sample-level metrics
# ---------------------------------------------------------------------------------------------


def motion_stat(clips: Any) -> np.ndarray:
    """Per-clip motion: mean absolute difference of consecutive luma frames (0..255 scale); 0 for one frame."""
    y = _luma(_pixels(clips))
    if y.shape[1] < 2:
        return np.zeros(y.shape[0])
    return np.abs(np.diff(y, axis=1)).mean(axis=(1, 2, 3))


def _laplacian(frames: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of ``[..., H, W]`` with reflect-101 borders (OpenCV's ``Laplacian`` default)."""
    pad = [(0, 0)] * (frames.ndim - 2) + [(1, 1), (1, 1)]
    p = np.pad(frames, pad, mode="reflect")
    return (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
            - 4.0 * p[..., 1:-1, 1:-1])


def sharpness_stat(clips: Any) -> np.ndarray:
    """Per-clip sharpness: variance of the luma Laplacian (0..255 scale) per frame, averaged over frames."""
    y = _luma(_pixels(clips))
    if min(y.shape[2:]) < 2:
        raise UsageError(f"frames of {y.shape[2]}x{y.shape[3]} px are too small for a Laplacian")
    return _laplacian(y).var(axis=(2, 3)).mean(axis=1)


def flow_stat(clips: Any) -> np.ndarray | None:
    """Per-clip Farneback flow magnitude from :mod:`affectkit.tasks.tqd.scoring` (normalised px/frame), or
    None when that scorer (or OpenCV) is unavailable."""
    try:
        from affectkit.tasks.tqd import scoring

        y = _luma(_pixels(clips)).astype(np.uint8)
        return np.array([float(scoring.motion_score(list(clip), method="farneback")) for clip in y])
    except Exception:  # optional extra: any failure just leaves the statistic out
        return None


class _FeatureNet(nn.Module):
    """A fixed, randomly initialised 3D-conv feature extractor: 3 channels -> ``dim`` features."""

    def __init__(self, dim: int, seed: int):
        super().__init__()
        widths = (3, 16, 32, dim)
        self.convs = nn.ModuleList(
            nn.Conv3d(widths[i], widths[i + 1], 3, stride=(1, 2, 2) if i == 0 else 2, padding=1) for i in range(3))
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for conv in self.convs:  # He-normal weights, zero biases: independent of torch's default init
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                conv.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, T, H, W]`` -> ``[N, dim]`` (ReLU after the first two convs, global average pooling)."""
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = torch.relu(x)
        return x.mean(dim=(2, 3, 4))


@torch.no_grad()
def random_features(clips: Any, seed: int = 0, dim: int = FEATURE_DIM, batch_size: int = 64) -> np.ndarray:
    """``[N, dim]`` float64 features of a fixed random 3D-conv net (seeded; grey clips are repeated to RGB,
    pixels quantised to the 0..255 grid and mapped to [-1, 1] first)."""
    pix = _pixels(clips)
    if pix.shape[-1] == 1:
        pix = np.repeat(pix, 3, axis=-1)
    elif pix.shape[-1] != 3:
        raise UsageError(f"clips must have 1 or 3 channels, got {pix.shape[-1]}")
    x = torch.from_numpy(pix / 127.5 - 1.0).float().permute(0, 4, 1, 2, 3).contiguous()
    net = _FeatureNet(int(dim), int(seed))
    feats = [net(x[i:i + batch_size]) for i in range(0, x.shape[0], int(batch_size))]
    return torch.cat(feats).double().numpy()


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray, offset: float = 1e-6) -> float:
    """Frechet distance of Gaussians fitted to two feature sets ``[N, D]``:
    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr(sqrtm(S_a S_b)) (real part; ``offset`` I is added to both
    covariances when the product's square root is not finite)."""
    from scipy import linalg

    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise UsageError(f"feature sets must be [N, D] with the same D, got {a.shape} and {b.shape}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise UsageError("the Frechet distance needs at least 2 samples per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        eye = np.eye(cov_a.shape[0]) * offset
        covmean = linalg.sqrtm((cov_a + eye) @ (cov_b + eye))
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


def sample_metrics(samples: Any, reference: Any, flow: bool = True, feature_seed: int = 0,
                   feature_dim: int = FEATURE_DIM) -> dict[str, Any]:
    """Generated ``samples`` vs ``reference`` clips (same channels; float samples are clamped and quantised).

    Returns n_samples, n_reference; motion_mean / motion_ref_mean / motion_w1 (mean absolute frame
    difference, Wasserstein-1 between the per-clip distributions); sharpness_mean / sharpness_ref_mean /
    sharpness_w1 (Laplacian variance); flow_mean / flow_ref_mean / flow_w1 when ``flow`` and the Farneback
    scorer is available; rfvd (Frechet distance of :func:`random_features`, seed ``feature_seed``); and
    per_clip = {"motion": [...], "sharpness": [...], ("flow": [...])} for the samples."""
    from scipy.stats import wasserstein_distance

    xs, xr = as_batch(samples), as_batch(reference)
    if xs.shape[1] != xr.shape[1]:
        raise UsageError(f"samples have {xs.shape[1]} channels, the reference {xr.shape[1]}")
    stats = {"motion": (motion_stat(xs), motion_stat(xr)), "sharpness": (sharpness_stat(xs), sharpness_stat(xr))}
    if flow:
        fs = flow_stat(xs)
        fr = flow_stat(xr) if fs is not None else None
        if fs is not None and fr is not None:
            stats["flow"] = (fs, fr)
    out: dict[str, Any] = {"n_samples": int(xs.shape[0]), "n_reference": int(xr.shape[0])}
    for name, (a, b) in stats.items():
        out[f"{name}_mean"] = float(a.mean())
        out[f"{name}_ref_mean"] = float(b.mean())
        out[f"{name}_w1"] = float(wasserstein_distance(a, b))
    fa = random_features(xs, feature_seed, feature_dim)
    fb = random_features(xr, feature_seed, feature_dim)
    out["rfvd"] = frechet_distance(fa, fb) if min(len(fa), len(fb)) >= 2 else math.nan
    out["per_clip"] = {name: [float(v) for v in a] for name, (a, _) in stats.items()}
    return out


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------


def plot_band_losses(path: str | Path, results: Mapping[str, Mapping[str, float]], title: str = "") -> Path:
    """Held-out loss per noise band, one line per run (``results``: name -> :func:`band_losses` dict; the
    legend shows each run's mean). Written atomically as a PNG; returns the path."""
    if not results:
        raise UsageError("plot_band_losses: no results to plot")
    fig, ax = new_figure()
    labels: list[str] = []
    for name, bands in results.items():
        keys = [k for k in bands if k != "mean"]
        labels = labels or keys
        mean = bands.get("mean", float(np.mean([bands[k] for k in keys])))
        ax.plot(range(len(keys)), [bands[k] for k in keys], marker="o", label=f"{name} (mean {mean:.4f})")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    ax.set_xlabel("noise band s (1 = pure noise)")
    ax.set_ylabel("held-out flow loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "held-out denoising loss per noise band")
    return save_png(fig, path)


def plot_gradient_similarity(path: str | Path, curves: Mapping[str, Mapping[float, float]],
                             errors: Mapping[str, Mapping[float, float]] | None = None, title: str = "") -> Path:
    """Gradient cosine vs noise level, one line per curve (name -> {s: cosine}); ``errors`` (name -> {s: err})
    adds error bars. Written atomically as a PNG; returns the path."""
    if not curves:
        raise UsageError("plot_gradient_similarity: no curves to plot")
    fig, ax = new_figure()
    for name, curve in curves.items():
        s = sorted(curve, key=float)
        y = [curve[k] for k in s]
        err = None
        if errors and name in errors:
            err = [errors[name].get(k, math.nan) for k in s]
        ax.errorbar([float(k) for k in s], y, yerr=err, marker="o", capsize=3, label=str(name))
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("noise level s (1 = pure noise)")
    ax.set_ylabel("cosine(grad golden, grad other)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "gradient similarity per noise level")
    return save_png(fig, path)


def plot_samples(path: Path, samples: Any, reference: Any, rows: int = 4) -> Path:
    """A grid of frames: ``rows`` generated clips, then ``rows`` held-out golden clips (one row per clip)."""
    from affectkit.tasks.tqd.model import to_uint8

    clips = [*to_uint8(samples[:rows]), *to_uint8(reference[:rows])]
    strip = np.concatenate([np.concatenate(list(c), axis=1) for c in clips], axis=0)
    fig, ax = new_figure((8.0, 0.6 * len(clips) + 0.6))
    ax.imshow(strip, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"top {rows}: generated; bottom {rows}: held-out golden (frames left to right)")
    return save_png(fig, path)
