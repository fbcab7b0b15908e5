"""FreqPhys denoiser: frequency-guided cross-domain transformer for conditional-diffusion rPPG.

Implements affectkit spec §2.2-2.3 (FreqPhys, Qian et al., arXiv 2604.00534, as released):

* :class:`FreModulation` = PBF (physiological band-pass) + PSM (complex spectral modulation) + ASS
  (adaptive spectral selection with a learnable threshold and a straight-through estimator), applied to
  per-ROI feature sequences ``[b, T, D]``.
* :class:`FreqPhys` maps a noisy BVP ``x_t [B, T]``, the MSTmap ``st_maps [B, 12, R, T]``, the band-passed
  ``phys_maps [B, 6, R, T]`` and the diffusion step ``t [B]`` to the clean-BVP estimate ``[B, T]``
  (x0-prediction). The diffusion schedule, loss and sampler live in ``method_diffusion.py`` and ``method_losses.py``.

Internal layout: the token grid is kept as ``[B, R, T, D]`` (per-ROI sequences contiguous), so FreModulation
and temporal attention use free views ``[(B*R), T, D]``; spatial attention works on a transposed copy
``[(B*T), R, D]``. All attention goes through ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ST_CHANNELS = 12
"""MSTmap channels: RGB+YUV feature map (6) and its normalised temporal difference (6)."""
PHYS_CHANNELS = 6
"""Channels of the band-passed ``phys_maps``."""


def band_mask(length: int, fs: float, band: tuple[float, float]) -> torch.Tensor:
    """Boolean mask over the ``length // 2 + 1`` rFFT bins keeping ``band[0] <= f <= band[1]`` (inclusive).

    Bin ``k`` has frequency ``k * fs / length``; a 1e-9 Hz tolerance absorbs rounding on the edges.
    For ``length=300, fs=30, band=(0.66, 3.0)`` this keeps the 24 bins 0.7 ... 3.0 Hz (indices 7..30).
    """
    freqs = torch.arange(length // 2 + 1, dtype=torch.float64) * (fs / length)
    return (freqs >= band[0] - 1e-9) & (freqs <= band[1] + 1e-9)


class FreModulation(nn.Module):
    """PBF + PSM + ASS on per-sequence features ``[b, T, D]`` (spec §2.3); returns ``[b, T, D]``.

    1. ``X = rfft(x, dim=T, norm="ortho")``.
    2. PBF (only if ``bandpass``): zero the bins outside ``band`` (see :func:`band_mask`). Implemented by
       computing the later steps on the in-band slice only and zero-padding back, which is exactly
       equivalent (out-of-band ``Y = (...) * X = 0``) and ~6x cheaper for T=300.
    3. PSM: ``Re' = ReLU(Re Wr + Im Wi + br)``, ``Im' = ReLU(Re Wi - Im Wr + bi)`` (as written in the
       release), soft-shrink ``shrink`` on both, ``Y = (Re' + i Im') * X`` with X the (band-passed) spectrum.
    4. ASS: ``e_f = sum_d |Y_fd|^2``; ``ratio = e_f / (median_f(e) + 1e-6)`` (per-sample ``torch.median``
       over all ``T // 2 + 1`` bins, i.e. the lower median); ``mask = 1[ratio > theta]``. Straight-through
       estimator: ``mask = hard + (s - s.detach())`` with ``s = ratio.detach() - theta``, so the forward
       value is exactly binary, ``d mask / d theta = -1`` and no gradient flows through ``ratio``.
       Note: with PBF on, more than half of the bins are zero, so the median is 0 and every in-band bin
       with non-zero energy passes unless theta grows beyond ``e_f / 1e-6`` (behaviour of the spec as
       written, kept for fidelity).
    5. ``irfft(Y * mask, n=T, norm="ortho")``, then ``abs`` if ``abs_output`` (release quirk, flag to disable).

    ``last_mask`` holds the detached ``[b, T // 2 + 1]`` mask of the last forward.
    """

    def __init__(
        self,
        dim: int,
        length: int = 300,
        fs: float = 30.0,
        band: tuple[float, float] = (0.66, 3.0),
        bandpass: bool = False,
        abs_output: bool = True,
        shrink: float = 0.01,
    ) -> None:
        super().__init__()
        self.dim, self.length, self.fs, self.band = dim, length, fs, tuple(band)
        self.bandpass, self.abs_output, self.shrink = bandpass, abs_output, shrink
        self.w_real = nn.Parameter(0.02 * torch.randn(dim, dim))
        self.w_imag = nn.Parameter(0.02 * torch.randn(dim, dim))
        self.b_real = nn.Parameter(0.02 * torch.randn(dim))
        self.b_imag = nn.Parameter(0.02 * torch.randn(dim))
        self.theta = nn.Parameter(torch.rand(()))
        self.register_buffer("band_bins", band_mask(length, fs, self.band), persistent=False)
        self.last_mask: torch.Tensor | None = None

    def _band_slice(self, length: int) -> tuple[int, int]:
        """``(start, stop)`` of the contiguous in-band rFFT bins for sequence length ``length``."""
        mask = self.band_bins if length == self.length else band_mask(length, self.fs, self.band)
        idx = torch.nonzero(mask).flatten().tolist()
        if not idx:
            raise ValueError(f"no rFFT bin of a length-{length} sequence at fs={self.fs} lies in {self.band}")
        return idx[0], idx[-1] + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        spec = torch.fft.rfft(x.float(), dim=1, norm="ortho")  # [b, F, D]
        n_bins = spec.shape[1]
        lo, hi = self._band_slice(length) if self.bandpass else (0, n_bins)
        spec = spec[:, lo:hi]
        xr, xi = spec.real, spec.imag
        # PSM as one real matmul: [Re, Im] @ [[Wr, Wi], [Wi, -Wr]] + [br, bi]
        weight = torch.cat(
            [torch.cat([self.w_real, self.w_imag], 1), torch.cat([self.w_imag, -self.w_real], 1)], 0
        )
        h = torch.cat([xr, xi], -1) @ weight + torch.cat([self.b_real, self.b_imag])
        h = F.softshrink(F.relu(h), self.shrink)
        hr, hi_ = h[..., :d], h[..., d:]
        yr = hr * xr - hi_ * xi
        yi = hr * xi + hi_ * xr
        # ASS over the full set of bins (zeros outside the band when PBF is on)
        energy = (yr.square() + yi.square()).sum(-1)  # [b, hi - lo]
        if hi - lo != n_bins:
            energy = F.pad(energy, (lo, n_bins - hi))
        median = energy.median(dim=1, keepdim=True).values
        ratio = energy / (median + 1e-6)
        hard = (ratio > self.theta).to(energy.dtype)
        soft = ratio.detach() - self.theta
        mask = hard + (soft - soft.detach())
        self.last_mask = mask.detach()
        m = mask[:, lo:hi, None]
        y = torch.complex(yr * m, yi * m)
        if hi - lo != n_bins:
            y = F.pad(y, (0, 0, lo, n_bins - hi))
        out = torch.fft.irfft(y, n=length, dim=1, norm="ortho")
        return (out.abs() if self.abs_output else out).to(x.dtype)


class _Attention(nn.Module):
    """Pre-norm multi-head attention over ``[N, L, D]``; Q, K from ``f``, V from ``x`` (one shared LayerNorm).

    With ``f is x`` it is plain self-attention. Dropout is applied after the output projection only (no
    dropout on the attention weights, which keeps SDPA on its fused CPU path).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.norm = nn.LayerNorm(dim)
        self.to_qk = nn.Linear(dim, 2 * inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.proj = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        xn = self.norm(x)
        fn = xn if f is x else self.norm(f)
        q, k = self.to_qk(fn).chunk(2, dim=-1)
        v = self.to_v(xn)
        q, k, v = (z.reshape(n, length, self.heads, self.dim_head).transpose(1, 2) for z in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, self.heads * self.dim_head))


class _FeedForward(nn.Sequential):
    """Pre-norm FFN: LayerNorm -> Linear(dim, mlp_dim) -> GELU -> Dropout -> Linear(mlp_dim, dim) -> Dropout."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(
            nn.LayerNorm(dim),
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )


class _CrossDomainLayer(nn.Module):
    """One "cross-domain representation learning" layer (spec §2.2, steps 1-3).

    The released code builds a second FreModulation per layer for the temporal step that is never called;
    it is deliberately not instantiated here (no dead parameters). The frequency stream computed once per
    layer feeds both the spatial and the temporal attention.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        mlp_dim: int,
        dropout: float,
        modulation: FreModulation | None,
    ) -> None:
        super().__init__()
        self.fre = modulation
        self.spatial_attn = _Attention(dim, heads, dim_head, dropout)
        self.spatial_ff = _FeedForward(dim, mlp_dim, dropout)
        self.temporal_attn = _Attention(dim, heads, dim_head, dropout)
        self.temporal_ff = _FeedForward(dim, mlp_dim, dropout)

    def forward(
        self,
        x: torch.Tensor,
        f: torch.Tensor | None,
        temporal_pos: torch.Tensor | None,
        pos_drop: nn.Module,
    ) -> torch.Tensor:
        """``x``: time tokens ``[B, R, T, D]``; ``f``: frequency-stream input in the same layout, or None for
        the time-only ablation (Q, K taken from ``x``). Returns the updated ``x``."""
        b, r, length, d = x.shape
        if f is not None:
            f = self.fre(f.reshape(b * r, length, d)).view(b, r, length, d)
        # spatial attention across the R ROI tokens of each frame
        xs = x.transpose(1, 2).reshape(b * length, r, d)
        fs_ = xs if f is None else f.transpose(1, 2).reshape(b * length, r, d)
        x = x + self.spatial_attn(xs, fs_).view(b, length, r, d).transpose(1, 2)
        x = x + self.spatial_ff(x)
        # temporal attention across the T frames of each ROI sequence
        if temporal_pos is not None:
            x = pos_drop(x + temporal_pos[:, :length].unsqueeze(1))
        xt = x.reshape(b * r, length, d)
        ft = xt if f is None else f.reshape(b * r, length, d)
        x = x + self.temporal_attn(xt, ft).view(b, r, length, d)
        return x + self.temporal_ff(x)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of integer steps: ``[sin(t w_i), cos(t w_i)]``,
    ``w_i = 10000^(-i / (dim/2 - 1))`` (zero-padded by one column when ``dim`` is odd)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / max(half - 1, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([args.sin(), args.cos()], dim=-1)
    return F.pad(emb, (0, dim % 2))


class FreqPhys(nn.Module):
    """FreqPhys x0-prediction denoiser (spec §2.2).

    ``forward(x_t [B, T], st_maps [B, 12, R, T], phys_maps [B, 6, R, T], t [B] long) -> [B, T]``.

    * Time stream: the noisy BVP is broadcast over the R ROI rows as a 13th channel after the 12 MSTmap
      channels; tokens ``[B, R, T, 13]`` -> LayerNorm(13) -> Linear(13, dim) -> LayerNorm(dim) + spatial
      position embedding ``[1, R, dim]`` -> dropout, plus the diffusion-time embedding
      (sinusoidal(dim) -> Linear(dim, 2 dim) -> GELU -> Linear(2 dim, dim)) added to every token.
    * Frequency stream (``frequency=True``): layer 0 uses the embedded ``phys_maps`` (LayerNorm(6) ->
      Linear(6, dim) -> LayerNorm(dim) -> dropout; no position embedding, no time embedding) through a
      FreModulation without PBF; layers >= 1 feed the current time tokens through a FreModulation with PBF.
    * Each layer: spatial cross-attention (Q, K frequency stream, V time stream) + FFN, then (layer 0 only:
      + temporal position embedding ``[1, length, dim]`` and dropout) temporal cross-attention + FFN.
    * Head: LayerNorm -> Linear(dim, 1) per token -> mean over the R ROIs.

    ``frequency=False`` is the time-domain-only ablation (deep baseline): no FreModulation and no phys_maps
    embedding are built, ``phys_maps`` is ignored (may be None), and the "frequency stream" is the time tokens
    themselves, so both attentions become self-attention. ``abs_irfft`` toggles the |irfft| quirk of
    FreModulation. Position embeddings are initialised N(0, 0.02^2).
    """

    def __init__(
        self,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        dim_head: int = 32,
        mlp_dim: int = 128,
        dropout: float = 0.1,
        n_rois: int = 63,
        length: int = 300,
        fs: float = 30.0,
        band: tuple[float, float] = (0.66, 3.0),
        frequency: bool = True,
        abs_irfft: bool = True,
    ) -> None:
        super().__init__()
        self.dim, self.depth, self.n_rois, self.length = dim, depth, n_rois, length
        self.frequency = frequency
        in_ch = ST_CHANNELS + 1
        self.embed = nn.Sequential(nn.LayerNorm(in_ch), nn.Linear(in_ch, dim), nn.LayerNorm(dim))
        self.spatial_pos = nn.Parameter(0.02 * torch.randn(1, n_rois, dim))
        self.temporal_pos = nn.Parameter(0.02 * torch.randn(1, length, dim))
        self.pos_drop = nn.Dropout(dropout)
        self.phys_embed = (
            nn.Sequential(nn.LayerNorm(PHYS_CHANNELS), nn.Linear(PHYS_CHANNELS, dim), nn.LayerNorm(dim))
            if frequency
            else None
        )
        self.time_mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.layers = nn.ModuleList(
            _CrossDomainLayer(
                dim,
                heads,
                dim_head,
                mlp_dim,
                dropout,
                FreModulation(dim, length, fs, band, bandpass=i > 0, abs_output=abs_irfft)
                if frequency
                else None,
            )
            for i in range(depth)
        )
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 1))

    def forward(
        self,
        x_t: torch.Tensor,
        st_maps: torch.Tensor,
        phys_maps: torch.Tensor | None,
        t: torch.Tensor,
    ) -> torch.Tensor:
        b, c, r, length = st_maps.shape
        if c != ST_CHANNELS or r != self.n_rois or length > self.length or x_t.shape != (b, length):
            raise ValueError(
                f"expected st_maps [B, {ST_CHANNELS}, {self.n_rois}, T<={self.length}] and x_t [B, T], "
                f"got {tuple(st_maps.shape)} and {tuple(x_t.shape)}"
            )
        noisy = x_t.to(st_maps.dtype)[:, None, None, :].expand(b, 1, r, length)
        tokens = torch.cat([st_maps, noisy], dim=1).permute(0, 2, 3, 1)  # [B, R, T, 13]
        x = self.pos_drop(self.embed(tokens) + self.spatial_pos.unsqueeze(2))
        x = x + self.time_mlp(timestep_embedding(t, self.dim))[:, None, None, :]
        f0 = None
        if self.frequency:
            if phys_maps is None or phys_maps.shape != (b, PHYS_CHANNELS, r, length):
                raise ValueError(f"expected phys_maps [B, {PHYS_CHANNELS}, {r}, {length}]")
            f0 = self.pos_drop(self.phys_embed(phys_maps.permute(0, 2, 3, 1)))
        for i, layer in enumerate(self.layers):
            f = (f0 if i == 0 else x) if self.frequency else None
            x = layer(x, f, self.temporal_pos if i == 0 else None, self.pos_drop)
        return self.head(x).squeeze(-1).mean(dim=1)
