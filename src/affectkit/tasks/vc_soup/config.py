"""Configuration of the vc-soup task (``affectkit train vc-soup`` / ``evaluate vc-soup`` / bench).

Each number declares its valid range once (``help_field(min=, max=)``); the config checks that
reads those declarations cannot express (a strictly positive beta, finite floats, heads dividing the
hidden size, distinct values) run in ``__post_init__``, so a file, ``--set`` or a flag is refused
before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from affectkit.core.config import help_field
from affectkit.core.errors import UsageError

MAX_LEN = 64  # tokens of prompt [SEP] response [EOS] (model.encode_pairs cuts longer sequences)


def _finite(cfg: object, prefix: str) -> None:
    """Every float field of ``cfg`` is a finite number (a range check lets NaN through)."""
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{prefix}{f.name}: must be a finite number, got {value!r}")


@dataclass
class PolicyConfig:
    """The tiny GPT-2 policies of the embedded benchmark (trained from scratch)."""

    n_layer: int = help_field(2, "transformer blocks", min=1)
    n_head: int = help_field(2, "attention heads (must divide n_embd)", min=1)
    n_embd: int = help_field(64, "hidden size", min=1)
    n_positions: int = help_field(64, f"context length (sequences are cut at {MAX_LEN} tokens)", min=MAX_LEN)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise UsageError(f"policy.n_embd ({self.n_embd}) must be a multiple of policy.n_head ({self.n_head})")


@dataclass
class DPOConfig:
    """Per-value DPO (reference recipe: TRL DPOTrainer; beta 0.1)."""

    trainer: Literal["native", "trl"] = help_field("trl", "trl: TRL's DPOTrainer (CPU-safe settings: fp32, no gradient checkpointing); native: the in-repo DPO loop (same loss, reference log-probs precomputed; the benchmark uses it)")
    beta: float = help_field(0.1, "DPO inverse temperature (> 0)", min=0.0)
    lr: float = help_field(1e-3, "learning rate (from-scratch tiny models need ~1e-3; TRL's default 1e-6 would not move them)", min=0.0)
    steps: int = help_field(120, "optimizer steps per value policy (same for every filtering method)", min=1)
    batch_size: int = help_field(32, "pairs per step", min=1)
    label_smoothing: float = help_field(0.0, "conservative DPO label smoothing (native trainer)", min=0.0, max=0.5)
    lora_r: int = help_field(0, "LoRA rank for the trl trainer (0: full fine-tuning)", min=0)
    lora_alpha: int = help_field(16, "LoRA alpha", min=1)

    def __post_init__(self) -> None:
        _finite(self, "dpo.")
        if self.beta <= 0:
            raise UsageError(f"dpo.beta: must be > 0, got {self.beta!r}", "DPO's inverse temperature; the reference uses 0.1")


@dataclass
class SFTConfig:
    """Warm-up of the shared reference policy on uniformly sampled responses (all policies start here)."""

    steps: int = help_field(300, "SFT steps (0: the reference is the random initialisation)", min=0)
    lr: float = help_field(3e-3, "SFT learning rate", min=0.0)
    batch_size: int = help_field(64, "examples per step", min=1)

    def __post_init__(self) -> None:
        _finite(self, "sft.")


@dataclass
class Config:
    """VC-soup: value-consistency filtering, one DPO policy per value, weight soups, Pareto front."""

    setting: str = help_field("conflicting", "sub-directory of the data directory to use when it holds several settings (embedded: conflicting, aligned)")
    values: list[str] = help_field(["positivity", "relevance"], "values, in objective order; one dataset {value}_train.jsonl each")
    method: Literal["vc", "unfiltered", "random", "denoise"] = help_field(
        "vc", "vc: keep consistency >= threshold (or top keep_ratio); unfiltered; random: same size as vc, random pairs; "
        "denoise: pairs whose label agrees with their own value's reward, same size as vc")
    threshold: float = help_field(0.0, "consistency threshold (inclusive; the consistency is a cosine, in [-1, 1]); the reference default is 0.0", min=-1.0, max=1.0)
    keep_ratio: float = help_field(0.0, "if > 0, keep the top ceil(q*N) pairs by consistency instead of thresholding", min=0.0, max=1.0)
    cost_models: list[str] = help_field([], "values whose rewards are costs (negated before normalising)")
    rewards: dict[str, str] = help_field({}, "value -> reward backend for filtering (default: precomputed rewards in the rows)")
    eval_mode: Literal["candidates", "sample"] = help_field(
        "candidates", "candidates: exact expected reward over each held-out prompt's candidate responses; "
        "sample: generate responses (top-p) and score them with the reward backends")
    eval_samples: int = help_field(4, "sample mode: responses per held-out prompt", min=1)
    eval_top_p: float = help_field(0.9, "sample mode: nucleus sampling (top-k off)", min=0.0, max=1.0)
    eval_max_new_tokens: int = help_field(24, "sample mode: longest response", min=1)
    eval_seed: int = help_field(8888, "sample mode: generation seed (RiC's)")
    merge_space: Literal["full", "delta"] = help_field("full", "soup space for evaluation (policies share the reference as base)")
    grid_steps: int = help_field(10, "K=2: w1 in {0, 1/steps, ..., 1}; K=3 with 10: the 13 standard vectors", min=1)
    policy: PolicyConfig = help_field(PolicyConfig(), "policy architecture")
    sft: SFTConfig = help_field(SFTConfig(), "reference warm-up")
    dpo: DPOConfig = help_field(DPOConfig(), "per-value DPO")

    def __post_init__(self) -> None:
        _finite(self, "")
        if not self.values:
            raise UsageError("values: need at least one value", "for example --set values=[helpful,harmless]")
        if len(set(self.values)) != len(self.values):
            raise UsageError(f"values: {','.join(self.values)} has duplicates")
