"""The tuning baselines AP is compared against, set up on the same Backbone: which backbone parameters
train for each method. The head, and the prompt modules of ap / vp / vpt, own their parameters and are
added by the trainer.

    linear   nothing in the backbone (linear probing: the head only)
    norm     the weight and bias of every BatchNorm / LayerNorm; BatchNorm running statistics stay frozen
             (the BatchNorm modules are kept in eval mode by ``train_mode``)
    full     every backbone parameter (full fine-tuning)
    lora     LoRA adapters injected with peft: ViT attention query/value projections, ResNet convolutions
             (peft's Conv2d LoRA); options r, alpha, dropout, target_modules
    ap, vp, vpt   nothing in the backbone (their prompt modules hold the parameters)

The pretrained ``source_head`` of a Backbone never trains here (label mapping reuses it frozen).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import torch
from torch import nn

from affectkit.core.errors import UsageError
from affectkit.tasks.act_prompt.backbone import Backbone

METHODS = ("linear", "norm", "full", "lora", "ap", "vp", "vpt")
FROZEN_BACKBONE = ("linear", "ap", "vp", "vpt")
LORA_DEFAULTS = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": None}


def check_method(method: str) -> str:
    if method not in METHODS:
        close = difflib.get_close_matches(str(method), METHODS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else None
        raise UsageError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}", hint)
    return method


def _check_options(method: str, options: dict, allowed: dict) -> None:
    for key in options:
        if key not in allowed:
            valid = ", ".join(allowed) or "none"
            raise UsageError(f"method {method!r} has no option {key!r} (options: {valid})")


def prepare(backbone: Backbone, method: str, **options) -> list[nn.Parameter]:
    """Freeze the backbone, unfreeze what ``method`` trains and return those parameters (head excluded)."""
    check_method(method)
    _check_options(method, options, LORA_DEFAULTS if method == "lora" else {})
    backbone.freeze()
    if method == "norm":
        for _, module in backbone.norm_modules():
            for p in module.parameters(recurse=False):
                p.requires_grad_(True)
    elif method == "full":
        for p in backbone.model.parameters():
            p.requires_grad_(True)
    elif method == "lora":
        inject_lora(backbone, **options)
    return [p for p in backbone.model.parameters() if p.requires_grad]


def default_lora_targets(backbone: Backbone) -> list[str]:
    """Module names LoRA wraps: ViT query/value projections (named by the installed library), ResNet convs."""
    leaves = {name.rsplit(".", 1)[-1] for name, _ in backbone.model.named_modules()}
    if backbone.kind == "vit":
        for targets in (["q_proj", "v_proj"], ["query", "value"], ["qkv"]):  # transformers v5, v4, timm
            if set(targets) <= leaves:
                return targets
        raise UsageError("no query/value projections found for LoRA", "pass target_modules explicitly")
    return ["convolution"] if backbone.source == "transformers" else ["conv1", "conv2", "conv3"]


def lora_config(backbone: Backbone, r: int = 8, alpha: float = 16, dropout: float = 0.0,
                target_modules: list[str] | None = None):
    """The peft LoraConfig ``prepare(..., "lora")`` injects."""
    from peft import LoraConfig

    if not isinstance(r, int) or r < 1:
        raise UsageError(f"LoRA rank r must be a positive integer, got {r!r}")
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                      target_modules=list(target_modules or default_lora_targets(backbone)))


def has_lora(backbone: Backbone) -> bool:
    return any("lora_" in name for name, _ in backbone.model.named_parameters())


def inject_lora(backbone: Backbone, **options) -> None:
    """Add LoRA adapters in place (peft ``inject_adapter_in_model``); only the adapters train."""
    from peft import inject_adapter_in_model

    if has_lora(backbone):
        raise UsageError("this backbone already has LoRA adapters; build or load a fresh one")
    config = lora_config(backbone, **{**LORA_DEFAULTS, **options})
    try:
        inject_adapter_in_model(config, backbone.model)
    except ValueError as e:
        raise UsageError(f"LoRA could not be injected: {str(e).splitlines()[0]}",
                         "check target_modules against the backbone's module names") from None
    for name, p in backbone.model.named_parameters():
        p.requires_grad_("lora_" in name)


def norm_train_mode(backbone: Backbone) -> Backbone:
    """Train mode with every BatchNorm in eval mode, so running statistics do not move."""
    backbone.train()
    for module in backbone.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return backbone


def train_mode(backbone: Backbone, method: str) -> Backbone:
    """The mode to train ``method`` in: full fine-tuning trains everything (BatchNorm statistics too);
    norm and lora keep BatchNorm statistics frozen; frozen-backbone methods run the backbone in eval mode."""
    if check_method(method) == "full":
        return backbone.train()
    if method in FROZEN_BACKBONE:
        return backbone.eval()
    return norm_train_mode(backbone)


def count_trainable(*items: nn.Module | torch.Tensor | Iterable[torch.Tensor] | None) -> int:
    """Trainable entries over modules / parameters (each parameter once; None skipped). A prompt module
    counts its own ``num_trainable`` (masked prompt entries are not trainable in effect)."""
    seen: set[int] = set()
    total = 0
    for item in items:
        if item is None:
            continue
        if isinstance(getattr(item, "num_trainable", None), int):
            total += item.num_trainable
            seen.update(id(p) for p in item.parameters())
            continue
        params = [item] if isinstance(item, torch.Tensor) else (
            item.parameters() if isinstance(item, nn.Module) else item)
        for p in params:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total
