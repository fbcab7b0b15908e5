"""prime speed, measured in one run (ratios are between numbers of the same run):

1. Harrell's C-index on 100,000 patients (random times with ties, 40 % censored, risks rounded to
   two decimals so many are tied): ``metrics.harrell_cindex`` against lifelines'
   ``concordance_index`` (also O(n log n)) and scikit-survival's ``concordance_index_censored`` on
   the same data: seconds each, the ratios, and that the three agree.
2. Pretraining throughput: patients/s of PRIME's pretraining step (alignment, imputation alignment,
   consistency, bank update) on the embedded GBSG benchmark (686 patients; hashing report encoder so
   the number is the model's), the bench's size (D 32, one layer) and the spec's (D 256, 4 layers),
   against the supervised step of the zero-fill baseline of the same size.
3. Bag loading: MB/s of ``data.load_bag`` on CLAM-style ``h5_files`` (20 slides x 8,000 patches x
   1,024 float32 features = 655 MB; the bag cache empty, the files in the OS page cache, after one
   warm-up read for HDF5's start-up), against ``np.load`` of the same arrays as .npy files; both sides
   keep the arrays they read, as the bag cache does (on this VM, touching fresh memory costs about as
   much as reading it).

    python benchmarks/prime.py            # the numbers of docs/tasks/prime.md
    python benchmarks/prime.py --quick    # 20,000 patients, fewer steps, 5 slides
    python benchmarks/prime.py --json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from peak_memory import print_results  # noqa: E402


def bench_cindex(n: int) -> dict[str, float]:
    from lifelines.utils import concordance_index

    from affectkit.tasks.prime.metrics import harrell_cindex

    rng = np.random.default_rng(0)
    time_ = np.round(rng.exponential(1000, n))
    event = (rng.random(n) > 0.4).astype(int)
    risk = np.round(rng.normal(size=n) - time_ / 2000, 2)
    t0 = time.perf_counter()
    ours = harrell_cindex(time_, event, risk)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ll = concordance_index(time_, -risk, event)
    t_ll = time.perf_counter() - t0
    out = {"patients": n, "affectkit_s": t_ours, "lifelines_s": t_ll, "speedup_vs_lifelines": t_ll / t_ours,
           "abs_diff_lifelines": abs(ours - ll)}
    try:
        from sksurv.metrics import concordance_index_censored

        t0 = time.perf_counter()
        sk = concordance_index_censored(event.astype(bool), time_, risk)[0]
        out["sksurv_s"] = time.perf_counter() - t0
        out["speedup_vs_sksurv"] = out["sksurv_s"] / t_ours
        out["abs_diff_sksurv"] = abs(ours - sk)
    except ImportError:
        pass
    return out


def bench_pretrain(steps: int, big: bool) -> dict[str, float]:
    import torch

    from affectkit.core.config import apply_overrides
    from affectkit.core.seeding import attach_generator
    from affectkit.tasks.prime import TASK
    from affectkit.tasks.prime.bench import SETTINGS, tensors_of, train_lean
    from affectkit.tasks.prime.features import fit_featurizer
    from affectkit.tasks.prime.layout import apply_dataset_yaml
    from affectkit.tasks.prime.method_losses import after_pretrain_step
    from affectkit.tasks.prime.synth import make
    from affectkit.tasks.prime.train import (
        build_encoder,
        downstream_loss,
        prepare,
        pretrain_module,
        targets,
        with_head,
    )

    torch.set_num_threads(2)
    size = ["model.dim=256", "model.layers=4", "model.heads=8"] if big else []
    with tempfile.TemporaryDirectory() as tmp:
        make(Path(tmp), 0, True)
        cfg = apply_overrides(TASK.Config(), [*SETTINGS, *size, "model.text_encoder=hashing", f"train.max_steps={steps}",
                                              "model.fill=bank"])
        cfg = apply_dataset_yaml(cfg, Path(tmp))
        prepared = prepare(cfg, Path(tmp), 0)
    idx = np.arange(prepared.cohort.n)
    feat = fit_featurizer(prepared.cohort, idx, cfg, prepared.text_dims, 0)
    batch = tensors_of(prepared, feat)
    objective = pretrain_module(cfg, feat, 0, prepared.cohort.observed)
    t0 = time.perf_counter()
    train_lean(objective, lambda m, b: m(b)[0], batch, idx, cfg, 0,
               lambda s: after_pretrain_step(objective.model, s, cfg, 0))
    t_pre = time.perf_counter() - t0
    zcfg = apply_overrides(cfg, ["model.fill=zero"])
    ys, _ = targets(zcfg, prepared.cohort, idx)
    for k, v in ys.items():
        batch[k] = torch.from_numpy(np.asarray(v))
    model = with_head(zcfg, build_encoder(zcfg, feat))
    attach_generator(model, 0)
    t0 = time.perf_counter()
    train_lean(model, lambda m, b: downstream_loss(m, b, zcfg, m.generator), batch, idx, zcfg, 0)
    t_sup = time.perf_counter() - t0
    per = steps * cfg.train.batch_size
    return {"size": "D 256, 4 layers" if big else "D 32, 1 layer", "steps": steps,
            "pretrain_patients_per_s": per / t_pre, "supervised_patients_per_s": per / t_sup,
            "pretrain_cost_vs_supervised": t_pre / t_sup}


def bench_bags(n_slides: int, patches: int = 8000, dim: int = 1024) -> dict[str, float]:
    import h5py

    from affectkit.tasks.prime.data import clear_bag_cache, load_bag

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        h5s, npys = [], []
        for i in range(n_slides):
            x = rng.normal(size=(patches, dim)).astype(np.float32)
            p = Path(tmp) / f"slide{i}.h5"
            with h5py.File(p, "w") as f:
                f.create_dataset("features", data=x)
                f.create_dataset("coords", data=rng.integers(0, 50000, (patches, 2)))
            np.save(Path(tmp) / f"slide{i}.npy", x)
            h5s.append(p)
            npys.append(Path(tmp) / f"slide{i}.npy")
        mb = n_slides * patches * dim * 4 / 1e6
        os.sync()  # the files are written back before timing (reads then come from the page cache)
        load_bag((h5s[0],))  # HDF5's one-time start-up is not a per-file cost
        np.load(npys[0])
        clear_bag_cache()
        # both keep what they read (load_bag's cache does): fresh memory costs the same on both sides
        t0 = time.perf_counter()
        kept = [load_bag((p,)) for p in h5s]
        t_h5 = time.perf_counter() - t0
        t0 = time.perf_counter()
        kept_npy = [np.load(p) for p in npys]
        t_np = time.perf_counter() - t0
        del kept, kept_npy
        clear_bag_cache()
    return {"slides": n_slides, "megabytes": mb, "h5_mb_per_s": mb / t_h5, "npy_mb_per_s": mb / t_np,
            "h5_vs_npy": t_np / t_h5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {"cindex": bench_cindex(20_000 if args.quick else 100_000),
               "pretrain_small": bench_pretrain(20 if args.quick else 100, False),
               "bags": bench_bags(5 if args.quick else 20)}
    if not args.quick:
        results["pretrain_spec_size"] = bench_pretrain(20, True)
    print_results(results, args.json, width=32)


if __name__ == "__main__":
    main()
