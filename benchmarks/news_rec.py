"""news-rec speed and memory: the MIND scorer against a per-impression scikit-learn loop, and training/evaluation
throughput of the SEIN-style model and its baselines.

Measured in one run (ratios are between numbers of the same run):

1. scorer, on 100,000 random impressions (--quick: 10,000; seeded): sizes 5..80 candidates (log-normal around 30,
   like MIND dev's long tail, clipped), 1 + Poisson(0.5) clicks (at most 5, at least one unclicked candidate, so
   every impression has an AUC, as in MIND dev), scores N(0, 1) + click, rounded to one decimal in a fifth of the
   impressions (exact ties, which the stable ranks must break by candidate order). ``scoring.write_truth`` /
   ``scoring.write_prediction`` write truth.txt and prediction.txt to a temp dir; then
   a. ``scoring.score(truth, prediction)`` end to end (reading and checking both files included);
   b. ``components.ranking.impression_metrics`` alone on the in-memory labels and raw scores (ties included);
   c. the reference: the official MIND ``evaluate.py`` approach, written here from spec 2.6: read both files line
      by line, score = 1/rank, then per impression ``sklearn.metrics.roc_auc_score``, MRR = sum(y_sorted / rank)
      / sum(y) and nDCG@5/@10 (gain 2^y - 1) by numpy sorting; its reading and its metric loop timed apart.
   The four means of a and b must equal c's to 1e-9 (asserted); the largest per-impression difference is printed.
   impressions/s of each (a, b: median of --repeats runs; c: one run) and the ratios a/c (end to end) and
   b/c (metrics on in-memory data against the reference's metric loop).
2. training and evaluation, on the embedded benchmark (``synth.make(dir, seed=0, quick=False)``: 1,000 users,
   14 days; --quick: 200 users) for model.variant sein (news_encoder nrms and bow), global and nrms (encoder nrms),
   other settings at their defaults, train.batch_size 512, each configuration in its own spawned process (its own
   memory), --threads torch threads (default 2): config via ``apply_overrides`` + ``TASK.resolve_config``, then
   ``NewsRecLoop().build_data`` / ``.build_model``; batches from ``bundle.collate_fn`` over consecutive sample
   indices (wrapping around); one warm-up step, then --steps timed steps of forward + backward + gradient
   clipping (train.clip_grad_norm, as the loop does) + AdamW step: training clicks/s (samples/s), s/step, the
   collate (negative sampling) share, peak RSS; then evaluation: ``model.eval()``, ``loop.eval_step`` under
   no_grad over every validation impression (``bundle.eval``) in batches of 512: impressions/s, peak RSS.
   Consecutive samples come from impressions close in time, so a batch spans few graph snapshots and stages;
   a shuffled epoch batch spans more of them (each a separate graph propagation), so the loop's real s/step can
   be higher than measured here.

Peak memory as in benchmarks/mblfe.py: the kernel's RSS high-water mark (VmHWM), reset through
/proc/self/clear_refs before each section; where that is not allowed, psutil sampling every 5 ms, else ru_maxrss
(the process's peak). "peak +MB" is the section's peak above the RSS before it.

    python benchmarks/news_rec.py                     # 100k impressions, full embedded data, 20 steps, 2 threads
    python benchmarks/news_rec.py --quick             # 10k impressions, quick data, 3 steps (about a minute)
    python benchmarks/news_rec.py --work /tmp/nr      # keep the generated training data there for the next run
    python benchmarks/news_rec.py --skip-train        # the scorer part only
    python benchmarks/news_rec.py --json              # one JSON object instead of the tables
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_memory import PeakRSS, in_process  # noqa: E402

METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")
TOLERANCE = 1e-9
CONFIGS = (("sein", "nrms"), ("sein", "bow"), ("global", "nrms"), ("nrms", "nrms"))
BATCH = 512
EVAL_BATCH = 512


# ---------------------------------------------------------------------------------------------
# 1. the scorer


def random_impressions(n: int, seed: int) -> tuple[list[str], list[Any], list[Any]]:
    """Impression ids, 0/1 labels and raw scores (with exact ties in a fifth of the impressions)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sizes = np.clip(np.rint(np.exp(rng.normal(np.log(30.0), 0.6, n))), 5, 80).astype(np.int64)
    clicks = np.minimum(1 + rng.poisson(0.5, n), np.minimum(sizes - 1, 5))
    tied = rng.random(n) < 0.2
    labels, scores = [], []
    for m, c, t in zip(sizes.tolist(), clicks.tolist(), tied.tolist(), strict=True):
        y = np.zeros(m, np.int64)
        y[rng.choice(m, c, replace=False)] = 1
        s = rng.normal(size=m) + y
        labels.append(y)
        scores.append(np.round(s, 1) if t else s)
    return [str(i + 1) for i in range(n)], labels, scores


def _reference_read(path: Path) -> list[tuple[str, list[int]]]:
    """``<impression id> [a,b,...]`` lines as (id, list), one json.loads per line."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                imp, values = line.strip().split(maxsplit=1)
                out.append((imp, json.loads(values)))
    return out


def _dcg(y_sorted: Any, k: int) -> float:
    import numpy as np

    g = y_sorted[:k]
    return float(np.sum((2.0**g - 1.0) / np.log2(np.arange(2, len(g) + 2))))


def reference_impression(y: Any, ranks: Any) -> tuple[float, float, float, float]:
    """AUC, MRR, nDCG@5, nDCG@10 of one impression, the official way (spec 2.6): score = 1/rank, sklearn's AUC,
    MRR over all clicks, nDCG with gain 2^y - 1 against the ideal order of the labels."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, np.float64)
    s = 1.0 / np.asarray(ranks, np.float64)
    auc = roc_auc_score(y, s)
    ys = y[np.argsort(-s)]  # ranks are a permutation: no ties, any sort gives the same order
    mrr = float(np.sum(ys / np.arange(1, len(ys) + 1)) / np.sum(y))
    ideal = np.sort(y)[::-1]
    return float(auc), mrr, _dcg(ys, 5) / _dcg(ideal, 5), _dcg(ys, 10) / _dcg(ideal, 10)


def reference_score(truth: Path, prediction: Path) -> dict[str, Any]:
    import numpy as np

    t0 = time.perf_counter()
    t_lines, p_lines = _reference_read(truth), _reference_read(prediction)
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = []
    for (t_id, y), (p_id, ranks) in zip(t_lines, p_lines, strict=True):
        if t_id != p_id:
            raise ValueError(f"impression {p_id} does not match {t_id}")
        rows.append(reference_impression(y, ranks))
    compute_s = time.perf_counter() - t0
    values = np.array(rows, np.float64)
    return {"read_s": read_s, "compute_s": compute_s, "values": {m: values[:, j] for j, m in enumerate(METRICS)}}


def bench_scorer(n: int, seed: int, repeats: int) -> dict[str, Any]:
    import numpy as np

    from affectkit.components.ranking import impression_metrics
    from affectkit.tasks.news_rec import scoring

    ids, labels, raw = random_impressions(n, seed)
    candidates = int(sum(len(y) for y in labels))
    with tempfile.TemporaryDirectory(prefix="news-rec-scorer-") as tmp:
        truth, pred = Path(tmp) / "truth.txt", Path(tmp) / "prediction.txt"
        t0 = time.perf_counter()
        scoring.write_truth(truth, ids, labels)
        scoring.write_prediction(pred, ids, raw)
        write_s = time.perf_counter() - t0
        file_mb = (truth.stat().st_size + pred.stat().st_size) / 1e6

        scoring.score(truth, pred)  # warm-up (imports, page cache)
        times = []
        with PeakRSS() as mem_a:
            for _ in range(repeats):
                t0 = time.perf_counter()
                res_a = scoring.score(truth, pred)
                times.append(time.perf_counter() - t0)
        score_s = statistics.median(times)
        file_labels, file_scores, _, _ = scoring.read_pairs(truth, pred)  # per-impression values of the file path
        per_a = impression_metrics(file_labels, file_scores).values
        del file_labels, file_scores

        times = []
        with PeakRSS() as mem_b:
            for _ in range(repeats):
                t0 = time.perf_counter()
                res_b = impression_metrics(labels, raw, ks=(5, 10))
                times.append(time.perf_counter() - t0)
        metrics_s = statistics.median(times)

        with PeakRSS() as mem_c:
            ref = reference_score(truth, pred)
    ref_s = ref["read_s"] + ref["compute_s"]
    ref_means = {m: float(v.mean()) for m, v in ref["values"].items()}
    means_a = {m: res_a[m] for m in METRICS}
    means_b = res_b.mean()
    max_diff = {m: float(max(np.abs(per_a[m] - ref["values"][m]).max(), np.abs(res_b.values[m] - ref["values"][m]).max()))
                for m in METRICS}
    mean_diff = {m: max(abs(means_a[m] - ref_means[m]), abs(means_b[m] - ref_means[m])) for m in METRICS}
    assert res_a["impressions"] == n and res_a["skipped"] == 0 and res_b.skipped == 0, (res_a, res_b.skipped)
    assert all(d <= TOLERANCE for d in mean_diff.values()), f"means differ from the reference: {mean_diff}"
    rows = {
        "score() end to end": {"seconds": score_s, "peak_rss_increase_mb": mem_a.increase_mb, "peak_rss_mb": mem_a.peak_mb},
        "impression_metrics (in memory)": {"seconds": metrics_s, "peak_rss_increase_mb": mem_b.increase_mb,
                                           "peak_rss_mb": mem_b.peak_mb},
        "reference end to end": {"seconds": ref_s, "peak_rss_increase_mb": mem_c.increase_mb, "peak_rss_mb": mem_c.peak_mb},
        "reference: reading": {"seconds": ref["read_s"]},
        "reference: metric loop": {"seconds": ref["compute_s"]},
    }
    for r in rows.values():
        r["impressions_per_s"] = n / r["seconds"]
    return {
        "impressions": n, "candidates": candidates, "clicks": int(sum(int(y.sum()) for y in labels)),
        "impressions_with_ties": int(sum(len(np.unique(s)) < len(s) for s in raw)), "file_mb": file_mb,
        "write_s": write_s, "repeats": repeats, "rows": rows, "means": {"score": means_a, "impression_metrics": means_b,
                                                                          "reference": ref_means},
        "max_abs_mean_difference": mean_diff, "max_abs_per_impression_difference": max_diff,
        "identical_to_1e-9": True, "memory_method": mem_a.method,
        "ratios": {"score() end to end vs reference end to end (speed-up)": ref_s / score_s,
                   "impression_metrics vs reference metric loop (speed-up)": ref["compute_s"] / metrics_s,
                   "score(): file reading share": 1 - metrics_s / score_s},
    }


# ---------------------------------------------------------------------------------------------
# 2. training and evaluation


def dataset_dir(root: Path, seed: int, quick: bool) -> tuple[Path, dict[str, Any]]:
    """The embedded benchmark under ``root`` (reused when already there)."""
    from affectkit.tasks.news_rec.synth import DATA_VERSION, make

    out = root / f"news-rec-seed{seed}{'-quick' if quick else ''}-v{DATA_VERSION}"
    done = out / "README.json"
    if done.exists():
        return out, json.loads(done.read_text())
    t0 = time.perf_counter()
    info = make(out, seed=seed, quick=quick)
    info["generate_s"] = time.perf_counter() - t0
    return out, info


def bench_training(data_dir: Path, variant: str, encoder: str, steps: int, threads: int, seed: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from affectkit.core.config import apply_overrides
    from affectkit.core.loop import make_optimizer
    from affectkit.core.output import Output, set_output
    from affectkit.core.seeding import seed_everything
    from affectkit.tasks.news_rec import TASK
    from affectkit.tasks.news_rec.config import NewsRecConfig
    from affectkit.tasks.news_rec.train import NewsRecLoop

    torch.set_num_threads(threads)
    set_output(Output(quiet=True))
    t0 = time.perf_counter()
    cfg = apply_overrides(NewsRecConfig(), [f"model.variant={variant}", f"model.news_encoder={encoder}",
                                            f"train.batch_size={BATCH}"])
    cfg = TASK.resolve_config(cfg, data_dir)
    loop = NewsRecLoop()
    bundle = loop.build_data(cfg, data_dir)
    seed_everything(seed)
    model = loop.build_model(cfg)
    optimizer = make_optimizer(model, cfg, loop)
    setup_s = time.perf_counter() - t0
    n = len(bundle.train)

    def batch_items(step: int) -> list[int]:
        return [bundle.train[(step * BATCH + j) % n] for j in range(BATCH)]

    def train_step(step: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        batch = bundle.collate_fn(batch_items(step))
        t1 = time.perf_counter()
        loss, _ = loop.train_step(model, batch, cfg)
        loss.backward()
        float(loss.detach())  # the loop reads the loss every step
        if cfg.train.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, t1 - t0

    model.train()
    train_step(0)  # warm-up
    with PeakRSS() as mem_t:
        runs = [train_step(s) for s in range(1, steps + 1)]
    seconds = sum(r[0] for r in runs)
    train = {"steps": steps, "batch": BATCH, "seconds": seconds, "s_per_step": seconds / steps,
             "step_seconds": [r[0] for r in runs], "collate_s": sum(r[1] for r in runs),
             "clicks_per_s": steps * BATCH / seconds, "peak_rss_increase_mb": mem_t.increase_mb,
             "peak_rss_mb": mem_t.peak_mb, "memory_method": mem_t.method}

    model.eval()
    rows = bundle.eval
    outputs: dict[str, list[Any]] = {"scores": [], "labels": []}
    with PeakRSS() as mem_e, torch.no_grad():
        t0 = time.perf_counter()
        for lo in range(0, len(rows), EVAL_BATCH):
            out = loop.eval_step(model, bundle.collate_fn(rows[lo: lo + EVAL_BATCH]), cfg)
            outputs["scores"].append(out["scores"].numpy())
            outputs["labels"].append(out["labels"].numpy())
        eval_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = loop.evaluate({k: np.concatenate(v) for k, v in outputs.items()}, cfg)
    metrics_s = time.perf_counter() - t0
    evaluation = {"impressions": len(rows), "batch": EVAL_BATCH, "seconds": eval_s,
                  "impressions_per_s": len(rows) / eval_s, "metrics_s": metrics_s, "auc": metrics["auc"],
                  "candidates_padded": int(outputs["labels"][0].shape[1]),
                  "peak_rss_increase_mb": mem_e.increase_mb, "peak_rss_mb": mem_e.peak_mb}
    return {"variant": variant, "news_encoder": encoder, "setup_s": setup_s, "samples": n, "info": bundle.info,
            "params": sum(p.numel() for p in model.parameters()), "train": train, "eval": evaluation}


# ---------------------------------------------------------------------------------------------
# running and reporting


def print_tables(res: dict[str, Any]) -> None:
    sc = res["scorer"]
    print(f"news-rec benchmark; numpy {res['numpy']}, scikit-learn {res['sklearn']}, torch {res['torch']}, "
          f"python {res['python']}, {os.cpu_count()} cores seen")
    if sc is not None:
        print(f"\nscorer: {sc['impressions']:,} random impressions, {sc['candidates']:,} candidates, {sc['clicks']:,} "
              f"clicks, {sc['impressions_with_ties']:,} with tied raw scores; truth.txt + prediction.txt "
              f"{sc['file_mb']:.1f} MB (written in {sc['write_s']:.1f} s, not timed); ours: median of "
              f"{sc['repeats']} after a warm-up, reference: one run")
        print(f"{'':34s} {'seconds':>8s} {'impressions/s':>14s} {'peak +MB':>8s} {'peak MB':>8s}")
        for name, r in sc["rows"].items():
            mem = (f"{r['peak_rss_increase_mb']:8.0f} {r['peak_rss_mb']:8.0f}" if "peak_rss_mb" in r
                   else f"{'':8s} {'':8s}")
            print(f"{name:34s} {r['seconds']:8.3f} {r['impressions_per_s']:14,.0f} {mem}")
        print("reference: read both files line by line (json.loads), then per impression sklearn roc_auc_score on "
              "1/rank, MRR, nDCG@5/@10 by numpy sorting")
        print(f"{'metric':8s} {'score()':>10s} {'in memory':>10s} {'reference':>10s} {'max |mean diff|':>15s} "
              f"{'max |per-impr. diff|':>20s}")
        for m in METRICS:
            print(f"{m:8s} {sc['means']['score'][m]:10.6f} {sc['means']['impression_metrics'][m]:10.6f} "
                  f"{sc['means']['reference'][m]:10.6f} {sc['max_abs_mean_difference'][m]:15.2e} "
                  f"{sc['max_abs_per_impression_difference'][m]:20.2e}")
        print(f"identical results (means within {TOLERANCE:g}): asserted")
        for key, value in sc["ratios"].items():
            print(f"  {key:58s} {value:7.2f}")
    tr = res["training"]
    if tr is not None:
        d = tr["data"]
        print(f"\ntraining: embedded benchmark seed {d['seed']}{' (quick)' if d['quick'] else ''}: {d['users']:,} users, "
              f"{d['news']:,} news, impressions train {d['impressions']['train']:,} / dev {d['impressions']['dev']:,}; "
              f"{tr['threads']} torch thread(s); batch {BATCH} consecutive samples, 1 warm-up + {tr['steps']} timed "
              f"steps (forward, backward, clip, AdamW); eval: eval_step over the validation impressions, "
              f"batch {EVAL_BATCH}")
        print(f"{'variant':8s} {'encoder':7s} {'params':>8s} {'setup s':>7s} {'s/step':>7s} {'collate':>7s} "
              f"{'clicks/s':>9s} {'peak +MB':>8s} {'peak MB':>7s} {'eval imp':>8s} {'eval s':>7s} {'imp/s':>8s} "
              f"{'peak +MB':>8s} {'vs sein':>7s}")
        ref = next((r for r in tr["configs"] if r.get("variant") == "sein" and r.get("news_encoder") == "nrms"
                    and "train" in r), None)
        for r in tr["configs"]:
            if "error" in r:
                print(f"{r['label']}: FAILED: {r['error']}")
                continue
            t, e = r["train"], r["eval"]
            vs = f"{ref['train']['s_per_step'] / t['s_per_step']:7.2f}" if ref else f"{'-':>7s}"
            print(f"{r['variant']:8s} {r['news_encoder']:7s} {r['params']:8,d} {r['setup_s']:7.1f} "
                  f"{t['s_per_step']:7.3f} {t['collate_s'] / t['seconds']:7.1%} {t['clicks_per_s']:9,.0f} "
                  f"{t['peak_rss_increase_mb']:8.0f} {t['peak_rss_mb']:7.0f} {e['impressions']:8,d} "
                  f"{e['seconds']:7.2f} {e['impressions_per_s']:8,.0f} {e['peak_rss_increase_mb']:8.0f} {vs}")
        print("clicks/s: training samples (one per click, 1 + npratio candidates) per second; collate: the share of "
              "the step spent sampling negatives; vs sein: training speed-up over sein + nrms encoder; setup (reading "
              "and preparing the data, building the model) not timed")
        mem = next((r["train"]["memory_method"] for r in tr["configs"] if "train" in r), "-")
        print(f"peak +MB: the section's peak RSS above the RSS before it ({mem}); peak MB: the process's RSS then")
    before, after = res["load_average_1min"]
    print(f"1-minute load average {before:.2f} before, {after:.2f} after (other work on these cores slows every row)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10,000 impressions, quick embedded data, 3 steps")
    ap.add_argument("--impressions", type=int, default=None, help="scorer impressions (default 100,000; quick 10,000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of score() and impression_metrics")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per model (default 20; quick 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the training part")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="keep the generated training data here (default: a temp dir)")
    ap.add_argument("--skip-scorer", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    args = ap.parse_args()
    n = args.impressions or (10_000 if args.quick else 100_000)
    steps = args.steps or (3 if args.quick else 20)
    import numpy as np
    import sklearn
    import torch

    torch.set_num_threads(1)  # the scorer part is numpy / scikit-learn
    load_before = os.getloadavg()
    scorer = None if args.skip_scorer else bench_scorer(n, args.seed, args.repeats)
    training = None
    if not args.skip_train:
        with contextlib.ExitStack() as stack:
            root = Path(args.work) if args.work else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="news-rec-bench-")))
            data_dir, info = dataset_dir(root, args.seed, args.quick)
            configs = []
            for variant, encoder in CONFIGS:
                r = in_process(bench_training, data_dir, variant, encoder, steps, args.threads, args.seed)
                r.setdefault("label", f"{variant} / {encoder}")
                configs.append(r)
        training = {"data": info, "threads": args.threads, "steps": steps, "configs": configs}
    res = {"scorer": scorer, "training": training, "numpy": np.__version__, "sklearn": sklearn.__version__,
           "torch": torch.__version__, "python": sys.version.split()[0],
           "load_average_1min": [load_before[0], os.getloadavg()[0]]}
    if args.json:
        print(json.dumps(res, indent=2, default=float))
        return
    print_tables(res)


if __name__ == "__main__":
    main()
