"""The embedded benchmark: does the paper's order beat random allocations on a tiny Mixtral?

For each regime (``scratch``: trained from scratch on pydoc + markers, router snapshot at init;
``finetune``: pretrained on stdlib code, then fine-tuned on pydoc + markers with the router snapshot
taken before fine-tuning, the paper's Switch setting), each seed and each budget (2.5 bits over
{3,2}; 3.0 bits over {4,3,2}), GPTQ-quantize the experts with every order and with N random
orders, and measure held-out perplexity. z = (ppl - mean_random) / sd_random (negative = better
than random). ``sensitivity`` and ``frequency`` are positive controls (they use calibration data).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

from affectkit.core.stats import mean_sd, z_against
from affectkit.core.task import BenchContext, BenchResult, MetricSpec

ORDERS_BENCH = ("combined", "router", "variance", "inverted", "frequency", "sensitivity")
BUDGETS = ((2.5, (3, 2)), (3.0, (4, 3, 2)))


def protocol(quick: bool) -> dict[str, Any]:
    if quick:
        return {"seeds": 1, "scratch_steps": 80, "pretrain_steps": 60, "finetune_steps": 40, "n_random": 5,
                "eval_windows": 24, "calib_windows": 16, "regimes": ("scratch", "finetune"), "quantizers": ("gptq", "rtn")}
    return {"seeds": 5, "scratch_steps": 300, "pretrain_steps": 300, "finetune_steps": 150, "n_random": 20,
            "eval_windows": 64, "calib_windows": 32, "regimes": ("scratch", "finetune"), "quantizers": ("gptq", "rtn")}


def _models(regime: str, seed: int, p: dict, log) -> Any:
    from affectkit.tasks.moe_quant.config import LMConfig
    from affectkit.tasks.moe_quant.train import trained_model

    if regime == "scratch":
        return trained_model(LMConfig(corpus="pydoc", marker_frac=0.1, steps=p["scratch_steps"], seed=seed), log)
    pre = trained_model(LMConfig(corpus="stdlib", marker_frac=0.0, steps=p["pretrain_steps"], seed=seed), log)
    return trained_model(LMConfig(corpus="pydoc", marker_frac=0.1, steps=p["finetune_steps"], seed=seed,
                                  init_from=str(pre), lr=1e-3), log)


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    r = spearmanr(a, b).statistic
    return float(r) if r == r else float("nan")


def run_bench(ctx: BenchContext) -> BenchResult:
    import torch
    from safetensors.torch import load_file

    from affectkit.tasks.moe_quant.baselines import expert_sensitivity, uniform_allocation
    from affectkit.tasks.moe_quant.data import corpus, heldout_batches, lm_batches
    from affectkit.tasks.moe_quant.method_allocate import allocate_from_orders
    from affectkit.tasks.moe_quant.method_scores import expert_scores
    from affectkit.tasks.moe_quant.metrics import eval_loss
    from affectkit.tasks.moe_quant.model import ROUTER_INIT_FILE, forward, load_float_model
    from affectkit.tasks.moe_quant.quantize import layer_orders
    from affectkit.tasks.moe_quant.quantize_pass import QuantOptions, count_routed_tokens, quantize_model

    torch.set_num_threads(1)
    p = protocol(ctx.quick)
    out = ctx.output
    quantizers = {q: QuantOptions(method=q, group_size=128, min_tokens=16) for q in p["quantizers"]}
    rows: list[dict[str, Any]] = []
    signals: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    seeds = [ctx.seed + i for i in range(p["seeds"])]
    jobs = [(r, s) for r in p["regimes"] for s in seeds]
    with out.progress("moe-quant bench", total=len(jobs)) as bar:
        for regime, seed in jobs:
            mdir = _models(regime, seed, p, out.log)
            model = load_float_model(mdir)
            ref = load_file(str(mdir / ROUTER_INIT_FILE))
            train, held = corpus("pydoc", seed, 0.1)
            hb = heldout_batches(model, held, None, n=p["eval_windows"])
            calib = lm_batches(train, 128, p["calib_windows"], 16, seed=seed + 17)
            fp = eval_loss(model, hb)["ppl"]
            scores = expert_scores(model, "snapshot", ref)
            counts = count_routed_tokens(model, calib, forward)

            def ppl_of(bits: dict[str, list[int]], q: str, model=model, calib=calib, hb=hb) -> float:
                m = copy.deepcopy(model)
                quantize_model(m, bits, quantizers[q], calib if q == "gptq" else None, forward)
                return eval_loss(m, hb)["ppl"]

            base = {"regime": regime, "seed": seed}
            rows.append({**base, "budget": "fp32", "method": "fp32", "ppl": fp})
            for avg, levels in BUDGETS:
                bname = f"{avg}b{{{','.join(map(str, levels))}}}"
                sens = expert_sensitivity(model, list(levels), lambda m, calib=calib: eval_loss(m, calib)["loss"], 128)
                for name in scores:
                    s = scores[name]
                    signals.append({**base, "budget": bname, "layer": name,
                                    "rho(lambda,sensitivity)": _spearman(s["lambda"], sens[name]),
                                    "rho(lambda,frequency)": _spearman(s["lambda"], counts[name]),
                                    "rho(frequency,sensitivity)": _spearman(counts[name], sens[name]),
                                    "rho(maxvar,sensitivity)": _spearman(s["maxvar"], sens[name])})
                for q in quantizers:
                    qb = {**base, "budget": bname, "quantizer": q}
                    for ub in sorted({math.floor(avg), math.ceil(avg)}):
                        ua = uniform_allocation(model, ub)
                        rows.append({**qb, "method": f"uniform-{ub}", "avg_bits": ua.achieved_avg,
                                     "ppl": ppl_of(ua.expert_bits(), q)})
                    rand = []
                    for r in range(p["n_random"]):
                        orders = layer_orders("random", scores, seed=1000 * seed + r)
                        a = allocate_from_orders(orders, list(levels), avg)
                        rand.append(ppl_of(a.expert_bits(), q))
                    mu, sd = mean_sd(rand)
                    sd = sd if len(rand) > 1 else float("nan")
                    rows.append({**qb, "method": f"random (mean of {len(rand)})", "ppl": mu, "sd": sd, "avg_bits": avg})
                    variants = [(o, "paper") for o in ORDERS_BENCH] + [("combined", "milp")]
                    for order, policy in variants:
                        orders = layer_orders(order, scores, 3.0, seed, counts, sens)
                        a = allocate_from_orders(orders, list(levels), avg, policy)
                        ppl = ppl_of(a.expert_bits(), q)
                        rows.append({**qb, "method": order if policy == "paper" else f"{order}+milp",
                                     "avg_bits": a.achieved_avg, "ppl": ppl,
                                     "z": z_against(ppl, rand),
                                     "beats_random_mean": ppl < mu})
                    out.event("bench_step", regime=regime, seed=seed, budget=bname, quantizer=q,
                              random_mean=mu, random_sd=sd)
            bar.advance(status=f"{regime} seed {seed}")
    summary = _summarize(rows)
    notes = [
        f"protocol: {p}",
        "quantizers: GPTQ (the paper's) and RTN; asymmetric, per-channel (group 128 >= row length 64/128), "
        "damp 0.01, router float; sensitivity probes use RTN on the calibration windows",
        "z = (ppl - random mean) / random sd; negative is better than random allocation",
        f"wall time {time.perf_counter() - t_start:.1f}s on {torch.get_num_threads()} thread(s)",
    ]
    return BenchResult(task="moe-quant", tables={"summary": summary, "runs": rows, "signals": signals},
                       metrics=(MetricSpec("ppl", higher_is_better=False),), notes=notes)


def _summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["method"] == "fp32":
            continue
        key = (r["regime"], r["budget"], r.get("quantizer", "-"),
               r["method"] if not r["method"].startswith("random") else "random (mean)")
        groups.setdefault(key, []).append(r)
    fp = {}
    for r in rows:
        if r["method"] == "fp32":
            fp.setdefault(r["regime"], []).append(r["ppl"])
    out = []
    seen_fp = set()
    for (regime, budget, quantizer, method), rs in groups.items():
        if regime not in seen_fp:
            out.append({"regime": regime, "budget": "-", "method": "fp32", "ppl_mean": mean_sd(fp[regime])[0],
                        "seeds": len(fp[regime])})
            seen_fp.add(regime)
        row = {"regime": regime, "budget": budget, "quantizer": quantizer, "method": method, "ppl_mean": mean_sd([r["ppl"] for r in rs])[0],
               "seeds": len(rs)}
        zs = [r["z"] for r in rs if "z" in r and r["z"] == r["z"]]
        if zs:
            row["z_mean"] = mean_sd(zs)[0]
            row["beats_random"] = f"{sum(bool(r['beats_random_mean']) for r in rs)}/{len(rs)}"
        if method == "random (mean)":
            row["sd_mean"] = mean_sd([r["sd"] for r in rs])[0]
        out.append(row)
    return out
