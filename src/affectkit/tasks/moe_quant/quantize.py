"""``affectkit quantize``: validate the options, load the model (or the embedded one), score the
experts, order them per layer, allocate bits, run the calibrated quantization pass, evaluate before
and after, and write the quantized directory. ``quantize_in_memory`` is the in-place core of it
(scores -> order -> bits -> packed model); ``layer_orders`` maps an order name to its rule."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError
from affectkit.core.runs import atomic_write_json, read_json
from affectkit.tasks.moe_quant.config import LMConfig, QuantConfig
from affectkit.tasks.moe_quant.data import (
    TOKENIZER_FILES,
    heldout_batches,
    lm_batches,
    require_windows,
    streams,
    switch_batches,
)
from affectkit.tasks.moe_quant.hf_format import QUANT_METHOD, REPORT_FILE, save_quantized
from affectkit.tasks.moe_quant.metrics import eval_loss
from affectkit.tasks.moe_quant.model import (
    ROUTER_INIT_FILE,
    arch_of,
    forward,
    lm_config_of,
    load_model_dir,
    model_arch,
    snapshot_routers,
    train_info,
)

ORDERS = ("combined", "router", "variance", "inverted", "random", "frequency", "sensitivity")


def validate(qc: QuantConfig) -> tuple[int | None, list[int]]:
    """(uniform bits or None, levels high to low); UsageError naming the flag at fault."""
    levels = sorted({int(b) for b in qc.levels}, reverse=True)
    if any(not 1 <= b <= 8 for b in levels):
        raise UsageError(f"--levels {qc.levels}: every level must be in 1..8")
    if qc.bits == "auto":
        if qc.avg_bits is None:
            raise UsageError("--bits auto needs a budget", "add --avg-bits B, e.g. --avg-bits 2.5 --levels 3,2")
        if len(levels) not in (2, 3):
            raise UsageError(f"--levels {qc.levels}: give two levels, or three equally spaced ones")
        if len(levels) == 3 and levels[0] - levels[1] != levels[1] - levels[2]:
            raise UsageError(f"--levels {qc.levels}: three levels must be equally spaced", "e.g. --levels 4,3,2")
        if not levels[-1] <= qc.avg_bits <= levels[0]:
            raise UsageError(f"--avg-bits {qc.avg_bits} is outside the levels {levels}")
        return None, levels
    try:
        b = int(qc.bits)
    except ValueError:
        raise UsageError(f"--bits {qc.bits!r}: expected auto or an integer 1..8") from None
    if not 1 <= b <= 8:
        raise UsageError(f"--bits {b}: expected 1..8")
    return b, [b]


def check_model(model_dir: Path, arch: str, qc: QuantConfig) -> None:
    """What the model's config.json settles before it is loaded: its architecture (that of the
    verb), its top-k within its expert count, a calibration window within its positions."""
    conf_path = model_dir / "config.json"
    conf = read_json(conf_path)
    if not isinstance(conf, dict):
        raise DataError(conf_path, "expected a JSON object")
    if isinstance(conf.get("quantization_config"), dict):
        raise DataError(model_dir, "already quantized (config.json has a quantization_config)",
                        "quantize the float model it came from")
    found = model_arch(conf, conf_path)
    if found != arch:
        raise UsageError(f"`quantize {arch}` got a {found} model", f"use `affectkit quantize {found}`")
    positions = conf.get("max_position_embeddings")
    if found == "mixtral" and isinstance(positions, int) and qc.seqlen > positions:
        raise UsageError(f"--seqlen {qc.seqlen} is above the model's max_position_embeddings {positions}",
                         f"use --seqlen {min(positions, 128)}")


def _src_config(model_dir: Path | None) -> LMConfig:
    return lm_config_of(model_dir) if model_dir is not None else LMConfig()


def calibration_batches(model, qc: QuantConfig, model_dir: Path | None) -> list[dict]:
    src = _src_config(model_dir)
    if qc.calib == "auto":
        name, marker = src.corpus, src.marker_frac
    else:
        name, marker = qc.calib, 0.0
    train, _ = streams(model, model_dir, name, src.seed, marker)
    if arch_of(model) == "switch":
        require_windows(train, src.switch_snippet, "switch_snippet (of the model's training)", f"calibration text {name}")
        return switch_batches(train, src.switch_snippet, qc.nsamples, 16, seed=qc.seed)
    require_windows(train, qc.seqlen, "--seqlen", f"calibration text {name}")
    return lm_batches(train, qc.seqlen, qc.nsamples, 16, seed=qc.seed)


def router_reference(model_dir: Path | None, qc: QuantConfig) -> tuple[str, dict | None]:
    from safetensors.torch import load_file

    kind = qc.router_ref
    snap = model_dir / ROUTER_INIT_FILE if model_dir is not None else None
    if kind == "auto":
        kind = "snapshot" if snap is not None and snap.exists() else "none"
    if kind == "snapshot":
        if snap is None or not snap.exists():
            raise DataError(snap or "model", f"no {ROUTER_INIT_FILE} (router snapshot) in the model directory",
                            "use --router-ref none or init-expected, or train the model with affectkit")
        return kind, load_file(str(snap))
    if kind == "checkpoint":
        if not qc.router_ref_path:
            raise UsageError("--router-ref checkpoint needs --router-ref-path DIR (the reference model)")
        return kind, snapshot_routers(load_model_dir(qc.router_ref_path, "--router-ref-path model directory"))
    return kind, None


def layer_orders(kind: str, scores: dict[str, dict[str, list[float]]], zeta: float = 3.0, seed: int = 0,
                 counts: dict[str, list[int]] | None = None,
                 sensitivity: dict[str, list[float]] | None = None) -> dict[str, list[int]]:
    """Per layer, the experts from most to least bits under the order ``kind``: the paper's
    (combined) and its ablations (router, variance, inverted) from the scores alone; the baselines
    random and frequency (routed-token ``counts``) and the control sensitivity (loss probes)."""
    from affectkit.tasks.moe_quant import baselines as bl
    from affectkit.tasks.moe_quant import method_scores as sc

    rng = np.random.default_rng(seed)
    out = {}
    for name, s in scores.items():
        lam, mv = np.asarray(s["lambda"]), np.asarray(s["maxvar"])
        if kind == "combined":
            out[name] = sc.combined_order(lam, mv, zeta)
        elif kind == "router":
            out[name] = sc.router_order(lam)
        elif kind == "variance":
            out[name] = sc.variance_order(mv)
        elif kind == "inverted":
            out[name] = sc.inverted_order(sc.combined_order(lam, mv, zeta))
        elif kind == "random":
            out[name] = bl.random_order(len(lam), rng)
        elif kind == "frequency":
            if counts is None:
                raise ValueError("order 'frequency' needs routed-token counts from calibration data")
            out[name] = bl.frequency_order(np.asarray(counts[name]))
        elif kind == "sensitivity":
            if sensitivity is None:
                raise ValueError("order 'sensitivity' needs per-expert loss probes on calibration data")
            out[name] = bl.sensitivity_order(np.asarray(sensitivity[name]))
        else:
            raise ValueError(f"unknown order {kind!r}; choose from {', '.join(ORDERS)}")
    return out


def quantize_in_memory(model, qc: QuantConfig, model_dir: Path | None = None, calib: list[dict] | None = None,
                       output=None) -> dict[str, Any]:
    """Allocate bits and quantize ``model`` in place. Returns the quantization_config, the report
    and timings."""
    from affectkit.tasks.moe_quant.baselines import expert_sensitivity, uniform_allocation
    from affectkit.tasks.moe_quant.method_allocate import allocate_from_orders
    from affectkit.tasks.moe_quant.method_scores import expert_scores
    from affectkit.tasks.moe_quant.quantize_pass import QuantOptions, count_routed_tokens, quantize_model

    uniform, levels = validate(qc)
    t0 = time.perf_counter()
    ref_kind, ref_w = router_reference(model_dir, qc)
    scores = expert_scores(model, ref_kind, ref_w, qc.maxvar)
    t_scores = time.perf_counter() - t0
    if calib is None:  # also for RTN: routed-token counts go into the report
        calib = calibration_batches(model, qc, model_dir)
    counts = count_routed_tokens(model, calib, forward) if calib else None
    sens = None
    t1 = time.perf_counter()
    if uniform is not None:
        allocation = uniform_allocation(model, uniform)
        order_kind = "uniform"
    else:
        if qc.order == "sensitivity":
            probe = calib[: max(1, len(calib) // 2)]
            sens = expert_sensitivity(model, levels, lambda m: eval_loss(m, probe)["loss"], qc.group_size, qc.sym)
        orders = layer_orders(qc.order, scores, qc.zeta, qc.seed, counts, sens)
        allocation = allocate_from_orders(orders, levels, float(qc.avg_bits), qc.policy, qc.allow_over, qc.order,
                                          qc.rank_weight, scores)
        order_kind = qc.order
    t_alloc = time.perf_counter() - t1 + t_scores
    opts = QuantOptions(qc.method, qc.group_size, qc.sym, qc.damp, qc.min_tokens, qc.attn_bits,
                        qc.quantize_router, qc.router_bits)
    t2 = time.perf_counter()
    qrep = quantize_model(model, allocation.expert_bits(), opts, calib if qc.method == "gptq" else None, forward)
    t_quant = time.perf_counter() - t2
    layers = []
    for la in allocation.layers:
        rank = {e: r for r, e in enumerate(la.order)}
        s = scores[la.name]
        experts = []
        for e, qe in enumerate(qrep["layers"][la.name]):
            row = {"expert": e, "bits": la.bits[e], "rank": rank[e], "lambda": s["lambda"][e],
                   "router_norm": s["router_norm"][e], "maxvar": s["maxvar"][e],
                   "calib_tokens": counts[la.name][e] if counts else qe["calib_tokens"], "method": qe["method"]}
            if sens is not None:
                row["sensitivity"] = sens[la.name][e]
            experts.append(row)
            if output is not None and row["calib_tokens"] < qc.min_tokens and qc.method == "gptq":
                output.warn(f"{la.name} expert {e}: {row['calib_tokens']} calibration tokens < {qc.min_tokens}; RTN fallback")
        layers.append({"name": la.name, "order": la.order, "experts": experts})
    qcfg = {
        "quant_method": QUANT_METHOD, "method": qc.method, "group_size": qc.group_size, "sym": qc.sym,
        "damp": qc.damp, "min_tokens": qc.min_tokens,
        "attn_bits": qc.attn_bits, "attn_modules": sorted(qrep["attention"]),
        "router": f"rtn-{qc.router_bits}bit-values-stored-float" if qc.quantize_router else "float",
        "allocation": {"policy": allocation.policy if uniform is None else "uniform", "order": order_kind,
                       "zeta": qc.zeta, "levels": levels, "avg_bits": qc.avg_bits if uniform is None else float(uniform),
                       "achieved_avg_bits": allocation.achieved_avg, "router_ref": ref_kind, "maxvar": qc.maxvar},
        "expert_bits": allocation.expert_bits(),
    }
    report = {"allocation": qcfg["allocation"], "layers": layers, "attention": qrep["attention"],
              "timing_s": {"allocation": t_alloc, "quantization": t_quant}}
    return {"qcfg": qcfg, "report": report, "allocation": allocation}


FORMATS = ("native", "gptq")


def run_quantize(arch: str, model_dir: Path | None, qc: QuantConfig, out: Path, overwrite: bool = False,
                 evaluate: bool = True, output=None, fmt: str = "native") -> dict[str, Any]:
    """Quantize and write ``out`` in affectkit's format (``native``, reloads with ``load_quantized``)
    or as a GPTQ checkpoint with per-module bits (``gptq``, Mixtral)."""
    import torch

    from affectkit.tasks.moe_quant import gptq_format
    from affectkit.tasks.moe_quant.quantize_pass import packed_tensor_census
    from affectkit.tasks.moe_quant.train import embedded_model

    _, levels = validate(qc)
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: expected native or gptq")
    if fmt == "gptq":
        gptq_format.precheck(arch, levels, qc, {})
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"--out {out} exists and is not empty", "pass --overwrite to replace it, or choose another --out")
    if model_dir is None:
        if output is not None:
            output.log(f"no --model: using the embedded tiny {arch} (trained on first use, then cached)")
        model_dir = embedded_model(arch, log=output.log if output else None)
    else:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").exists():
            raise DataError(model_dir, "no config.json: not a transformers model directory")
    check_model(model_dir, arch, qc)
    if fmt == "gptq":
        gptq_format.precheck(arch, levels, qc, read_json(model_dir / "config.json"))
    model = load_model_dir(model_dir, "--model directory")
    torch.manual_seed(qc.seed)
    src = train_info(model_dir)
    held = None
    result: dict[str, Any] = {"arch": arch, "model": str(model_dir), "out": str(out)}
    if evaluate:
        cfg = _src_config(model_dir)
        _, held_stream = streams(model, model_dir, cfg.corpus, cfg.seed, cfg.marker_frac)
        held = heldout_batches(model, held_stream, cfg, source=f"the held-out split of corpus {cfg.corpus}")
        result["float"] = eval_loss(model, held)
    res = quantize_in_memory(model, qc, model_dir, output=output)
    res["qcfg"]["source"] = {"model_dir": str(model_dir.resolve()), "train_config": (src or {}).get("config")}
    if held is not None:
        result["quantized"] = eval_loss(model, held)
    census = packed_tensor_census(model)
    out.mkdir(parents=True, exist_ok=True)
    for f in TOKENIZER_FILES:  # so the quantized directory is self-contained
        if (model_dir / f).exists():
            shutil.copy2(model_dir / f, out / f)
    report = {**res["report"], "census": census, "heldout": {k: result.get(k) for k in ("float", "quantized")}}
    if fmt == "gptq":
        saved = gptq_format.save_gptq(model, out, res["qcfg"])
        atomic_write_json(out / REPORT_FILE, report)
        result["gptq"] = {k: saved[k] for k in ("checkpoint_format", "dynamic_rules")}
    else:
        saved = save_quantized(model, out, res["qcfg"], report)
    result.update({"achieved_avg_bits": res["qcfg"]["allocation"]["achieved_avg_bits"],
                   "expert_bits": res["qcfg"]["expert_bits"], "packed_expert_tensors": sum(
                       v["packed"] for v in census["layers"].values()),
                   "expert_bytes": census["expert_bytes"], "file_bytes": saved["bytes"],
                   "timing_s": res["report"]["timing_s"]})
    return result
