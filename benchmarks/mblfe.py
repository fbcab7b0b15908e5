"""mblfe speed and memory: training epoch time and full-ranking throughput, against RecBole's LightGCN.

Data: the task's embedded generator (``synth.generate``) at 10,000 users x 5,000 items (--quick: 2,000 x
1,000), written in the CRGCN/MBLFE folder format and read back through the task, as a run reads it.

Measured in one run, each model in its own process (so its memory is its own), ``--threads`` torch threads:

1. training epoch, for model.name mblfe and lightgcn-target (config defaults, batch 1024 users = the
   release's): every batch of one epoch as ``core.loop.fit`` runs it (the loop's seeded user batches,
   the task's sampler through ``bundle.collate_fn``, forward, backward, Adam step, ``clear_cache``);
   seconds per epoch = median of --epochs epochs after one warm-up epoch, the sampler's share of it,
   and the peak RSS increase over the RSS before the epochs;
2. full ranking: ``score_users`` (its cached propagation included) + masking + top-80 metrics with
   ``components.ranking.topk_metrics`` (2,048 users per batch) of every user with a test item, and of
   every user (timing only: a user without a test item gets item 0 as placeholder ground truth);
   median of 3 after a warm-up, users/s, peak RSS increase; the target is < 2 s for all users;
3. the named peer: RecBole 1.2.1's LightGCN (embedding 64, 2 layers, Adam 1e-3, reg 1e-4, one uniform
   negative per pair), its ``Trainer._train_epoch`` over the same training buy pairs, written as atomic
   files; all users and items are declared so its graph has the same nodes. RecBole batches 1,024
   (user, item) pairs, not users, so an epoch visits every buy pair once, where ours visits every user
   once (one buy pair per user that has one): compared per epoch and per 1,000 training pairs.

Peak memory: the kernel's RSS high-water mark (VmHWM), reset through /proc/self/clear_refs before each
section; where that is not allowed, psutil sampling every 5 ms, else ru_maxrss (the process's peak).

    python benchmarks/mblfe.py                    # 10k x 5k, 3 timed epochs, 2 threads
    python benchmarks/mblfe.py --quick            # 2k x 1k smoke run (< 1 minute)
    python benchmarks/mblfe.py --work /tmp/mblfe  # keep the generated data there for the next run
    python benchmarks/mblfe.py --json             # one JSON object instead of the tables
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
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_memory import PeakRSS, in_process  # noqa: E402

MODELS = ("mblfe", "lightgcn-target")
BATCH_USERS = 1024  # the release's batch (users)
RANK_BATCH = 2048
RANK_TARGET_S = 2.0
RANK_REPEATS = 3


# ---------------------------------------------------------------------------------------------
# data


def dataset_dir(root: Path, users: int, items: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """The generated data set in the folder format under ``root`` (reused when already there)."""
    from affectkit.core.runs import atomic_write_json
    from affectkit.tasks.mblfe.data import write_folder
    from affectkit.tasks.mblfe.synth import DATA_VERSION, SynthConfig, generate

    out = root / f"mblfe-u{users}-i{items}-seed{seed}-v{DATA_VERSION}"
    done = out / "bench.json"
    if done.exists():
        return out, json.loads(done.read_text())
    t0 = time.perf_counter()
    ds, _ = generate(SynthConfig(users=users, items=items), seed)
    write_folder(ds, out)
    info = {"users": users, "items": items, "seed": seed, "data_version": DATA_VERSION,
            "interactions": {b: int(ds.train[b].nnz) for b in ds.behaviors},
            "validation_pairs": len(ds.validation), "test_pairs": len(ds.test),
            "generate_s": round(time.perf_counter() - t0, 1)}
    atomic_write_json(done, info)
    return out, info


def ranking_targets(ds: Any) -> dict[str, tuple[dict[int, Any], dict[int, Any]]]:
    """(ground truth, mask) per user: the test users as the evaluator builds them, and every user."""
    import numpy as np

    from affectkit.tasks.mblfe.data import group_by_user
    from affectkit.tasks.mblfe.train import split_targets

    gt, mask = split_targets(ds, "test")
    target = ds.train[ds.target].tocsr()
    validation = group_by_user(ds.validation)
    empty, placeholder = np.empty(0, np.int64), np.zeros(1, np.int64)
    all_gt = {u: gt.get(u, placeholder) for u in range(ds.n_users)}
    all_mask = {u: mask[u] if u in mask else
                np.union1d(target.indices[target.indptr[u]: target.indptr[u + 1]], validation.get(u, empty))
                for u in range(ds.n_users)}
    return {"test users": (gt, mask), "all users": (all_gt, all_mask)}


# ---------------------------------------------------------------------------------------------
# ours: one process per model


def _setup_ours(data_dir: Path, model_name: str, seed: int) -> tuple[Any, Any, Any, Any, Any]:
    from affectkit.core.config import apply_overrides
    from affectkit.core.loop import make_optimizer
    from affectkit.core.output import Output, set_output
    from affectkit.core.seeding import seed_everything
    from affectkit.tasks.mblfe import TASK
    from affectkit.tasks.mblfe.config import MBLFEConfig

    set_output(Output(quiet=True))
    cfg = apply_overrides(MBLFEConfig(), [f"model.name={model_name}", f"train.batch_size={BATCH_USERS}"])
    cfg = TASK.resolve_config(cfg, data_dir)
    bundle = TASK.build_data(cfg, data_dir)
    seed_everything(seed)
    model = TASK.build_model(cfg)
    return TASK, cfg, bundle, model, make_optimizer(model, cfg, TASK)


class TimedCollate:
    """The bundle's collate_fn, timed, counting the target pairs (users that have a target item)."""

    def __init__(self, collate: Any):
        self.collate, self.seconds, self.target_pairs = collate, 0.0, 0

    def __call__(self, items: list[Any]) -> Any:
        t0 = time.perf_counter()
        batch = self.collate(items)
        self.seconds += time.perf_counter() - t0
        self.target_pairs += int(batch["has"][:, -1].sum())
        return batch


def train_epoch(task: Any, cfg: Any, bundle: Any, model: Any, optimizer: Any, seed: int, epoch: int) -> dict[str, float]:
    """One epoch as core.loop.fit runs it (no evaluation, no logging, no checkpoint)."""
    from torch.utils.data import DataLoader

    from affectkit.core.loop import EpochBatches
    from affectkit.core.seeding import torch_generator

    collate = TimedCollate(bundle.collate_fn)
    batches = EpochBatches(len(bundle.train), cfg.train.batch_size, seed, epoch)
    loader = DataLoader(bundle.train, batch_sampler=batches, collate_fn=collate, generator=torch_generator(seed + epoch))
    model.train()
    t0 = time.perf_counter()
    for step, batch in enumerate(loader):
        loss, _ = task.train_step(model, batch, cfg)
        loss.backward()
        float(loss.detach())  # the loop reads the loss every step
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        task.after_step(model, cfg, step + 1)
    return {"seconds": time.perf_counter() - t0, "sampling_s": collate.seconds, "batches": len(batches),
            "target_pairs": collate.target_pairs}


def rank_once(model: Any, gt: dict, mask: dict) -> dict[str, float]:
    """Score (cache rebuilt), mask and top-80 metrics of the users of ``gt``; the scoring alone too."""
    import torch

    from affectkit.components.ranking import topk_metrics
    from affectkit.tasks.mblfe.train import KS

    users = torch.tensor(sorted(gt), dtype=torch.long)
    model.eval()
    model.clear_cache()
    t0 = time.perf_counter()
    for lo in range(0, len(users), RANK_BATCH):
        model.score_users(users[lo: lo + RANK_BATCH])
    score_s = time.perf_counter() - t0
    model.clear_cache()
    t0 = time.perf_counter()
    res = topk_metrics(model.score_users, gt, mask, ks=KS, batch_size=RANK_BATCH)
    total = time.perf_counter() - t0
    means = res.mean()
    return {"seconds": total, "score_s": score_s, "hit@10": means["hit@10"], "ndcg@10": means["ndcg@10"]}


def measure_ranking(model: Any, gt: dict, mask: dict) -> dict[str, Any]:
    rank_once(model, gt, mask)  # warm-up
    with PeakRSS() as mem:
        runs = [rank_once(model, gt, mask) for _ in range(RANK_REPEATS)]
    seconds = statistics.median(r["seconds"] for r in runs)
    return {"users": len(gt), "seconds": seconds, "score_s": statistics.median(r["score_s"] for r in runs),
            "users_per_s": len(gt) / seconds, "hit@10": runs[0]["hit@10"], "ndcg@10": runs[0]["ndcg@10"],
            "peak_rss_increase_mb": mem.increase_mb, "peak_rss_mb": mem.peak_mb}


def bench_ours(data_dir: Path, model_name: str, epochs: int, threads: int, seed: int) -> dict[str, Any]:
    import torch

    from affectkit.tasks.mblfe.train import load_data

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    task, cfg, bundle, model, optimizer = _setup_ours(data_dir, model_name, seed)
    setup_s = time.perf_counter() - t0
    train_epoch(task, cfg, bundle, model, optimizer, seed, 0)  # warm-up
    with PeakRSS() as mem:
        runs = [train_epoch(task, cfg, bundle, model, optimizer, seed, e) for e in range(1, epochs + 1)]
    train = {key: statistics.median(r[key] for r in runs) for key in ("seconds", "sampling_s", "target_pairs")}
    train.update(batches=runs[0]["batches"], users=runs[0]["batches"] * cfg.train.batch_size,
                 epoch_seconds=[r["seconds"] for r in runs], peak_rss_increase_mb=mem.increase_mb,
                 peak_rss_mb=mem.peak_mb, memory_method=mem.method, setup_s=setup_s,
                 params=sum(p.numel() for p in model.parameters()))
    targets = ranking_targets(load_data(cfg, data_dir, warn=False))
    ranking = {name: measure_ranking(model, gt, mask) for name, (gt, mask) in targets.items()}
    return {"model": model_name, "train": train, "ranking": ranking}


# ---------------------------------------------------------------------------------------------
# the peer: RecBole's LightGCN


def _numpy2_shims() -> None:
    """RecBole 1.2.1 assigns np.float_ etc. (removed in numpy 2) and fills a dok_matrix through
    ``_update`` (removed in scipy 1.12+); only setup code goes through these."""
    import numpy as np
    import scipy.sparse as sp

    for name, value in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if name not in np.__dict__:
            setattr(np, name, value)
    if not hasattr(sp.dok_matrix, "_update"):
        sp.dok_matrix._update = lambda self, d: self._dict.update(d)


def write_recbole_files(ds: Any, folder: Path, name: str) -> int:
    """The training target pairs (and the held-out splits) as atomic files, every user and item declared."""
    folder.mkdir(parents=True, exist_ok=True)
    train = ds.train[ds.target].tocoo()
    parts = {"train": (train.row, train.col), "valid": (ds.validation[:, 0], ds.validation[:, 1]),
             "test": (ds.test[:, 0], ds.test[:, 1])}
    for part, (users, items) in parts.items():
        rows = "".join(f"u{u}\ti{i}\n" for u, i in zip(users.tolist(), items.tolist(), strict=True))
        (folder / f"{name}.{part}.inter").write_text("user_id:token\titem_id:token\n" + rows)
    (folder / f"{name}.user").write_text("user_id:token\n" + "".join(f"u{u}\n" for u in range(ds.n_users)))
    (folder / f"{name}.item").write_text("item_id:token\n" + "".join(f"i{i}\n" for i in range(ds.n_items)))
    return int(train.nnz)


def recbole_config_dict(data_path: Path, seed: int) -> dict[str, Any]:
    return {
        "data_path": str(data_path), "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"], "user": ["user_id"], "item": ["item_id"]},
        "embedding_size": 64, "n_layers": 2, "reg_weight": 1e-4, "learning_rate": 1e-3, "learner": "adam",
        "train_batch_size": BATCH_USERS, "eval_step": 0, "shuffle": True, "worker": 0, "seed": seed,
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False,
                                  "candidate_num": 0},
        "eval_args": {"split": None, "order": "RO", "group_by": "user", "mode": "full"},
        "show_progress": False, "use_gpu": False, "checkpoint_dir": str(data_path / "saved"), "log_wandb": False,
    }


def bench_recbole(data_dir: Path, epochs: int, threads: int, seed: int) -> dict[str, Any]:
    import torch

    from affectkit.tasks.mblfe.data import load

    warnings.simplefilter("ignore")
    _numpy2_shims()
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import LightGCN
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    ds = load(data_dir, warn=False)
    sys.argv = sys.argv[:1]  # RecBole's Config reads (and reports) the command line
    with (tempfile.TemporaryDirectory(prefix="mblfe-recbole-") as tmp, contextlib.chdir(tmp),  # its logs land here
          contextlib.redirect_stdout(sys.stderr)):  # --json keeps stdout to itself
        pairs = write_recbole_files(ds, Path(tmp) / "mb", "mb")
        t0 = time.perf_counter()
        config = Config(model="LightGCN", dataset="mb", config_dict=recbole_config_dict(Path(tmp), seed))
        init_seed(seed, True)
        torch.set_num_threads(threads)
        train_data, _, _ = data_preparation(config, create_dataset(config))
        trainer = Trainer(config, LightGCN(config, train_data.dataset).to(config["device"]))
        setup_s = time.perf_counter() - t0
        trainer._train_epoch(train_data, 0)  # warm-up
        times = []
        with PeakRSS() as mem:
            for e in range(1, epochs + 1):
                t0 = time.perf_counter()
                trainer._train_epoch(train_data, e)
                times.append(time.perf_counter() - t0)
        model = trainer.model
        return {"model": "RecBole LightGCN", "version": recbole.__version__, "device": str(config["device"]),
                "train": {"seconds": statistics.median(times), "epoch_seconds": times, "batches": len(train_data),
                          "target_pairs": pairs, "users": model.n_users - 1, "items": model.n_items - 1,
                          "peak_rss_increase_mb": mem.increase_mb, "peak_rss_mb": mem.peak_mb,
                          "memory_method": mem.method, "setup_s": setup_s,
                          "params": sum(p.numel() for p in model.parameters())}}


def recbole_missing() -> str | None:
    """Why the peer cannot run here, or None."""
    import importlib.util

    for module in ("recbole", "pandas", "colorlog", "texttable", "tensorboard"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (RecBole 1.2.1: pip install --no-deps recbole, then colorlog "\
                   "colorama texttable tabulate tensorboard pandas)"
    return None


# ---------------------------------------------------------------------------------------------
# running and reporting


def ratios(ours: dict[str, Any], peer: dict[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    mb, lg = ours.get("mblfe", {}).get("train"), ours.get("lightgcn-target", {}).get("train")
    if mb and lg:
        out["mblfe / lightgcn-target, s per epoch"] = mb["seconds"] / lg["seconds"]
    if lg and peer and "train" in peer:
        rb = peer["train"]
        out["lightgcn-target / RecBole LightGCN, s per epoch"] = lg["seconds"] / rb["seconds"]
        out["lightgcn-target / RecBole LightGCN, s per 1k pairs"] = per_k_pairs(lg) / per_k_pairs(rb)
        out["lightgcn-target / RecBole LightGCN, s per batch"] = (lg["seconds"] / lg["batches"]) / (rb["seconds"] / rb["batches"])
        if mb:
            out["mblfe / RecBole LightGCN, s per epoch"] = mb["seconds"] / rb["seconds"]
    return out


def per_k_pairs(train: dict[str, Any]) -> float:
    return train["seconds"] / max(1, train["target_pairs"]) * 1000


def print_tables(res: dict[str, Any]) -> None:
    d, ours, peer = res["data"], res["ours"], res.get("recbole")
    print(f"mblfe benchmark: {d['users']:,} users x {d['items']:,} items, embedded generator seed {d['seed']} "
          f"(interactions {', '.join(f'{b} {n:,}' for b, n in d['interactions'].items())}; "
          f"{d['test_pairs']:,} test users); torch {res['torch']}, {res['threads']} thread(s), "
          f"{os.cpu_count()} cores seen")
    print(f"\ntraining: median of {res['epochs']} epochs after 1 warm-up; ours: batches of {BATCH_USERS} users "
          f"(one epoch = every user once, last partial batch dropped), RecBole: batches of {BATCH_USERS} "
          "(user, buy item) pairs (one epoch = every training buy pair once)")
    head = (f"{'model':22s} {'batches':>7s} {'pairs':>8s} {'s/epoch':>8s} {'sampler s':>9s} {'ms/1k pairs':>11s} "
            f"{'peak +MB':>8s} {'peak MB':>8s} {'vs RecBole':>10s}")
    print(head)
    rb = peer.get("train") if peer else None
    rows = [(name, ours[name].get("train")) for name in MODELS if name in ours] + [("RecBole LightGCN", rb)]
    for name, t in rows:
        if t is None:
            continue
        vs = f"{t['seconds'] / rb['seconds']:10.2f}" if rb else f"{'-':>10s}"
        sampler = f"{t['sampling_s']:9.3f}" if "sampling_s" in t else f"{'(inside)':>9s}"
        print(f"{name:22s} {t['batches']:7d} {t['target_pairs']:8,d} {t['seconds']:8.3f} {sampler} "
              f"{per_k_pairs(t) * 1000:11.1f} {t['peak_rss_increase_mb']:8.0f} {t['peak_rss_mb']:8.0f} {vs}")
    print("pairs: training target (buy) pairs per epoch; ours also samples the other behaviors' pairs "
          "(mblfe trains on them; lightgcn-target ignores them)")
    print(f"\nfull ranking: score_users + mask + top-80 metrics (topk_metrics), {RANK_BATCH} users per batch, "
          f"median of {RANK_REPEATS} after a warm-up, scoring cache rebuilt each time; target < {RANK_TARGET_S:.0f} s "
          "for all users")
    print(f"{'model':16s} {'users':11s} {'n':>6s} {'score s':>8s} {'total s':>8s} {'users/s':>9s} {'peak +MB':>8s} "
          f"{'hit@10':>7s} {'< 2 s':>6s}")
    for name in MODELS:
        for part, r in ours.get(name, {}).get("ranking", {}).items():
            verdict = ("PASS" if r["seconds"] < RANK_TARGET_S else "FAIL") if part == "all users" else ""
            hit = f"{r['hit@10']:7.3f}" if part == "test users" else f"{'-':>7s}"
            print(f"{name:16s} {part:11s} {r['users']:6d} {r['score_s']:8.3f} {r['seconds']:8.3f} "
                  f"{r['users_per_s']:9,.0f} {r['peak_rss_increase_mb']:8.0f} {hit} {verdict:>6s}")
    print("\nratios")
    for key, value in res["ratios"].items():
        print(f"  {key:55s} {value:6.2f}")
    for name, r in list(ours.items()) + ([("RecBole", peer)] if peer else []):
        if "error" in r:
            print(f"{name}: FAILED: {r['error']}")
    if peer is None or "error" in peer:
        print(f"RecBole peer skipped: {res.get('recbole_skipped') or peer['error']}")
    else:
        print(f"RecBole {peer['version']} on {peer['device']}: graph {rb['users']:,} users x {rb['items']:,} items "
              f"(same nodes as ours), setup (dataset + graph) {rb['setup_s']:.1f} s not timed; its own BPR batch "
              "loss + EmbLoss on the batch's embeddings (ours: L_emb on the full tables)")
    mem = next((r["train"]["memory_method"] for r in ours.values() if "train" in r), "-")
    print(f"peak +MB: the section's peak RSS above the RSS before it ({mem}); peak MB: the process's RSS at that peak")
    before, after = res["load_average_1min"]
    print(f"1-minute load average {before:.2f} before, {after:.2f} after (other work on these cores slows every row)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 users x 1,000 items")
    ap.add_argument("--users", type=int, default=None)
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per model (after one warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="keep the generated data set here (default: a temp dir)")
    ap.add_argument("--no-recbole", action="store_true", help="skip the RecBole peer")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    args = ap.parse_args()
    users = args.users or (2000 if args.quick else 10000)
    items = args.items or (1000 if args.quick else 5000)
    import torch

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        root = Path(args.work) if args.work else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mblfe-bench-")))
        data_dir, info = dataset_dir(root, users, items, args.seed)
        ours = {name: in_process(bench_ours, data_dir, name, args.epochs, args.threads, args.seed) for name in MODELS}
        skipped = "--no-recbole" if args.no_recbole else recbole_missing()
        peer = None if skipped else in_process(bench_recbole, data_dir, args.epochs, args.threads, args.seed)
    res = {"data": info, "threads": args.threads, "epochs": args.epochs, "torch": torch.__version__,
           "python": sys.version.split()[0], "ours": ours, "recbole": peer, "recbole_skipped": skipped,
           "ratios": ratios(ours, peer), "load_average_1min": [load_before[0], os.getloadavg()[0]]}
    if "all users" in ours.get("mblfe", {}).get("ranking", {}):
        res["all_users_ranking_under_2s"] = {name: r["ranking"]["all users"]["seconds"] < RANK_TARGET_S
                                             for name, r in ours.items() if "ranking" in r}
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print_tables(res)


if __name__ == "__main__":
    main()
