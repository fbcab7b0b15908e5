"""The on-disk format of a quantized model, ``save_pretrained`` style:

- ``model.safetensors``: float non-expert weights plus, per expert projection, ``qweight`` (packed
  uint8 bitstream), ``scales`` and ``zeros`` (float16, per output row and input group), under the
  in-memory module names (``model.layers.L.mlp.experts.experts.E.w1.qweight``; Switch
  ``encoder.block.B.layer.1.mlp.experts.experts.E.wi.qweight``);
- ``config.json``: the model config with ``quantization_config`` = {quant_method
  ``affectkit_moe_mp``, method, group size, sym, per-expert bits per layer, achieved average, ...};
- ``report.json``: per expert the score, MaxVar, rank, bits and calibration tokens;
- per MoE layer one *guard* tensor of shape ``[1]`` under the float layout's expert weight name
  (Mixtral ``...mlp.experts.gate_up_proj``, Switch ``...mlp.experts.expert_0.wi.weight``): a plain
  ``from_pretrained`` without affectkit's quantizer registered finds its shape wrong and raises
  (transformers refuses mismatched sizes), instead of loading randomly initialised experts (an
  unknown ``quant_method`` only warns). Our loaders drop the guards.

``load_quantized(DIR)`` rebuilds the model; ``register_with_transformers()`` registers the config
and an ``HfQuantizer`` so ``AutoModelForCausalLM.from_pretrained(DIR)`` (and
``SwitchTransformersForConditionalGeneration.from_pretrained(DIR)``) rebuild it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

QUANT_METHOD = "affectkit_moe_mp"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
REPORT_FILE = "report.json"


def save_quantized(model, out_dir: str | Path, qcfg: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """Write weights (with the guards), config.json (with quantization_config) and report.json atomically."""
    import torch
    from safetensors.torch import save_file

    from affectkit.core.runs import atomic_save, atomic_write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seen: dict[int, str] = {}
    tensors, tied = {}, {}
    for k, t in model.state_dict().items():
        ptr = t.data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:  # tied weights are stored once
            tied[k] = seen[ptr]
            continue
        if ptr is not None:
            seen[ptr] = k
        tensors[k] = t.detach().contiguous().cpu()
    for k in guard_keys(model):
        tensors[k] = torch.zeros(1)
    qcfg = dict(qcfg, quant_method=QUANT_METHOD, version=FORMAT_VERSION)
    atomic_save(out / WEIGHTS_FILE, lambda p: save_file(tensors, p, metadata={"format": "pt", "quant_method": QUANT_METHOD}))
    conf = model.config.to_dict()
    conf["quantization_config"] = qcfg
    # the compute dtype of the float parts (else from_pretrained would infer fp16 from the scales)
    float_dtypes = [p.dtype for p in model.parameters() if p.is_floating_point()]
    conf["dtype"] = str(float_dtypes[0]).replace("torch.", "") if float_dtypes else "float32"
    conf.pop("_name_or_path", None)
    atomic_write_json(out / "config.json", conf)
    atomic_write_json(out / REPORT_FILE, report)
    return {"weights": str(out / WEIGHTS_FILE), "tied": tied, "bytes": (out / WEIGHTS_FILE).stat().st_size}


GUARD_PATTERN = r"(mlp\.experts\.gate_up_proj|mlp\.experts\.expert_0\.wi\.weight)$"


def guard_keys(model) -> list[str]:
    """The guard tensor names of a quantized model: one float expert weight name per MoE layer."""
    from affectkit.tasks.moe_quant.moe_layers import moe_layers

    return [f"{v.name}.experts.gate_up_proj" if v.style == "mixtral" else f"{v.name}.experts.expert_0.wi.weight"
            for v in moe_layers(model)]


def read_quant_config(model_dir: str | Path) -> dict[str, Any]:
    from affectkit.core.errors import DataError, require_dir

    d = require_dir(model_dir, "quantized model directory")
    cfg_path = d / "config.json"
    if not cfg_path.exists():
        raise DataError(cfg_path, "config.json not found", "is this a directory written by `affectkit quantize`?")
    try:
        conf = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(cfg_path, f"invalid JSON ({exc})") from None
    q = conf.get("quantization_config")
    if not isinstance(q, dict) or q.get("quant_method") != QUANT_METHOD:
        raise DataError(cfg_path, f"no quantization_config with quant_method {QUANT_METHOD!r}",
                        "quantize the model first: affectkit quantize mixtral|switch --model DIR --out OUT")
    if not (d / WEIGHTS_FILE).exists():
        raise DataError(d / WEIGHTS_FILE, "weights file not found")
    return q


def load_quantized(model_dir: str | Path):
    """Rebuild a quantized Mixtral or Switch model from a directory written by ``save_quantized``."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, MixtralForCausalLM, SwitchTransformersForConditionalGeneration

    from affectkit.core.errors import DataError
    from affectkit.tasks.moe_quant.quantize_pass import prepare_quantized_modules

    register_with_transformers()
    d = Path(model_dir)
    qcfg = read_quant_config(d)
    conf = AutoConfig.from_pretrained(d)
    if hasattr(conf, "quantization_config"):
        del conf.quantization_config
    cls = SwitchTransformersForConditionalGeneration if conf.model_type == "switch_transformers" else MixtralForCausalLM
    with torch.device("meta"):
        model = cls(conf)
    prepare_quantized_modules(model, qcfg)
    try:
        state = load_file(str(d / WEIGHTS_FILE))
    except Exception as exc:  # a truncated or corrupt file
        raise DataError(d / WEIGHTS_FILE, f"cannot read the weights ({type(exc).__name__}: {exc})") from None
    for k in guard_keys(model):
        state.pop(k, None)
    model = model.to_empty(device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied_ok = {k for k in missing if k.endswith(("lm_head.weight", "embed_tokens.weight", "shared.weight"))}
    bad_missing = [k for k in missing if k not in tied_ok and not k.endswith("inv_freq")]
    if bad_missing or unexpected:
        raise DataError(d / WEIGHTS_FILE, f"weights do not match the quantized layout: missing {bad_missing[:3]}, "
                        f"unexpected {list(unexpected)[:3]}")
    if tied_ok:
        model.tie_weights()
    _reinit_buffers(model, conf)
    model.is_quantized = True
    model.quantization_config = qcfg
    return model.eval()


def _reinit_buffers(model, conf) -> None:
    """Non-persistent buffers (rotary inv_freq) are not in the state dict: recompute them."""

    for mod in model.modules():
        if "inv_freq" in dict(mod.named_buffers(recurse=False)) and hasattr(mod, "config"):
            fresh = type(mod)(mod.config)
            for name, buf in fresh.named_buffers(recurse=False):
                setattr(mod, name, buf.to(device=getattr(mod, name).device))
            if hasattr(fresh, "attention_scaling"):
                mod.attention_scaling = fresh.attention_scaling


_REGISTERED = False


def register_with_transformers() -> None:
    """Register ``affectkit_moe_mp`` with transformers' quantizer registry (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers.quantizers import HfQuantizer, register_quantization_config, register_quantizer
    from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING, AUTO_QUANTIZER_MAPPING
    from transformers.utils.quantization_config import QuantizationConfigMixin

    if QUANT_METHOD in AUTO_QUANTIZER_MAPPING:
        _REGISTERED = True
        return

    class AffectkitMoEConfig(QuantizationConfigMixin):
        def __init__(self, expert_bits: dict | None = None, group_size: int = 128, **kwargs):
            self.quant_method = QUANT_METHOD
            self.expert_bits = expert_bits or {}
            self.group_size = group_size
            for k, v in kwargs.items():
                setattr(self, k, v)

        def to_dict(self) -> dict[str, Any]:
            return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    class AffectkitMoEQuantizer(HfQuantizer):
        requires_calibration = True

        def validate_environment(self, *args, **kwargs):
            return None

        def _process_model_before_weight_loading(self, model, **kwargs):
            from affectkit.tasks.moe_quant.quantize_pass import prepare_quantized_modules

            prepare_quantized_modules(model, self.quantization_config.to_dict())
            # the guard tensors (see the module docstring) are expected here, not unexpected
            model._keys_to_ignore_on_load_unexpected = {*(model._keys_to_ignore_on_load_unexpected or ()),
                                                        GUARD_PATTERN}
            return model

        def _process_model_after_weight_loading(self, model, **kwargs):
            _reinit_buffers(model, model.config)
            return model

        def param_needs_quantization(self, model, param_name: str, **kwargs) -> bool:
            return False

        def is_serializable(self, *args, **kwargs):
            return True

        @property
        def is_trainable(self) -> bool:
            return False

    if QUANT_METHOD not in AUTO_QUANTIZATION_CONFIG_MAPPING:
        register_quantization_config(QUANT_METHOD)(AffectkitMoEConfig)
    register_quantizer(QUANT_METHOD)(AffectkitMoEQuantizer)
    _REGISTERED = True
