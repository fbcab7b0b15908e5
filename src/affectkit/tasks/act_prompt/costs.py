"""What an adaptation method costs, measured the same way for every method: trainable parameters, the
memory a training step keeps for backward, training time per step and inference throughput.

Memory. The saving AP claims is mechanical: with the backbone frozen, autograd records nothing before the
prompted layer, so a deep prompt keeps fewer activations than VP, which backpropagates through the whole
network. ``activation_bytes`` measures exactly that, device-independently: the bytes of every tensor
autograd saves for backward during one training forward (``torch.autograd.graph.saved_tensors_hooks``;
a tensor saved twice counts once). ``state_bytes`` adds what the trainable parameters hold during
training: weights, gradients and AdamW's two moments (4 x 4 bytes per float32 entry). On a GPU the
trainer reports ``torch.cuda.max_memory_allocated`` besides."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

ADAMW_COPIES = 4  # weight, gradient, exp_avg, exp_avg_sq


def trainable_parameters(model: nn.Module) -> int:
    """Entries that train (prompt modules count their unmasked entries, see baselines.count_trainable)."""
    from affectkit.tasks.act_prompt.baselines import count_trainable

    return count_trainable(*[m for m in (getattr(model, "prompt", None),) if m is not None], model)


def activation_bytes(model: nn.Module, pixel_values: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]
                     ) -> int:
    """Bytes autograd saves for backward in one forward of ``model`` (then backward runs, freeing them)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr() if t.device.type != "meta" else id(t)
        seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model(pixel_values))
    if loss.requires_grad:
        loss.backward()
    model.zero_grad(set_to_none=True)
    return int(sum(seen.values()))


def state_bytes(model: nn.Module) -> int:
    """Weights, gradients and AdamW moments of the trainable parameters (float32)."""
    return ADAMW_COPIES * 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)


def seconds_per_step(step: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``step()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


@torch.no_grad()
def images_per_second(model: nn.Module, pixel_values: torch.Tensor, repeats: int = 5) -> float:
    """Inference throughput of ``model`` (eval mode) on the batch ``pixel_values``."""
    was_training = model.training
    model.eval()
    try:
        seconds = seconds_per_step(lambda: model(pixel_values), repeats=repeats)
    finally:
        model.train(was_training)
    return pixel_values.shape[0] / seconds


def cost_report(model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor,
                optimizer: torch.optim.Optimizer | None = None, repeats: int = 5) -> dict[str, float]:
    """Every cost above on one batch: trainable parameters, activation and state memory (MB), seconds
    per training step (forward, backward and, with ``optimizer``, its step) and inference images/s. The
    timed steps update the weights: measure a copy when they matter."""
    import torch.nn.functional as F

    def loss_fn(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def train_step() -> None:
        loss = loss_fn(model(pixel_values))
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        model.zero_grad(set_to_none=True)

    return {
        "trainable_params": float(trainable_parameters(model)),
        "activation_mb": activation_bytes(model, pixel_values, loss_fn) / 2**20,
        "state_mb": state_bytes(model) / 2**20,
        "train_step_s": seconds_per_step(train_step, repeats=repeats),
        "images_per_s": images_per_second(model, pixel_values, repeats=repeats),
    }
