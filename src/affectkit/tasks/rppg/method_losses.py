"""FreqPhys training losses (spec §2.4): negative Pearson + complex-spectrum MSE, weights 1:1:1."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8


def neg_pearson(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``1 - r`` with ``r`` the Pearson correlation along time of ``[B, T]`` signals.

    0 for identical (non-constant) signals, 2 for negated ones; invariant to per-sample affine rescaling.
    """
    p = pred - pred.mean(dim=-1, keepdim=True)
    y = target - target.mean(dim=-1, keepdim=True)
    r = (p * y).sum(-1) / (p.square().sum(-1).sqrt() * y.square().sum(-1).sqrt() + _EPS)
    return (1.0 - r).mean()


def _fft_parts(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MSE of the real and of the imaginary parts of the orthonormal rFFT along the last axis."""
    fp = torch.fft.rfft(pred, dim=-1, norm="ortho")
    ft = torch.fft.rfft(target, dim=-1, norm="ortho")
    return F.mse_loss(fp.real, ft.real), F.mse_loss(fp.imag, ft.imag)


def freq_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``MSE(Re rfft(pred), Re rfft(target)) + MSE(Im rfft(pred), Im rfft(target))``, ortho rFFT over time,
    each MSE averaged over batch x ``T // 2 + 1`` bins."""
    re, im = _fft_parts(pred, target)
    return re + im


def freqphys_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """FreqPhys loss ``NegPearson + MSE_Re + MSE_Im`` (weights 1:1:1) on ``[B, T]`` tensors.

    ``pred`` is first standardised by its batch-global mean and (unbiased) std; ``target`` is the z-scored
    BVP as given. Returns the loss and the float parts ``neg_pearson``, ``fft_real``, ``fft_imag``.
    """
    pred = (pred - pred.mean()) / (pred.std() + _EPS)
    np_loss = neg_pearson(pred, target)
    re, im = _fft_parts(pred, target)
    loss = np_loss + re + im
    parts = {
        "neg_pearson": float(np_loss.detach()),
        "fft_real": float(re.detach()),
        "fft_imag": float(im.detach()),
    }
    return loss, parts
