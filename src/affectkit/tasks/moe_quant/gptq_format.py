"""``affectkit quantize mixtral --format gptq``: the quantized Mixtral as a GPTQ checkpoint with
per-module bit widths in GPTQModel's ``dynamic`` config (the format vLLM reads for mixed-bit GPTQ),
experts in the per-expert layout (``model.layers.L.block_sparse_moe.experts.E.w1|w3|w2``).

Per quantized linear (``in_features`` K, ``out_features`` N, group size g, G = K / g groups):

- ``qweight`` int32 ``[K * bits / 32, N]``: each output column's K codes packed along the input
  dimension as one little-endian bitstream in 32-bit words (for 2, 4 and 8 bits, 32 / bits codes per
  word; for 3 bits, 32 codes per 3 words, a code may span two words);
- ``qzeros`` int32 ``[G, N * bits / 32]``: each group's N zero points packed the same way along the
  output dimension; ``checkpoint_format: gptq`` (v1) stores zero - 1, ``gptq_v2`` the zero itself;
- ``scales`` float16 ``[G, N]``; ``g_idx`` int32 ``[K]`` = k // g (no act-order).

A weight dequantizes to ``scales[g_idx[k], n] * (q[k, n] - zero[g_idx[k], n])`` (the transpose of
affectkit's ``(codes - zeros) * scales``), so the export is exact: the codes, scales and zeros are the
ones affectkit computed. v1 cannot hold a zero point of 0 (asymmetric grids have them where a group has
no negative weight): then the checkpoint is written as ``gptq_v2``, which GPTQModel and vLLM read too.
GPTQ kernels take 2, 3, 4 and 8 bits, K divisible by the group size and by 32, N by 32 (3 bits) or
32 / bits: other settings are a UsageError before anything is written.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affectkit.core.errors import UsageError

if TYPE_CHECKING:  # torch is imported inside the functions: precheck runs before any heavy import
    import torch

    from affectkit.tasks.moe_quant.packed_modules import QuantLinear

GPTQ_BITS = (2, 3, 4, 8)
WEIGHTS_FILE = "model.safetensors"


def pack_rows_int32(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack every row of ``codes [R, C]`` as a little-endian bitstream of ``bits``-bit codes into
    int32 words: ``[R, C * bits / 32]`` (each row must fill whole words)."""
    import torch

    from affectkit.tasks.moe_quant.packing import pack_bits

    rows, cols = codes.shape
    if (cols * bits) % 32 or (bits != 8 and cols % 8):
        raise ValueError(f"rows of {cols} codes of {bits} bits do not fill whole int32 words")
    packed = pack_bits(codes.contiguous().to(torch.int64), bits)  # flat bytes, rows one after another
    return packed.view(torch.int32).reshape(rows, cols * bits // 32)  # little-endian words


def _check_module(name: str, m: QuantLinear, group_size: int) -> int:
    """The GPTQ group size of ``m`` (-1: one group per row); UsageError when GPTQ cannot hold it."""
    if m.bits not in GPTQ_BITS:
        raise UsageError(f"--format gptq: {name} has {m.bits} bits; GPTQ kernels take {', '.join(map(str, GPTQ_BITS))}",
                         "choose --levels among 2,3,4,8 (e.g. --levels 4,3,2), or keep the native format")
    k, n = m.in_features, m.out_features
    if k % 32 or n % (32 if m.bits == 3 else 32 // m.bits):
        raise UsageError(f"--format gptq: {name} is {n}x{k}; GPTQ packing needs both sizes divisible by 32")
    if m.group_size >= k:
        return -1
    if k % m.group_size:
        raise UsageError(f"--format gptq: {name} has {k} input columns, not a multiple of --group-size {m.group_size}")
    return m.group_size if group_size > 0 else -1


def precheck(arch: str, levels: list[int], qc, conf: dict[str, Any]) -> None:
    """What ``--format gptq`` needs, checked from the options and the model's config.json before any
    work: Mixtral, widths GPTQ kernels take, sizes that pack into int32 words and split into groups."""
    if arch != "mixtral":
        raise UsageError("--format gptq: only Mixtral models export to GPTQ", "keep the native format for Switch")
    widths = sorted({*levels, *([qc.attn_bits] if qc.attn_bits else [])})
    bad = [b for b in widths if b not in GPTQ_BITS]
    if bad:
        raise UsageError(f"--format gptq: {bad[0]}-bit modules; GPTQ kernels take {', '.join(map(str, GPTQ_BITS))} bits",
                         "choose --levels (and --attn-bits) among 2,3,4,8, or keep the native format")
    sizes = {"hidden_size": conf.get("hidden_size"), "intermediate_size": conf.get("intermediate_size")}
    for key, size in sizes.items():
        if not isinstance(size, int):
            continue
        if size % 32:
            raise UsageError(f"--format gptq: the model's {key} {size} is not a multiple of 32 (GPTQ packing)")
        if 0 < qc.group_size < size and size % qc.group_size:
            raise UsageError(f"--format gptq: --group-size {qc.group_size} does not divide the model's {key} {size}")


def gptq_tensors(m: QuantLinear, v1: bool) -> dict[str, torch.Tensor]:
    """qweight, qzeros, scales and g_idx of one packed linear (see the module docstring)."""
    import torch

    codes = m.codes()  # uint8 [N, K]
    g = m.group_size
    zeros = m.zeros.to(torch.int64)  # [N, G] integer zero points
    if v1:
        zeros = zeros - 1
    return {
        "qweight": pack_rows_int32(codes.to(torch.int64), m.bits).T.contiguous(),  # [K*b/32, N]
        "qzeros": pack_rows_int32(zeros.T, m.bits).contiguous(),  # [G, N*b/32]
        "scales": m.scales.T.contiguous().to(torch.float16),  # [G, N]
        "g_idx": (torch.arange(m.in_features, dtype=torch.int32) // g).to(torch.int32),
    }


def _layer_index(name: str) -> str:
    match = re.search(r"layers\.(\d+)\.", name)
    if match is None:
        raise ValueError(f"not a decoder-layer module: {name}")
    return match.group(1)


def gptq_state(model, qcfg: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The GPTQ state dict (per-expert layout) and quantization_config of a quantized Mixtral."""
    import torch

    from affectkit.tasks.moe_quant.moe_layers import moe_layers
    from affectkit.tasks.moe_quant.packed_modules import MIXTRAL_PROJS, QuantLinear

    views = moe_layers(model)
    if any(v.style != "mixtral" for v in views):
        raise UsageError("--format gptq: only Mixtral models export to GPTQ", "keep the native format for Switch")
    modules: dict[str, QuantLinear] = {}  # GPTQ module name -> packed module
    moe_prefixes = []
    for v in views:
        if v.kind != "mixed-bit":
            raise UsageError("--format gptq needs a model quantized by affectkit (packed experts)")
        layer = f"model.layers.{_layer_index(v.name + '.')}.block_sparse_moe"
        moe_prefixes.append((v.name, layer))
        for e, mods in enumerate(v.block.experts.experts):
            for p in MIXTRAL_PROJS:
                modules[f"{layer}.experts.{e}.{p}"] = mods[p]
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear) and ".self_attn." in name:
            modules[name] = m
    groups = {name: _check_module(name, m, int(qcfg.get("group_size", 128))) for name, m in modules.items()}
    v1 = all(float(m.zeros.min()) >= 1 for m in modules.values())

    state: dict[str, torch.Tensor] = {}
    for name, m in modules.items():
        for k, t in gptq_tensors(m, v1).items():
            state[f"{name}.{k}"] = t
        if m.bias is not None:
            state[f"{name}.bias"] = m.bias.detach().to(torch.float16)
    for key, t in model.state_dict().items():  # the float rest, under the per-expert layout names
        if ".experts." in key or any(key.startswith(f"{n}.") for n in modules) or key.endswith("inv_freq"):
            continue
        for src, dst in moe_prefixes:
            if key.startswith(src + "."):
                key = dst + key[len(src):]
        state[key] = t.detach().contiguous().cpu()
    if "lm_head.weight" not in state and "model.embed_tokens.weight" in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()

    bits = Counter(m.bits for n, m in modules.items() if ".experts." in n)
    base_bits = bits.most_common(1)[0][0]
    base_group = Counter(groups.values()).most_common(1)[0][0]
    dynamic: dict[str, dict[str, Any]] = {}
    for name, m in modules.items():
        if m.bits != base_bits or groups[name] != base_group:
            dynamic["+:" + re.escape(name) + "$"] = {"bits": m.bits, "group_size": groups[name]}
    if not any(".self_attn." in n for n in modules):
        dynamic[r"-:model\.layers\.\d+\.self_attn\..*"] = {}  # attention stays float
    config = {
        "quant_method": "gptq", "bits": base_bits, "group_size": base_group, "desc_act": False,
        "sym": bool(qcfg.get("sym", False)), "lm_head": False, "true_sequential": True,
        "checkpoint_format": "gptq" if v1 else "gptq_v2", "format": "gptq" if v1 else "gptq_v2",
        "pack_dtype": "int32", "dynamic": dynamic,
        "meta": {"quantizer": ["affectkit"], "affectkit": {k: qcfg[k] for k in ("allocation", "expert_bits")
                                                            if k in qcfg}},
    }
    return state, config


def save_gptq(model, out_dir: str | Path, qcfg: dict[str, Any], source_dir: Path | None = None) -> dict[str, Any]:
    """Write ``model.safetensors``, ``config.json`` (with the GPTQ quantization_config) and
    ``quantize_config.json`` (GPTQModel, AutoGPTQ) atomically."""
    from safetensors.torch import save_file

    from affectkit.core.runs import atomic_save, atomic_write_json

    state, config = gptq_state(model, qcfg)  # all checks before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save(out / WEIGHTS_FILE, lambda p: save_file(state, p, metadata={"format": "pt"}))
    conf = model.config.to_dict()
    conf.pop("_name_or_path", None)
    conf["quantization_config"] = config
    atomic_write_json(out / "config.json", conf)
    atomic_write_json(out / "quantize_config.json", config)
    if source_dir is not None:
        from affectkit.tasks.moe_quant.data import TOKENIZER_FILES

        for f in TOKENIZER_FILES:
            if (source_dir / f).exists():
                shutil.copy2(source_dir / f, out / f)
    return {"weights": str(out / WEIGHTS_FILE), "bytes": (out / WEIGHTS_FILE).stat().st_size,
            "checkpoint_format": config["checkpoint_format"], "dynamic_rules": len(config["dynamic"])}
