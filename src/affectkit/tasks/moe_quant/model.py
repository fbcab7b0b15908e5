"""The tiny MoE models: a Mixtral (causal LM over bytes) or a Switch (seq2seq: reverse a snippet)
built from the trainer's settings, loading a saved float model, the forward pass used for
calibration and evaluation, and what a trained model directory holds besides its weights: the router
snapshot taken before training (``router_init.safetensors``) and ``train_report.json``.
Torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from affectkit.components.hf import quiet_transformers
from affectkit.tasks.moe_quant.config import LMConfig

ROUTER_INIT_FILE = "router_init.safetensors"
TRAIN_REPORT_FILE = "train_report.json"


def build_config(cfg: LMConfig):
    if cfg.arch == "mixtral":
        from transformers import MixtralConfig

        return MixtralConfig(
            vocab_size=256, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_kv_heads, num_local_experts=cfg.num_experts,
            num_experts_per_tok=cfg.top_k, max_position_embeddings=max(256, cfg.seq_len),
            output_router_logits=True, router_aux_loss_coef=cfg.router_aux_loss_coef,
            bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=False,
        )
    if cfg.arch == "switch":
        from transformers import SwitchTransformersConfig

        return SwitchTransformersConfig(
            vocab_size=256, d_model=cfg.hidden_size, d_kv=cfg.hidden_size // cfg.num_heads,
            d_ff=cfg.intermediate_size, num_layers=cfg.num_layers, num_decoder_layers=cfg.num_layers,
            num_heads=cfg.num_heads, num_experts=cfg.num_experts, num_sparse_encoder_layers=cfg.num_layers // 2,
            num_sparse_decoder_layers=cfg.num_layers // 2, expert_capacity=4096, dropout_rate=0.0,
            router_aux_loss_coef=cfg.router_aux_loss_coef, pad_token_id=0, decoder_start_token_id=0,
            eos_token_id=1, tie_word_embeddings=False,
        )
    raise ValueError(f"unknown arch {cfg.arch!r}; choose mixtral or switch")


def build_model(cfg: LMConfig):
    import torch
    from transformers import MixtralForCausalLM, SwitchTransformersForConditionalGeneration

    torch.manual_seed(cfg.seed)
    conf = build_config(cfg)
    cls = MixtralForCausalLM if cfg.arch == "mixtral" else SwitchTransformersForConditionalGeneration
    return cls(conf)


def load_float_model(model_dir: str | Path):
    """A float model saved by ``save_pretrained`` (Mixtral or Switch), in eval mode."""
    quiet_transformers()
    from transformers import AutoConfig, MixtralForCausalLM, SwitchTransformersForConditionalGeneration

    conf = AutoConfig.from_pretrained(model_dir)
    cls = SwitchTransformersForConditionalGeneration if conf.model_type == "switch_transformers" else MixtralForCausalLM
    return cls.from_pretrained(model_dir).eval()


def load_model_dir(model_dir: str | Path, what: str = "model directory"):
    """``load_float_model`` of a local directory; a DataError naming it when it is not a model
    directory or its files do not load (a corrupt safetensors, a config that does not build)."""
    from affectkit.components.hf import local_model_dir
    from affectkit.core.errors import DataError

    d = local_model_dir(model_dir, what)
    try:
        return load_float_model(d)
    except Exception as exc:  # a bad checkpoint: name it
        raise DataError(d, f"cannot load the model ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from None


def model_arch(conf: dict, where: Path) -> str:
    """mixtral or switch from a config.json's ``model_type``; top_k checked against the experts."""
    from affectkit.core.errors import DataError

    kind = conf.get("model_type")
    if kind not in ("mixtral", "switch_transformers"):
        raise DataError(where, f"model_type {kind!r}: not a Mixtral or Switch model")
    if kind == "mixtral":
        k, n = conf.get("num_experts_per_tok", 2), conf.get("num_local_experts", 8)
        if isinstance(k, int) and isinstance(n, int) and not 1 <= k <= n:
            raise DataError(where, f"num_experts_per_tok {k} is outside 1..num_local_experts ({n})")
    return "switch" if kind == "switch_transformers" else "mixtral"


def arch_of(model) -> str:
    return "switch" if getattr(model.config, "model_type", "") == "switch_transformers" else "mixtral"


def forward(model, batch: dict):
    """The forward pass used for calibration (no loss, no router logits)."""
    if arch_of(model) == "switch":
        return model(input_ids=batch["input_ids"], labels=batch["labels"], output_router_logits=False)
    return model(input_ids=batch["input_ids"], output_router_logits=False)


def snapshot_routers(model) -> dict[str, Any]:
    from affectkit.tasks.moe_quant.moe_layers import moe_layers

    return {v.name: v.router_weight().clone().contiguous() for v in moe_layers(model)}


def train_info(model_dir: str | Path) -> dict[str, Any] | None:
    p = Path(model_dir) / TRAIN_REPORT_FILE
    return json.loads(p.read_text()) if p.exists() else None


def lm_config_of(model_dir: str | Path) -> LMConfig:
    info = train_info(model_dir)
    if info is None:
        return LMConfig()
    known = {f for f in LMConfig.__dataclass_fields__}
    return LMConfig(**{k: v for k, v in info["config"].items() if k in known})
