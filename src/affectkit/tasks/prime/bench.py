"""The pre-registered prime protocol (fixed before the confirmatory run; docs/tasks/prime.md).

Data: the embedded benchmarks, data seed = ``--seed``: GBSG (lifelines' lymph-node set, 686
patients; modalities clinical | labs | report; endpoints overall survival ``os`` and recurrence
``rfs``) and BC (scikit-survival's breast-cancer set, 198 patients; genes | clinical | report;
distant metastasis ``dm``). The manifests' 5 stratified folds. Missingness settings, drawn once per
dataset with the data seed and applied to every patient (training and test folds alike), identical
for every method and model seed: ``complete`` (0 %), ``mcar30``, ``mcar50``, ``mcar70`` and the
site-like blocks ``site``. Model seeds ``--seed`` + 0, 1, 2: 5 folds x 3 seeds = 15 paired cells per
(dataset, endpoint, setting).

Methods, one fusion model size for all (``SETTINGS``: D 32, one fusion layer, 2 heads, dropout 0.1,
one MiniLM report chunk, 6 gene groups, bank of 32 prototypes, top-4), the discrete-time NLL head
(4 quantile bins of the fold's event times), AdamW lr 3e-3, weight decay 0.05, batch 128, 10 warm-up
steps then cosine; every method gets the same ``FINETUNE_STEPS`` supervised steps on the training
fold (last weights scored; no validation split), PRIME alone also ``PRETRAIN_STEPS`` label-free steps
on the training fold's patients (features only; the test fold is never seen, the bank is built from
the training fold):
- ``prime``: pretraining with the bank (fill ``bank``), then full fine-tuning;
- ``zero-fill``, ``mean-imputation``: the same fusion model without the bank (fill ``zero`` / ``mean``),
  supervised from scratch; ``modality-dropout``: zero fill and each observed modality dropped with
  p 0.3 while training;
- ``null-copy``: zero-fill again with another initialisation seed (model seed + 1000), the control
  for how far two identical methods differ;
- ``ridge-cox``: a ridge Cox model (alpha 1, Breslow) on the concatenated standardised vectors and
  8 principal components of the report embeddings, missing values mean-imputed;
- ``single:<modality>``: the fusion model on one modality (zero fill), in the ``complete`` setting only.
Scored per test fold: Harrell's C (and the 3-year AUROC of the same risk, reported).

Tests (decided here, before the run):
1. non-inferiority: on each GBSG endpoint, over all five settings x 15 cells, mean C of ``prime`` minus
   the better (higher mean) of ``zero-fill`` and ``mean-imputation`` >= -0.02;
2. positive control: every method's mean C (over the three endpoints, 15 cells each) is higher in
   ``complete`` than in ``mcar70``;
3. ``prime`` within 0.03 of ``ridge-cox`` on GBSG in ``complete``: mean C of prime >= ridge-cox - 0.03
   on both endpoints;
4. the bank is fitted on training folds only (asserted by the protocol: pretraining sees train indices).
Superiority is only reported: paired deltas per cell with the Nadeau-Bengio corrected resampled t
interval (J = 15, n_test / n_train = 1/4), beside the same statistic of ``null-copy - zero-fill``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.config import apply_overrides
from affectkit.core.task import BenchContext, BenchResult
from affectkit.tasks.prime.baselines import FUSION_BASELINES

SETTINGS = ["model.dim=32", "model.layers=1", "model.heads=2", "model.dropout=0.1", "model.text_chunks=1",
            "model.gene_groups=6", "bank.size=32", "bank.topk=4", "bank.warmup_steps=20", "train.batch_size=128",
            "train.lr=0.003", "train.weight_decay=0.05", "train.warmup_steps=10", "train.schedule=cosine",
            "finetune.head=nll", "finetune.bins=4", "finetune.mode=full"]
PRETRAIN_STEPS = 100
FINETUNE_STEPS = 120
WORKERS = 2
MISSING = ("complete", "mcar30", "mcar50", "mcar70", "site")
DATASETS = {"gbsg": ("os", "rfs"), "bc": ("dm",)}
BASELINES = {**FUSION_BASELINES, "null-copy": FUSION_BASELINES["zero-fill"]}
NULL_SEED_OFFSET = 1000
RIDGE_ALPHA = 1.0
REPORT_PCS = 8
HORIZON = 1095.75
NONINFERIORITY = -0.02
RIDGE_MARGIN = 0.03
FULL = {"datasets": DATASETS, "missing": MISSING, "seeds": 3, "folds": None, "pretrain": PRETRAIN_STEPS,
        "finetune": FINETUNE_STEPS}
QUICK = {"datasets": {"gbsg": ("os",)}, "missing": ("complete", "mcar70"), "seeds": 1, "folds": (0, 1),
         "pretrain": 60, "finetune": 90}


def config_for(task: Any, extra: list[str], steps: int, text_encoder: str = "minilm") -> Any:
    return apply_overrides(task.Config(), [*SETTINGS, f"train.max_steps={steps}", f"model.text_encoder={text_encoder}",
                                           *extra])


@dataclass
class Cell:
    """One (dataset, setting, fold): the cohort with its availability, and the fold's patients."""

    prepared: Any
    train_idx: np.ndarray
    test_idx: np.ndarray
    fold: int


def tensors_of(prepared: Any, feat: Any) -> dict[str, Any]:
    """The whole cohort as one batch of tensors (the benchmarks are small); rows = patients."""
    from affectkit.tasks.prime.features import Collate, PatientSet

    ds = PatientSet(prepared.cohort, np.arange(prepared.cohort.n), feat, prepared.text_emb, prepared.text_mask)
    return Collate(feat.modalities)([ds[i] for i in range(len(ds))])


def take(batch: dict[str, Any], idx: Any) -> dict[str, Any]:
    return {k: v[idx] for k, v in batch.items()}


def train_lean(module: Any, loss_fn: Any, batch_all: dict[str, Any], idx: np.ndarray, cfg: Any, seed: int,
               after_step: Any = None) -> Any:
    """``cfg.train.max_steps`` AdamW steps on shuffled mini-batches of patients ``idx`` (the loop of
    ``core.loop.fit`` without run directories: the same steps, schedule and clipping)."""
    import torch

    from affectkit.core.loop import LrFactor

    tc = cfg.train
    torch.manual_seed(seed)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, LrFactor(tc))
    rng = np.random.default_rng(seed)
    order, pos = rng.permutation(idx), 0
    bs = min(tc.batch_size, len(idx))
    module.train()
    for step in range(tc.max_steps):
        if pos + bs > len(order):
            order, pos = rng.permutation(idx), 0
        rows = torch.from_numpy(order[pos : pos + bs])
        pos += bs
        loss = loss_fn(module, take(batch_all, rows))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, tc.clip_grad_norm)
        opt.step()
        sched.step()
        if after_step is not None:
            after_step(step + 1)
    module.eval()
    return module


def risks(model: Any, batch_all: dict[str, Any], idx: np.ndarray, cfg: Any, only: int | None = None) -> np.ndarray:
    import torch

    from affectkit.tasks.prime.train import risk_of

    batch = take(batch_all, torch.from_numpy(idx))
    observed = batch["observed"]
    if only is not None:
        keep = torch.zeros_like(observed)
        keep[:, only] = True
        observed = observed & keep
    model.eval()
    with torch.no_grad():
        return risk_of(model(batch, observed=observed), cfg).float().numpy()


def score(risk: np.ndarray, time_: np.ndarray, event: np.ndarray) -> dict[str, float]:
    from affectkit.tasks.prime.metrics import harrell_cindex, horizon_auroc

    known = np.isfinite(time_) & np.isfinite(event)
    try:
        c = harrell_cindex(time_[known], event[known].astype(int), risk[known])
    except ValueError:
        c = float("nan")
    return {"c_index": c, "auroc": float(horizon_auroc(time_[known], event[known], risk[known], HORIZON))}


def finetune_and_score(cell: Cell, feat: Any, batch_all: dict[str, Any], cfg: Any, encoder: Any, endpoint: str,
                       model_seed: int, only: int | None = None) -> dict[str, float]:
    """``encoder`` with the head, trained ``cfg.train.max_steps`` steps on the training fold's labelled
    patients (with ``only``: those having that modality, and only it), scored on the test fold."""
    from dataclasses import replace

    import torch

    from affectkit.core.seeding import attach_generator
    from affectkit.tasks.prime.train import downstream_loss, targets, with_head

    p = cell.prepared
    cfg = replace(cfg, finetune=replace(cfg.finetune, endpoint=endpoint))
    ys, _ = targets(cfg, p.cohort, cell.train_idx)
    for k, v in ys.items():
        batch_all[k] = torch.from_numpy(np.asarray(v))
    model = with_head(cfg, encoder)
    attach_generator(model, model_seed)
    train = cell.train_idx[ys["y:known"][cell.train_idx]]
    if only is not None:
        train = train[p.cohort.observed[train, only]]

    def loss_fn(m: Any, b: dict[str, Any]) -> Any:
        if only is not None:
            keep = torch.zeros_like(b["observed"])
            keep[:, only] = True
            b = dict(b, observed=b["observed"] & keep)
        return downstream_loss(m, b, cfg, m.generator)

    train_lean(model, loss_fn, batch_all, train, cfg, model_seed)
    time_, event = p.cohort.endpoints[endpoint]
    return score(risks(model, batch_all, cell.test_idx, cfg, only), time_[cell.test_idx], event[cell.test_idx])


def neural_runs(task: Any, cell: Cell, endpoints: tuple[str, ...], seed: int, plan: dict[str, Any],
                text_encoder: str) -> dict[tuple[str, str], dict[str, float]]:
    """Every neural method on one cell and model seed: {(method, endpoint): scores}."""
    import torch

    from affectkit.tasks.prime.features import fit_featurizer
    from affectkit.tasks.prime.method_losses import after_pretrain_step
    from affectkit.tasks.prime.train import build_encoder, pretrain_module

    p = cell.prepared
    out: dict[tuple[str, str], dict[str, float]] = {}
    base = config_for(task, [], plan["finetune"], text_encoder)
    feat = fit_featurizer(p.cohort, cell.train_idx, base, p.text_dims, seed)
    batch_all = tensors_of(p, feat)

    # PRIME: one label-free pretraining per cell and seed, fine-tuned for each endpoint
    pcfg = config_for(task, ["model.fill=bank"], plan["pretrain"], text_encoder)
    torch.manual_seed(seed)
    objective = pretrain_module(pcfg, feat, seed, p.cohort.observed[cell.train_idx])

    def after(step: int) -> None:
        after_pretrain_step(objective.model, step, pcfg, seed)

    train_lean(objective, lambda m, b: m(b)[0], batch_all, cell.train_idx, pcfg, seed, after)
    pretrained = objective.model.state_dict()
    fcfg = config_for(task, ["model.fill=bank"], plan["finetune"], text_encoder)
    for endpoint in endpoints:
        torch.manual_seed(seed)
        encoder = build_encoder(fcfg, feat)
        encoder.load_state_dict(pretrained)
        out[("prime", endpoint)] = finetune_and_score(cell, feat, batch_all, fcfg, encoder, endpoint, seed)
    for method, extra in BASELINES.items():
        cfg = config_for(task, extra, plan["finetune"], text_encoder)
        model_seed = seed + NULL_SEED_OFFSET if method == "null-copy" else seed
        for endpoint in endpoints:
            torch.manual_seed(model_seed)
            out[(method, endpoint)] = finetune_and_score(cell, feat, batch_all, cfg, build_encoder(cfg, feat), endpoint,
                                                         model_seed)
    return out


def single_runs(task: Any, cell: Cell, endpoints: tuple[str, ...], seed: int, plan: dict[str, Any],
                text_encoder: str) -> dict[tuple[str, str], dict[str, float]]:
    """The fusion model on one modality at a time (zero fill), trained on the patients that have it."""
    import torch

    from affectkit.tasks.prime.features import fit_featurizer
    from affectkit.tasks.prime.train import build_encoder

    p = cell.prepared
    cfg = config_for(task, ["model.fill=zero"], plan["finetune"], text_encoder)
    feat = fit_featurizer(p.cohort, cell.train_idx, cfg, p.text_dims, seed)
    batch_all = tensors_of(p, feat)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for j, name in enumerate(p.cohort.modalities):
        for endpoint in endpoints:
            torch.manual_seed(seed)
            out[(f"single:{name}", endpoint)] = finetune_and_score(cell, feat, batch_all, cfg, build_encoder(cfg, feat),
                                                                   endpoint, seed, only=j)
    return out


def ridge_features(cell: Cell) -> np.ndarray:
    """Concatenated vectors (NaN where missing) and the first principal components of the report
    embeddings (fitted on the training fold; NaN where the report is missing)."""
    from sklearn.decomposition import PCA

    p = cell.prepared
    blocks = []
    for j, (name, kind) in enumerate(p.cohort.modalities.items()):
        seen = p.cohort.observed[:, j]
        if kind == "vector":
            block = p.cohort.vectors[name].astype(np.float64).copy()
        elif kind == "text":
            emb = p.text_emb[name][:, 0, :].astype(np.float64)
            fit_rows = cell.train_idx[seen[cell.train_idx]]
            k = min(REPORT_PCS, len(fit_rows) - 1, emb.shape[1])
            block = PCA(n_components=k, random_state=0).fit(emb[fit_rows]).transform(emb)
        else:
            continue
        block[~seen] = np.nan
        blocks.append(block)
    return np.concatenate(blocks, axis=1)


def ridge_runs(cell: Cell, endpoints: tuple[str, ...]) -> dict[tuple[str, str], dict[str, float]]:
    from affectkit.tasks.prime.baselines import RidgeCox

    x = ridge_features(cell)
    out = {}
    for endpoint in endpoints:
        time_, event = cell.prepared.cohort.endpoints[endpoint]
        tr = cell.train_idx[np.isfinite(time_[cell.train_idx]) & np.isfinite(event[cell.train_idx])]
        model = RidgeCox(alpha=RIDGE_ALPHA).fit(x[tr], time_[tr], event[tr].astype(int))
        out[("ridge-cox", endpoint)] = score(model.predict(x[cell.test_idx]), time_[cell.test_idx], event[cell.test_idx])
    return out


def cells_of(setting: str, seed: int, folds: Any, base: Any) -> list[Cell]:
    """The cohort with the setting's availability (drawn with the data seed; the reports of hidden
    cells zeroed too), cut into its folds."""
    from dataclasses import replace

    from affectkit.tasks.prime.train import pattern_observed

    prepared = base
    if setting != "complete":
        cohort = base.cohort
        cohort = cohort.with_observed(pattern_observed(cohort, setting, seed))
        emb = {k: v.copy() for k, v in base.text_emb.items()}
        masks = {k: v.copy() for k, v in base.text_mask.items()}
        for j, name in enumerate(cohort.modalities):
            if name in emb:
                emb[name][~cohort.observed[:, j]] = 0.0
                masks[name][~cohort.observed[:, j]] = False
        prepared = replace(base, cohort=cohort, text_emb=emb, text_mask=masks)
    chosen = sorted(set(prepared.folds.tolist())) if folds is None else list(folds)
    return [Cell(prepared, np.flatnonzero(prepared.folds != f), np.flatnonzero(prepared.folds == f), f) for f in chosen]


def prepare_dataset(task: Any, data_dir: Path, seed: int, text_encoder: str) -> Any:
    from affectkit.tasks.prime.layout import apply_dataset_yaml
    from affectkit.tasks.prime.train import prepare

    cfg = apply_dataset_yaml(config_for(task, [], 1, text_encoder), data_dir)
    return prepare(cfg, data_dir, seed)


def run_job(job: tuple[Any, ...]) -> list[dict[str, Any]]:
    """One (dataset, setting, fold, model seed): every neural method (and the single-modality models
    in ``complete``), run in a worker process with one torch thread."""
    task, dataset, endpoints, setting, cell, seed, plan, text_encoder = job
    res = neural_runs(task, cell, endpoints, seed, plan, text_encoder)
    if setting == "complete":
        res.update(single_runs(task, cell, endpoints, seed, plan, text_encoder))
    return [{"dataset": dataset, "endpoint": endpoint, "setting": setting, "fold": cell.fold, "seed": seed,
             "method": method, **scores} for (method, endpoint), scores in res.items()]


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def run_bench(task: Any, ctx: BenchContext, text_encoder: str = "minilm") -> BenchResult:
    """The protocol above. Jobs run in ``WORKERS`` spawned processes of one torch thread each (the
    models are tiny: two single-threaded processes do twice the work of one two-threaded one); every
    job is seeded by itself, so the records do not depend on the schedule."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from affectkit.core.cache import embedded_data

    plan = QUICK if ctx.quick else FULL
    seeds = [ctx.seed + k for k in range(plan["seeds"])]
    t0 = time.perf_counter()
    root = embedded_data(task, ctx.seed, ctx.quick)
    records: list[dict[str, Any]] = []
    jobs = []
    for dataset, endpoints in plan["datasets"].items():
        data_dir = root if dataset == "gbsg" else root / dataset
        base = prepare_dataset(task, data_dir, ctx.seed, text_encoder)
        for setting in plan["missing"]:
            for cell in cells_of(setting, ctx.seed, plan["folds"], base):
                records.extend({"dataset": dataset, "endpoint": endpoint, "setting": setting, "fold": cell.fold,
                                "seed": seed, "method": method, **scores}
                               for seed in seeds for (method, endpoint), scores in ridge_runs(cell, endpoints).items())
                jobs.extend((task, dataset, endpoints, setting, cell, seed, plan, text_encoder) for seed in seeds)
    workers = max(1, min(WORKERS, os.cpu_count() or 1))
    with ctx.output.progress("prime cells", total=len(jobs)) as bar, \
            ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_one_thread) as pool:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for future in as_completed(futures):
            _, dataset, _, setting, cell, seed, *_ = futures[future]
            records.extend(future.result())
            bar.advance(status=f"{dataset}/{setting}/fold {cell.fold}/seed {seed}")
    records.sort(key=lambda r: (r["dataset"], r["endpoint"], r["setting"], r["fold"], r["seed"], r["method"]))
    from affectkit.tasks.prime.bench_tables import summarize

    tables = summarize(records, plan)
    notes = [f"data seed {ctx.seed}, model seeds {seeds}, pretrain {plan['pretrain']} + finetune {plan['finetune']} "
             f"steps; settings: {' '.join(SETTINGS)}; {workers} worker processes",
             f"protocol time {time.perf_counter() - t0:.0f} s"]
    if ctx.quick:
        notes.append("quick protocol: GBSG overall survival, complete and mcar70, 2 folds, 1 seed, short training; "
                     "the claim needs the full protocol")
    return BenchResult(task=task.name, tables=tables, metrics=task.metrics, notes=notes, extra={"records": records})
