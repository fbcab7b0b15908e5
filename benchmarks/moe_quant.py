"""Speed and memory of moe-quant on a Mixtral-8x7B-shaped MoE layer, streamed layer by layer.

Measured in one run, as ratios against named baselines:
1. allocation (the paper's rule: router norms + MaxVar of w1 + order + count rule; no forward pass)
   against RTN and GPTQ quantization of the same layer's experts;
2. peak memory while streaming layers (one layer's experts alive at a time) against one layer's size;
3. quantization throughput (parameters per second) of RTN and GPTQ;
4. dequantize + matmul (``QuantLinear``, pure torch) against the float ``nn.Linear`` on the same shape.

Default shape is Mixtral-8x7B divided by --shrink (4: hidden 1024, ffn 3584) so it runs on a laptop CPU;
--shrink 1 gives the real 4096 x 14336 experts (about 5.6 GB of float32 per layer).

    python benchmarks/moe_quant.py                # 2 layers, shrink 4, 1 thread
    python benchmarks/moe_quant.py --shrink 1 --layers 1 --skip-gptq
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time

import torch


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def make_layer(E: int, d: int, f: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    router = torch.randn(E, d, generator=g) * 0.02 * (1 + 0.3 * torch.rand(E, 1, generator=g))
    experts = [{"w1": torch.randn(f, d, generator=g) * 0.02, "w3": torch.randn(f, d, generator=g) * 0.02,
                "w2": torch.randn(d, f, generator=g) * 0.02} for _ in range(E)]
    return router, experts


def calib_inputs(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 64, generator=g)
    return base @ torch.randn(64, d, generator=g) * 0.2 + 0.05 * torch.randn(n, d, generator=g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shrink", type=int, default=4, help="divide Mixtral-8x7B's hidden 4096 / ffn 14336 by this")
    ap.add_argument("--layers", type=int, default=2, help="MoE layers to stream")
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--avg-bits", type=float, default=2.5)
    ap.add_argument("--levels", default="3,2")
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=512, help="calibration tokens routed to each expert (GPTQ)")
    ap.add_argument("--skip-gptq", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from affectkit.tasks.moe_quant import method_allocate as alloc
    from affectkit.tasks.moe_quant import method_scores as sc
    from affectkit.tasks.moe_quant.baselines import rtn_quantize
    from affectkit.tasks.moe_quant.method_gptq import gptq_quantize
    from affectkit.tasks.moe_quant.packed_modules import QuantLinear

    d, f, E = 4096 // args.shrink, 14336 // args.shrink, args.experts
    levels = [int(x) for x in args.levels.split(",")]
    layer_params = E * 3 * d * f
    layer_mb = layer_params * 4 / 2**20
    t = {"alloc": 0.0, "rtn": 0.0, "gptq": 0.0, "hessian": 0.0}
    base_rss = current_rss_mb()
    peak_during = 0.0
    for layer in range(args.layers):
        router, experts = make_layer(E, d, f, seed=layer)
        t0 = time.perf_counter()
        lam = sc.router_change(router, "none")
        mv = [sc.maxvar(e["w1"], "max-row-var") for e in experts]
        order = sc.combined_order(lam, mv, 3.0)
        bits = alloc.bits_from_order(order, alloc.paper_counts(E, args.avg_bits, levels), levels)
        t["alloc"] += time.perf_counter() - t0
        for e, w in enumerate(experts):
            t0 = time.perf_counter()
            packed = [QuantLinear.from_result(rtn_quantize(w[p], bits[e], args.group_size)) for p in ("w1", "w3", "w2")]
            t["rtn"] += time.perf_counter() - t0
            del packed
            if not args.skip_gptq:
                t0 = time.perf_counter()
                x = calib_inputs(args.tokens, d, seed=1000 * layer + e)
                hx = x.T @ x
                mid = torch.nn.functional.silu(x @ w["w1"].T) * (x @ w["w3"].T)
                hm = mid.T @ mid
                t["hessian"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                packed = [QuantLinear.from_result(gptq_quantize(w[p], hm if p == "w2" else hx, bits[e], args.group_size))
                          for p in ("w1", "w3", "w2")]
                t["gptq"] += time.perf_counter() - t0
                del packed, x, hx, mid, hm
            peak_during = max(peak_during, current_rss_mb())
        del router, experts
        gc.collect()
    n_params = layer_params * args.layers

    # dequant + matmul against the float linear, one expert projection, a decode-size and a prefill-size batch
    w = torch.randn(f, d) * 0.02
    lin = torch.nn.Linear(d, f, bias=False)
    lin.weight.data.copy_(w)
    q = QuantLinear.from_result(rtn_quantize(w, 3, args.group_size))
    mm = {}
    for tokens in (16, 512):
        x = torch.randn(tokens, d)
        reps = 5

        def timeit(fn, reps=reps):
            fn()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            return (time.perf_counter() - t0) / reps

        with torch.no_grad():
            t_float = timeit(lambda x=x: lin(x))
            t_deq = timeit(lambda x=x: torch.nn.functional.linear(x, q.dequantize()))
            t_cached = timeit(lambda x=x: q(x))
        mm[tokens] = {"float_ms": 1e3 * t_float, "dequant_matmul_ms": 1e3 * t_deq, "cached_ms": 1e3 * t_cached}

    res = {
        "shape": {"experts": E, "hidden": d, "ffn": f, "layers": args.layers, "params_per_layer": layer_params},
        "threads": args.threads,
        "seconds": t,
        "ratios": {
            "alloc_over_rtn": t["alloc"] / t["rtn"],
            "alloc_over_gptq": t["alloc"] / (t["gptq"] + t["hessian"]) if not args.skip_gptq else None,
        },
        "throughput_Mparams_per_s": {"rtn": n_params / t["rtn"] / 1e6,
                                     "gptq": n_params / (t["gptq"] + t["hessian"]) / 1e6 if not args.skip_gptq else None},
        "memory_mb": {"one_layer_fp32": layer_mb, "rss_before": base_rss, "rss_peak_while_streaming": peak_during,
                      "peak_over_one_layer": (peak_during - base_rss) / layer_mb, "ru_maxrss": rss_peak_mb()},
        "matmul": {str(k): {**v, "dequant_over_float": v["dequant_matmul_ms"] / v["float_ms"],
                            "cached_over_float": v["cached_ms"] / v["float_ms"]} for k, v in mm.items()},
    }
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"shape: {E} experts x (w1,w3 {f}x{d}; w2 {d}x{f}), {args.layers} layer(s) streamed, {args.threads} thread(s)")
    print(f"allocation (paper rule, no forward): {t['alloc'] * 1e3:9.2f} ms total")
    print(f"RTN quantization:                    {t['rtn']:9.2f} s   ({res['throughput_Mparams_per_s']['rtn']:.1f} M params/s)")
    if not args.skip_gptq:
        print(f"GPTQ quantization (+Hessians):       {t['gptq'] + t['hessian']:9.2f} s   "
              f"({res['throughput_Mparams_per_s']['gptq']:.2f} M params/s; Hessians {t['hessian']:.2f} s)")
        print(f"ratio allocation / GPTQ:             {res['ratios']['alloc_over_gptq']:.2e}")
    print(f"ratio allocation / RTN:              {res['ratios']['alloc_over_rtn']:.2e}")
    print(f"memory: one layer fp32 {layer_mb:.0f} MB; RSS grew by {peak_during - base_rss:.0f} MB while streaming "
          f"(x{res['memory_mb']['peak_over_one_layer']:.2f} of one layer)")
    for k, v in res["matmul"].items():
        print(f"matmul {k:>4} tokens x [{f}x{d}]: float {v['float_ms']:.2f} ms; dequant+matmul {v['dequant_matmul_ms']:.2f} ms "
              f"(x{v['dequant_over_float']:.1f}); cached dequant {v['cached_ms']:.2f} ms (x{v['cached_over_float']:.2f})")


if __name__ == "__main__":
    main()
