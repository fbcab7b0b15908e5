"""Configs: the tiny-model trainer (top level, ``affectkit train moe-lm --set arch=switch``), the
quantizer (``quant.*``, also the options of ``affectkit quantize``), and ``LMConfig``, the trainer's
settings as saved with a trained model (its hash keys the embedded-model cache)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

from affectkit.core.config import help_field


@dataclass
class QuantConfig:
    bits: str = help_field("auto", "auto (mixed, needs avg_bits) or an integer 1..8 for uniform bits")
    avg_bits: float | None = help_field(None, "average bits per expert inside each MoE layer (--bits auto)", min=1, max=8)
    levels: list[int] = help_field([3, 2], "bit levels: two, or three equally spaced (e.g. 4,3,2)", min=1, max=8)
    order: Literal["combined", "router", "variance", "inverted", "random", "frequency", "sensitivity"] = help_field(
        "combined", "expert order (most bits first); combined = router-norm change + MaxVar (the paper)")
    zeta: float = help_field(3.0, "MaxVar factor of the combined order", min=0)
    policy: Literal["paper", "milp"] = help_field("paper", "paper = the authors' count rule; milp = knapsack (scipy)")
    rank_weight: Literal["harmonic", "linear"] = help_field("harmonic", "milp: sensitivity weight by rank")
    allow_over: bool = help_field(False, "allow the achieved average to exceed avg_bits")
    router_ref: Literal["auto", "none", "init-expected", "checkpoint", "snapshot"] = help_field(
        "auto", "router-norm reference: auto = snapshot when the model has one, else none")
    router_ref_path: str | None = help_field(None, "router-ref checkpoint: a model directory with the reference routers")
    maxvar: Literal["max-row-var", "var-of-maxnorm-row"] = help_field(
        "max-row-var", "MaxVar variant: Switch script (max-row-var) or Mixtral script (var-of-maxnorm-row)")
    method: Literal["gptq", "rtn"] = help_field("gptq", "weight quantizer")
    group_size: int = help_field(128, "input columns per scale/zero group (0 = per channel)", min=0)
    sym: bool = help_field(False, "symmetric grid (the authors' default is asymmetric)")
    damp: float = help_field(0.01, "GPTQ damping: fraction of the mean Hessian diagonal", min=0)
    min_tokens: int = help_field(16, "experts routed fewer calibration tokens fall back to RTN", min=0)
    attn_bits: int | None = help_field(None, "bits of the attention projections (null = keep float; reference: 4)",
                                      min=1, max=8)
    quantize_router: bool = help_field(False, "quantize the router weights too (RTN, router_bits; kept as float values)")
    router_bits: int = help_field(4, "router bits when quantize_router", min=1, max=8)
    calib: str = help_field("auto", "calibration text: auto (the model's own corpus), pydoc, stdlib, or a text file")
    nsamples: int = help_field(64, "calibration windows", min=1)
    seqlen: int = help_field(128, "calibration window length (tokens)", min=1)
    seed: int = help_field(0, "seed of the calibration windows and of the random order")


@dataclass
class Config:
    arch: Literal["mixtral", "switch"] = help_field("mixtral", "tiny model to train: mixtral (causal LM) or switch (seq2seq)")
    corpus: str = help_field("pydoc", "pydoc | stdlib | a UTF-8 text file")
    marker_frac: float = help_field(0.1, "fraction of the synthetic rare-marker stream mixed in (0 = none)",
                                    min=0, max=0.9)
    hidden_size: int = help_field(64, "model width", min=1)
    intermediate_size: int = help_field(128, "expert FFN width", min=1)
    num_layers: int = help_field(2, "decoder layers (Mixtral) or blocks per stack (Switch)", min=1)
    num_heads: int = help_field(4, "attention heads", min=1)
    num_kv_heads: int = help_field(2, "key/value heads (Mixtral)", min=1)
    num_experts: int = help_field(8, "experts per MoE layer", min=1)
    top_k: int = help_field(2, "experts per token (Mixtral; Switch is top-1; <= num_experts)", min=1)
    seq_len: int = help_field(128, "training window (Mixtral)", min=2)
    switch_snippet: int = help_field(32, "Switch task: snippet length to reverse", min=1)
    batch_size: int = help_field(16, "windows per step", min=1)
    steps: int = help_field(300, "AdamW steps", min=1)
    lr: float = help_field(3e-3, "peak learning rate (warmup 10 %, cosine)", min=0)
    weight_decay: float = help_field(0.0, "AdamW weight decay", min=0)
    router_aux_loss_coef: float = help_field(0.01, "load-balancing loss weight", min=0)
    init_from: str | None = help_field(None, "fine-tune this model directory (router snapshot taken before fine-tuning)")
    checkpoint_every: int = help_field(
        100, "checkpoint every N steps and at the end (model, optimizer, scheduler, RNG); --resume continues "
             "from the last; 0 = none", min=0)
    quant: QuantConfig = help_field(QuantConfig(), "quantization (affectkit quantize)")


@dataclass
class LMConfig:
    """The trainer's settings (the top-level fields of the task Config, without ``quant``)."""

    arch: str = "mixtral"  # mixtral | switch
    corpus: str = "pydoc"
    marker_frac: float = 0.1
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    num_experts: int = 8
    top_k: int = 2
    seq_len: int = 128
    switch_snippet: int = 32
    batch_size: int = 16
    steps: int = 300
    lr: float = 3e-3
    weight_decay: float = 0.0
    router_aux_loss_coef: float = 0.01
    init_from: str | None = None
    seed: int = 0

    @classmethod
    def from_task_config(cls, cfg, seed: int) -> LMConfig:
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__ if k != "seed"}, seed=seed)

    def cache_key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]
