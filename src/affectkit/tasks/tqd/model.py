"""Tiny pixel-space video denoisers for the TQD toy (spec 7.2): a 3D-conv residual net and a tiny DiT.

Clips are float tensors ``[B, C, T, H, W]`` in [-1, 1] (:func:`to_tensor` / :func:`to_uint8` convert from
and to the generator's uint8 ``[T, H, W, C]``). ``model(x_s, s)`` predicts the rectified-flow velocity
v = eps - x0 of the noisy input x_s = (1 - s) x0 + s eps, where s in (0, 1) is the noise level (1 = pure
noise); s enters through a sinusoidal embedding of 1000 s. Both models are built from plain arguments and
keep them in ``model.config`` (with ``kind``), so ``build_model(**model.config)`` rebuilds one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from affectkit.core.errors import UsageError

KINDS = ("conv3d", "dit")
S_SCALE = 1000.0  # the noise level is embedded as 1000 s, like a diffusers timestep


# ---------------------------------------------------------------------------------------------
# conversions
# ---------------------------------------------------------------------------------------------


def to_tensor(clip: Any) -> torch.Tensor:
    """uint8 ``[T, H, W, C]`` (or a batch ``[N, T, H, W, C]``) -> float32 ``[C, T, H, W]`` (``[N, C, T, H, W]``)
    in [-1, 1] (0 -> -1, 255 -> 1)."""
    arr = clip.detach().cpu().numpy() if isinstance(clip, torch.Tensor) else np.asarray(clip)
    if arr.ndim not in (4, 5):
        raise UsageError(f"expected a uint8 clip [T, H, W, C] or a batch [N, T, H, W, C], got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise UsageError(f"expected uint8 pixels, got {arr.dtype}", hint="float clips are already tensors in [-1, 1]")
    x = torch.from_numpy(np.ascontiguousarray(arr)).float() / 127.5 - 1.0
    return x.permute(3, 0, 1, 2) if arr.ndim == 4 else x.permute(0, 4, 1, 2, 3)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float ``[C, T, H, W]`` (or ``[N, C, T, H, W]``) in [-1, 1] -> uint8 ``[T, H, W, C]`` (``[N, T, H, W, C]``),
    clamped and rounded."""
    if x.ndim not in (4, 5):
        raise UsageError(f"expected a clip [C, T, H, W] or a batch [N, C, T, H, W], got shape {tuple(x.shape)}")
    y = ((x.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    y = y.permute(1, 2, 3, 0) if x.ndim == 4 else y.permute(0, 2, 3, 4, 1)
    return np.ascontiguousarray(y.numpy())


# ---------------------------------------------------------------------------------------------
# noise-level embedding
# ---------------------------------------------------------------------------------------------


def noise_level_embedding(s: torch.Tensor, dim: int, scale: float = S_SCALE, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of ``scale * s`` (cos half, then sin half; odd dims get a zero)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=s.device, dtype=torch.float32) / max(half, 1))
    args = (scale * s.float())[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _levels(s: Any, batch: int, device: torch.device) -> torch.Tensor:
    """The noise levels as a float tensor ``[batch]`` (a scalar is broadcast)."""
    s = torch.as_tensor(s, dtype=torch.float32, device=device)
    if s.ndim == 0:
        s = s.expand(batch)
    s = s.reshape(-1)
    if s.numel() != batch:
        raise UsageError(f"got {s.numel()} noise levels for a batch of {batch}")
    return s


class _Embed(nn.Module):
    """Sinusoidal noise-level features followed by a 2-layer MLP."""

    def __init__(self, freq_dim: int, dim: int):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """``[B]`` noise levels -> ``[B, dim]``."""
        return self.mlp(noise_level_embedding(s, self.freq_dim))


def _check_clip(x: torch.Tensor, channels: int) -> None:
    """UsageError unless ``x`` is ``[B, channels, T, H, W]``."""
    if x.ndim != 5 or x.shape[1] != channels:
        raise UsageError(f"expected clips [B, {channels}, T, H, W], got shape {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------------
# 3D-conv residual denoiser
# ---------------------------------------------------------------------------------------------


def _groups(width: int, groups: int) -> int:
    """The largest group count <= ``groups`` that divides ``width``."""
    g = max(1, min(groups, width))
    while width % g:
        g -= 1
    return g


class _ResBlock3d(nn.Module):
    """GroupNorm-SiLU-Conv3d, FiLM (scale, shift) from the embedding, GroupNorm-SiLU-Conv3d, plus the input."""

    def __init__(self, width: int, emb_dim: int, groups: int, kernel: int):
        super().__init__()
        pad = kernel // 2
        self.norm1 = nn.GroupNorm(_groups(width, groups), width)
        self.conv1 = nn.Conv3d(width, width, kernel, padding=pad)
        self.film = nn.Linear(emb_dim, 2 * width)
        self.norm2 = nn.GroupNorm(_groups(width, groups), width)
        self.conv2 = nn.Conv3d(width, width, kernel, padding=pad)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``h [B, W, T, H, W]``, ``emb [B, E]`` -> same shape as ``h``."""
        y = self.conv1(F.silu(self.norm1(h)))
        scale, shift = self.film(F.silu(emb))[:, :, None, None, None].chunk(2, dim=1)
        y = self.norm2(y) * (1 + scale) + shift
        return h + self.conv2(F.silu(y))


class Conv3dDenoiser(nn.Module):
    """Pixel-space 3D-conv residual velocity predictor: stem conv, ``depth`` residual blocks of ``width``
    channels conditioned on s (FiLM per block), GroupNorm-SiLU-conv head. About 180k parameters at the
    defaults with 3 channels (3 x 3 x 3 kernels)."""

    kind = "conv3d"

    def __init__(self, channels: int = 3, width: int = 32, depth: int = 3, emb_dim: int = 64, groups: int = 8,
                 kernel: int = 3):
        super().__init__()
        for name, value in (("channels", channels), ("width", width), ("depth", depth), ("emb_dim", emb_dim),
                            ("groups", groups)):
            if int(value) < 1:
                raise UsageError(f"conv3d denoiser: {name} must be >= 1, got {value}")
        if int(kernel) < 1 or int(kernel) % 2 == 0:
            raise UsageError(f"conv3d denoiser: kernel must be odd, got {kernel}")
        self.config = {"kind": self.kind, "channels": int(channels), "width": int(width), "depth": int(depth),
                       "emb_dim": int(emb_dim), "groups": int(groups), "kernel": int(kernel)}
        self.channels = int(channels)
        pad = int(kernel) // 2
        self.embed = _Embed(int(emb_dim), int(emb_dim))
        self.stem = nn.Conv3d(self.channels, int(width), int(kernel), padding=pad)
        self.blocks = nn.ModuleList(_ResBlock3d(int(width), int(emb_dim), int(groups), int(kernel))
                                    for _ in range(int(depth)))
        self.norm_out = nn.GroupNorm(_groups(int(width), int(groups)), int(width))
        self.head = nn.Conv3d(int(width), self.channels, int(kernel), padding=pad)

    def forward(self, x: torch.Tensor, s: Any) -> torch.Tensor:
        """Predicted velocity ``[B, C, T, H, W]`` for noisy clips ``x`` at noise levels ``s`` (``[B]`` or scalar)."""
        _check_clip(x, self.channels)
        emb = self.embed(_levels(s, x.shape[0], x.device))
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.head(F.silu(self.norm_out(h)))


# ---------------------------------------------------------------------------------------------
# tiny DiT
# ---------------------------------------------------------------------------------------------


def _sincos_1d(n: int, dim: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal position codes ``[n, dim]`` (dim even)."""
    pos = torch.arange(n, device=device, dtype=torch.float32)
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    args = pos[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def sincos_3d(grid: tuple[int, int, int], dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Fixed 3-D sinusoidal position codes ``[t * h * w, dim]`` (t-major order); each axis gets an even third
    of ``dim`` and any remainder is zero."""
    t, h, w = grid
    d = (dim // 3) // 2 * 2
    device = torch.device(device)
    et, eh, ew = (_sincos_1d(n, d, device) for n in (t, h, w))
    pe = torch.cat([
        et[:, None, None, :].expand(t, h, w, d),
        eh[None, :, None, :].expand(t, h, w, d),
        ew[None, None, :, :].expand(t, h, w, d),
    ], dim=-1).reshape(t * h * w, 3 * d)
    return F.pad(pe, (0, dim - 3 * d))


class _DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN (shift, scale, gate for attention and MLP from the embedding)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.ada = nn.Linear(width, 6 * width)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``h [B, N, D]``, ``emb [B, D]`` -> ``[B, N, D]``."""
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(F.silu(emb))[:, None].chunk(6, dim=-1)
        y = self.norm1(h) * (1 + sc1) + sh1
        h = h + (1 + g1) * self.attn(y, y, y, need_weights=False)[0]
        y = self.norm2(h) * (1 + sc2) + sh2
        return h + (1 + g2) * self.mlp(y)


class TinyDiT(nn.Module):
    """A tiny video DiT: non-overlapping ``patch = (pt, ph, pw)`` tubelets, fixed 3-D sin-cos positions,
    ``depth`` adaLN transformer blocks of ``width`` and ``heads``, adaLN final layer, unpatchify. Clips whose
    T, H, W are not multiples of the patch are zero-padded and cropped back."""

    kind = "dit"

    def __init__(self, channels: int = 3, width: int = 64, depth: int = 3, heads: int = 4,
                 patch: tuple[int, int, int] | list[int] = (2, 4, 4), mlp_ratio: float = 2.0, emb_dim: int = 64):
        super().__init__()
        patch = tuple(int(p) for p in patch)
        if len(patch) != 3 or min(patch) < 1:
            raise UsageError(f"dit: patch must be three positive ints (t, h, w), got {patch}")
        for name, value in (("channels", channels), ("width", width), ("depth", depth), ("heads", heads),
                            ("emb_dim", emb_dim)):
            if int(value) < 1:
                raise UsageError(f"dit: {name} must be >= 1, got {value}")
        if int(width) % int(heads):
            raise UsageError(f"dit: width {width} is not a multiple of heads {heads}")
        self.config = {"kind": self.kind, "channels": int(channels), "width": int(width), "depth": int(depth),
                       "heads": int(heads), "patch": list(patch), "mlp_ratio": float(mlp_ratio),
                       "emb_dim": int(emb_dim)}
        self.channels, self.width, self.patch = int(channels), int(width), patch
        self.embed = _Embed(int(emb_dim), int(width))
        self.proj = nn.Conv3d(self.channels, self.width, patch, stride=patch)
        self.blocks = nn.ModuleList(_DiTBlock(self.width, int(heads), float(mlp_ratio)) for _ in range(int(depth)))
        self.norm_out = nn.LayerNorm(self.width, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(self.width, 2 * self.width)
        self.out = nn.Linear(self.width, self.channels * patch[0] * patch[1] * patch[2])

    def forward(self, x: torch.Tensor, s: Any) -> torch.Tensor:
        """Predicted velocity ``[B, C, T, H, W]`` for noisy clips ``x`` at noise levels ``s`` (``[B]`` or scalar)."""
        _check_clip(x, self.channels)
        b, c, t, h, w = x.shape
        pt, ph, pw = self.patch
        pads = [(-n) % p for n, p in ((t, pt), (h, ph), (w, pw))]
        if any(pads):
            x = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]))
        emb = self.embed(_levels(s, b, x.device))
        tok = self.proj(x)  # [B, D, gt, gh, gw]
        grid = tuple(tok.shape[2:])
        tok = tok.flatten(2).transpose(1, 2) + sincos_3d(grid, self.width, x.device)[None]
        for block in self.blocks:
            tok = block(tok, emb)
        shift, scale = self.ada_out(F.silu(emb))[:, None].chunk(2, dim=-1)
        out = self.out(self.norm_out(tok) * (1 + scale) + shift)  # [B, N, C * pt * ph * pw]
        gt, gh, gw = grid
        out = out.reshape(b, gt, gh, gw, c, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
        out = out.reshape(b, c, gt * pt, gh * ph, gw * pw)
        return out[:, :, :t, :h, :w]


# ---------------------------------------------------------------------------------------------
# factory
# ---------------------------------------------------------------------------------------------


def build_model(kind: str = "conv3d", **kw: Any) -> nn.Module:
    """A denoiser by ``kind`` ("conv3d" or "dit") with the constructor's keyword arguments (``channels``,
    ``width``, ``depth``, ...); ``build_model(**model.config)`` rebuilds a model's architecture."""
    key = str(kind).strip().lower().replace("_", "").replace("-", "")
    classes = {"conv3d": Conv3dDenoiser, "conv": Conv3dDenoiser, "dit": TinyDiT, "tinydit": TinyDiT}
    if key not in classes:
        raise UsageError(f"unknown denoiser kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    cls = classes[key]
    try:
        return cls(**kw)
    except TypeError as exc:
        raise UsageError(f"bad arguments for the {cls.kind} denoiser: {exc}") from None


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
