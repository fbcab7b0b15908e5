"""One Accelerator per command; affectkit resolves the precision (no fp16 on CPU)."""

from __future__ import annotations

from typing import Any

from affectkit.core.errors import UsageError

PRECISIONS = ("auto", "no", "bf16", "fp16")

_ACCELERATOR: Any = None


def resolve_precision(precision: str, cuda: bool | None = None, bf16_ok: bool | None = None) -> str:
    """Map auto/no/bf16/fp16 to what Accelerate gets on this machine."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if cuda is None or bf16_ok is None:
        import torch

        cuda = torch.cuda.is_available() if cuda is None else cuda
        bf16_ok = (cuda and torch.cuda.is_bf16_supported()) if bf16_ok is None else bf16_ok
    if precision == "auto":
        return "bf16" if (cuda and bf16_ok) else "no"
    if precision == "fp16" and not cuda:
        raise UsageError("--precision fp16 needs a CUDA device", "use --precision bf16 or no on CPU")
    return precision


def get_accelerator(precision: str = "auto") -> Any:
    """The command's Accelerator (created on first use). Batches are global and split across ranks."""
    global _ACCELERATOR
    if _ACCELERATOR is None:
        import torch
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration

        # Without a GPU, Accelerate must be told cpu=True to run MULTI_CPU (gloo) under torchrun.
        _ACCELERATOR = Accelerator(
            cpu=not torch.cuda.is_available(),
            mixed_precision=resolve_precision(precision),
            dataloader_config=DataLoaderConfiguration(split_batches=True),
        )
    return _ACCELERATOR


def reset_accelerator() -> None:
    """Forget the command's Accelerator (tests that run several commands in one process)."""
    global _ACCELERATOR
    _ACCELERATOR = None
