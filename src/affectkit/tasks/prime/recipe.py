"""prime's recipe: cross-validated pretraining or downstream training (one sub-run per fold under
``RUN/folds/K``, resumable fold by fold), scoring of the test folds, and ``evaluate`` of a run (with
test-time missingness and Kaplan-Meier plots) or of a predictions file."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError
from affectkit.core.output import Output, is_main_process
from affectkit.core.runs import RunDir, atomic_write_json, atomic_write_text
from affectkit.core.task import EvaluateRequest, TrainRequest
from affectkit.tasks.prime.train import Prepared

FOLD_RESULT = "fold.json"
FEATURIZER = "featurizer.json"


def fold_dir(run: Path, fold: int) -> Path:
    return run / "folds" / str(fold)


def first_event(prepared: Prepared) -> np.ndarray:
    return next(iter(prepared.cohort.endpoints.values()))[1]


def featurizer_for(cfg: Any, prepared: Prepared, train_idx: np.ndarray, fold: int, seed: int) -> Any:
    """The fold's featurizer: the pretraining run's (same standardisation and gene groups) when the
    downstream stage starts from one, else fitted on the training fold."""
    from affectkit.tasks.prime.features import Featurizer, fit_featurizer

    if cfg.stage == "finetune" and cfg.finetune.init:
        path = fold_dir(Path(cfg.finetune.init), fold) / FEATURIZER
        if not path.is_file():
            raise DataError(
                path,
                f"the pretraining run has no fold {fold}",
                "pretrain with the same folds: affectkit train prime --data DIR --out RUN",
            )
        feat = Featurizer.from_state(json.loads(path.read_text()))
        feat.check_cohort(prepared.cohort, path)
        return feat
    return fit_featurizer(prepared.cohort, train_idx, cfg, prepared.text_dims, seed)


def pretrained_weights(cfg: Any, fold: int) -> Path | None:
    if not cfg.finetune.init:
        return None
    run = RunDir.existing(cfg.finetune.init)
    return RunDir(fold_dir(run.path, fold)).weights("last")


def train_run(request: TrainRequest) -> dict[str, Any]:
    from affectkit.core.device import get_accelerator
    from affectkit.tasks.prime.train import folds_to_run, prepare

    cfg, out = request.cfg, request.output
    if cfg.stage == "finetune" and cfg.finetune.init:
        init_cfg = RunDir.existing(cfg.finetune.init).load_config(type(cfg))
        if init_cfg.stage != "pretrain":
            raise UsageError(f"finetune.init={cfg.finetune.init}: not a pretraining run")
    prepared = prepare(cfg, request.data_dir, request.seed)
    accelerator = get_accelerator(request.precision)
    results: dict[int, dict[str, Any]] = {}
    for fold in folds_to_run(cfg, prepared):
        where = fold_dir(request.run.path, fold)
        done = where / FOLD_RESULT
        if done.is_file():
            results[fold] = json.loads(done.read_text())
            out.log(f"fold {fold}: done already")
            continue
        out.log(f"fold {fold}: {cfg.stage}")
        results[fold] = train_fold(cfg, prepared, fold, where, request.seed, accelerator, out, request.resume)
        if is_main_process():
            atomic_write_json(done, results[fold])
    summary = summarise(results)
    if cfg.stage == "finetune":
        summary.update(cohort_summary([dict(r, fold=f) for f in sorted(results) for r in results[f]["rows"]]))
    if cfg.stage == "finetune" and is_main_process():
        write_predictions(
            request.run.path / "predictions.csv", [r for f in sorted(results) for r in results[f]["rows"]]
        )
    return {
        "stage": cfg.stage,
        "folds": {str(k): v["metrics"] for k, v in sorted(results.items())},
        **summary,
    }


def train_fold(
    cfg: Any,
    prepared: Prepared,
    fold: int,
    where: Path,
    seed: int,
    accelerator: Any,
    out: Output,
    resume: bool,
) -> dict[str, Any]:
    from affectkit.core.loop import fit
    from affectkit.tasks.prime.train import FinetuneLoop, PretrainLoop, split

    run = RunDir(where)
    if is_main_process():
        where.mkdir(parents=True, exist_ok=True)
    resume_fold = resume and run.latest_checkpoint() is not None
    if cfg.stage == "pretrain":
        train_idx, valid_idx, test_idx = split(prepared, fold, 0.0, seed)
        feat = featurizer_for(cfg, prepared, train_idx, fold, seed)
        loop: Any = PretrainLoop(prepared, feat, train_idx, seed)
    else:
        fitted_on, (train_idx, valid_idx, test_idx), ys, info = downstream_split(cfg, prepared, fold, seed)
        feat = featurizer_for(cfg, prepared, fitted_on, fold, seed)
        loop = FinetuneLoop(prepared, feat, train_idx, valid_idx, ys, pretrained_weights(cfg, fold), seed)
    if is_main_process():
        atomic_write_json(where / FEATURIZER, feat.to_state())
    bundle = loop.build_data(cfg, prepared.cohort.root)
    fitted = fit(loop, cfg, bundle, accelerator, out, seed, run=run, resume=resume_fold)
    if cfg.stage == "pretrain":
        return {"metrics": {}, "step": fitted.step, "train_patients": len(train_idx)}
    from affectkit.core.loop import load_weights

    model = load_weights(loop.build_model(cfg), run.weights("best")).eval()
    scored = score_fold(model, prepared, feat, cfg, train_idx, test_idx, ys, info)
    return {
        "metrics": scored["metrics"],
        "step": fitted.step,
        "best": fitted.best,
        "info": info,
        "train_patients": len(train_idx),
        "valid_patients": len(valid_idx),
        "test_patients": len(test_idx),
        "rows": [dict(r, fold=fold) for r in scored["rows"]],
    }


def downstream_split(cfg: Any, prepared: Prepared, fold: int, seed: int
                     ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray], dict]:
    """The downstream stage's patients of a fold: the training fold (what a featurizer is fitted on),
    then (labelled training share after ``finetune.label_fraction``, validation, test), the targets
    and what defines them."""
    from affectkit.tasks.prime.train import label_subset, split, targets

    train_idx, valid_idx, test_idx = split(prepared, fold, cfg.data.valid_fraction, seed, first_event(prepared))
    ys, info = targets(cfg, prepared.cohort, train_idx)
    labelled = label_subset(train_idx[ys["y:known"][train_idx]], ys["y:event"], cfg.finetune.label_fraction, seed)
    return np.concatenate([train_idx, valid_idx]), (labelled, valid_idx, test_idx), ys, info


def cohort_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """With several cohorts (TCGA projects): each cohort's C-index per fold, its mean and sd over
    folds, and the macro average over cohorts (PRIME's reporting); {} with one cohort."""
    from affectkit.tasks.prime.metrics import fold_summary, harrell_cindex

    cohorts = sorted({str(r.get("cohort", "all")) for r in rows})
    if len(cohorts) < 2:
        return {}
    per: dict[str, dict[str, float]] = {}
    for cohort in cohorts:
        values = []
        for fold in sorted({r["fold"] for r in rows}):
            sel = [r for r in rows if str(r.get("cohort")) == cohort and r["fold"] == fold
                   and r["time"] != "" and r["event"] != ""]
            try:
                values.append(harrell_cindex(np.array([float(r["time"]) for r in sel]),
                                             np.array([int(float(r["event"])) for r in sel]),
                                             np.array([float(r["risk"]) for r in sel])))
            except ValueError:
                values.append(float("nan"))
        mean, sd = fold_summary(values)
        per[cohort] = {"c_index": mean, "std": sd}
    finite = [v["c_index"] for v in per.values() if np.isfinite(v["c_index"])]
    return {"cohorts": per, "macro_c_index": float(np.mean(finite)) if finite else float("nan")}


def summarise(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation of each metric over folds (MCAT/SurvPath reporting)."""
    from affectkit.tasks.prime.metrics import fold_summary

    names = sorted({k for r in results.values() for k in r["metrics"]})
    metrics, std = {}, {}
    for name in names:
        mean, sd = fold_summary([r["metrics"].get(name, float("nan")) for r in results.values()])
        metrics[name], std[name] = mean, sd
    return {"metrics": metrics, "std": std, "n_folds": len(results)}


# ---------------------------------------------------------------- scoring


def predict(
    model: Any,
    prepared: Prepared,
    feat: Any,
    cfg: Any,
    idx: np.ndarray,
    ys: dict[str, np.ndarray],
    observed: np.ndarray | None = None,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """Risk (higher = earlier event) and raw head outputs of patients ``idx``; ``observed`` [len(idx), M]
    hides modalities at test time (a subset of what they have)."""
    import torch

    from affectkit.tasks.prime.features import Collate, PatientSet
    from affectkit.tasks.prime.train import risk_of

    ds = PatientSet(prepared.cohort, idx, feat, prepared.text_emb, prepared.text_mask, 0, 0, targets=ys)
    collate = Collate(feat.modalities)
    risks, raws = [], []
    model.eval()
    with torch.no_grad():
        for lo in range(0, len(ds), batch_size):
            batch = collate([ds[i] for i in range(lo, min(lo + batch_size, len(ds)))])
            seen = batch["observed"]
            if observed is not None:
                seen = seen & torch.from_numpy(observed[lo : lo + len(seen)])
            logits = model(batch, observed=seen)
            risks.append(risk_of(logits, cfg).float().numpy())
            raws.append(logits.float().numpy())
    return {"risk": np.concatenate(risks), "raw": np.concatenate(raws)}


def survival_curves(
    cfg: Any,
    raw: np.ndarray,
    info: dict[str, Any],
    train_raw: np.ndarray | None,
    train_time: np.ndarray,
    train_event: np.ndarray,
    times: np.ndarray,
) -> np.ndarray | None:
    """S(t) at ``times``: the NLL head's step function over its bins, or Cox with Breslow's baseline."""
    import torch

    from affectkit.tasks.prime.metrics import breslow_survival, discrete_survival

    if cfg.finetune.target != "survival":
        return None
    if cfg.finetune.head == "nll":
        hazards = torch.sigmoid(torch.from_numpy(raw)).numpy()
        return discrete_survival(hazards, np.asarray(info["edges"]), times)
    if train_raw is None:
        return None
    return breslow_survival(train_raw, train_time, train_event, raw, times)


def fold_metrics(
    cfg: Any,
    risk: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    train_time: np.ndarray,
    train_event: np.ndarray,
    surv: np.ndarray | None,
    times: np.ndarray | None,
) -> dict[str, float]:
    """C-index, Uno's C, IBS (survival heads) and the horizon AUROC of one test fold; NaN where a
    metric is undefined (no comparable pair, one class, follow-up outside the training range)."""
    from affectkit.tasks.prime.metrics import (
        harrell_cindex,
        horizon_auroc,
        integrated_brier_score,
        uno_cindex,
    )

    out: dict[str, float] = {}
    for name, fn in (
        ("c_index", lambda: harrell_cindex(time, event, risk)),
        ("uno_c", lambda: uno_cindex(train_time, train_event, time, event, risk)),
        ("ibs", lambda: integrated_brier_score(train_time, train_event, time, event, surv, times)),
    ):
        if name == "ibs" and surv is None:
            continue
        try:
            out[name] = float(fn())
        except ValueError:
            out[name] = float("nan")
    out["auroc"] = float(horizon_auroc(time, event, risk, cfg.finetune.horizon_days))
    return out


def score_fold(
    model: Any,
    prepared: Prepared,
    feat: Any,
    cfg: Any,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    ys: dict[str, np.ndarray],
    info: dict[str, Any],
    observed: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics and per-patient rows of a test fold (patients with an unknown label are predicted, not scored)."""
    from affectkit.tasks.prime.metrics import default_ibs_times
    from affectkit.tasks.prime.train import endpoint_of

    time, event = prepared.cohort.endpoints[endpoint_of(cfg, prepared.cohort)]
    pred = predict(model, prepared, feat, cfg, test_idx, ys, observed)
    known = np.isfinite(time[test_idx]) & np.isfinite(event[test_idx])
    tr = train_idx[np.isfinite(time[train_idx]) & np.isfinite(event[train_idx])]
    t, e, r = time[test_idx][known], event[test_idx][known].astype(int), pred["risk"][known]
    surv = times = None
    if cfg.finetune.target == "survival" and known.sum() > 1:
        try:
            times = default_ibs_times(time[tr], t)
        except ValueError:
            times = None
        if times is not None and len(times):
            train_raw = (
                predict(model, prepared, feat, cfg, tr, ys)["raw"] if cfg.finetune.head == "cox" else None
            )
            surv = survival_curves(
                cfg, pred["raw"][known], info, train_raw, time[tr], event[tr].astype(int), times
            )
    metrics = fold_metrics(cfg, r, t, e, time[tr], event[tr].astype(int), surv, times)
    rows = [
        {
            "case_id": prepared.cohort.case_ids[p],
            "risk": float(pred["risk"][i]),
            "time": float(time[p]) if np.isfinite(time[p]) else "",
            "event": int(event[p]) if np.isfinite(event[p]) else "",
            "cohort": prepared.cohort.cohorts[p],
        }
        for i, p in enumerate(test_idx)
    ]
    return {"metrics": metrics, "rows": rows, "risk": pred["risk"]}


def write_predictions(path: Path, rows: list[dict[str, Any]]) -> None:
    """The out-of-fold predictions: case_id, risk, time, event, fold, cohort (``evaluate --predictions``
    reads it)."""
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["case_id", "risk", "time", "event", "fold", "cohort"],
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in writer.fieldnames})
    atomic_write_text(path, buf.getvalue())


# ---------------------------------------------------------------- evaluate


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """A predictions CSV (case_id, risk, time, event; optional fold), every row checked."""
    import pandas as pd

    if not path.is_file():
        raise DataError(path, "predictions file not found")
    try:
        df = pd.read_csv(path, dtype={"case_id": str}, keep_default_na=True)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("case_id", "risk", "time", "event") if c not in df.columns]
    if missing:
        raise DataError(
            path, f"missing column(s) {', '.join(missing)}", "columns: case_id, risk, time, event[, fold]"
        )
    if df.empty:
        raise DataError(path, "no rows")
    out: dict[str, np.ndarray] = {"case_id": df["case_id"].astype(str).to_numpy()}
    for col in ("risk", "time", "event"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))
        if len(bad):
            i = int(bad[0])
            raise DataError(
                path, f"row {i + 2} (case {out['case_id'][i]}): {col} {df[col].iloc[i]!r} is not a number"
            )
        out[col] = values.to_numpy(dtype=float)
    if (neg := np.flatnonzero(out["time"] < 0)).size:
        i = int(neg[0])
        raise DataError(path, f"row {i + 2} (case {out['case_id'][i]}): time {out['time'][i]:g} is negative")
    if (bad := np.flatnonzero(~np.isin(out["event"], (0, 1)))).size:
        i = int(bad[0])
        raise DataError(
            path, f"row {i + 2} (case {out['case_id'][i]}): event {out['event'][i]:g} must be 0 or 1"
        )
    if "fold" in df.columns:
        out["fold"] = pd.to_numeric(df["fold"], errors="coerce").fillna(-1).astype(int).to_numpy()
    if "cohort" in df.columns:
        out["cohort"] = df["cohort"].fillna("").astype(str).to_numpy()
    return out


def evaluate_predictions(path: Path, cfg: Any, km: str | None) -> dict[str, Any]:
    """C-index (pooled, and per fold with mean and std when the file has folds), horizon AUROC, and a
    Kaplan-Meier plot of the predicted risk groups with the log-rank p."""
    from affectkit.tasks.prime.metrics import fold_summary, harrell_cindex, horizon_auroc, km_plot

    p = read_predictions(path)
    try:
        c = harrell_cindex(p["time"], p["event"].astype(int), p["risk"])
    except ValueError as exc:
        raise DataError(path, str(exc)) from None
    result: dict[str, Any] = {
        "c_index": c,
        "n": len(p["risk"]),
        "events": int(p["event"].sum()),
        "auroc": horizon_auroc(p["time"], p["event"], p["risk"], cfg.finetune.horizon_days),
    }
    if "fold" in p:
        per = []
        for f in sorted(set(p["fold"].tolist())):
            m = p["fold"] == f
            try:
                per.append(harrell_cindex(p["time"][m], p["event"][m].astype(int), p["risk"][m]))
            except ValueError:
                per.append(float("nan"))
        result["c_index_folds"] = per
        result["c_index_mean"], result["c_index_std"] = fold_summary(per)
    if "cohort" in p:
        folds = p["fold"] if "fold" in p else np.zeros(len(p["risk"]), int)
        cells = zip(p["cohort"], folds, p["time"], p["event"], p["risk"], strict=True)
        result.update(cohort_summary([{"cohort": c, "fold": int(f), "time": t, "event": e, "risk": r}
                                      for c, f, t, e, r in cells]))
    if km:
        result["km"] = {
            "path": km,
            **km_plot(
                Path(km),
                p["time"],
                p["event"].astype(int),
                p["risk"],
                title=f"{path.name}: predicted risk groups",
            ),
        }
    result["metrics"] = {"c_index": c, "auroc": result["auroc"]}
    return result


def evaluate_request(request: EvaluateRequest) -> dict[str, Any]:
    opts = request.options
    km = getattr(opts, "km", None)
    if getattr(opts, "predictions", None) is not None:
        return evaluate_predictions(Path(opts.predictions), request.cfg, km)
    if request.run is None:
        raise UsageError("evaluate prime needs --run RUN or --predictions FILE.csv")
    return evaluate_run(request, km)


def evaluate_run(request: EvaluateRequest, km: str | None) -> dict[str, Any]:
    """Re-score a fine-tuned run's test folds, optionally with modalities hidden at test time
    (``--missing PATTERN``) or under every modality subset (``--sweep``)."""
    from affectkit.core.loop import load_weights
    from affectkit.tasks.prime.features import Featurizer
    from affectkit.tasks.prime.metrics import km_plot
    from affectkit.tasks.prime.missingness import all_subsets
    from affectkit.tasks.prime.train import (
        FinetuneLoop,
        endpoint_of,
        folds_to_run,
        pattern_observed,
        prepare,
    )

    cfg, out, opts, run = request.cfg, request.output, request.options, request.run
    if cfg.stage != "finetune":
        raise UsageError(
            f"{run.path}: a pretraining run has no prediction head",
            "fine-tune it: affectkit train prime --data DIR --set stage=finetune "
            f"--set finetune.init={run.path} --out RUN2",
        )
    data_dir = request.data_dir or (Path(run.meta()["data_dir"]) if run.meta().get("data_dir") else None)
    if data_dir is None or not data_dir.is_dir():
        raise UsageError("--data is required", "pass the dataset folder the run was trained on")
    prepared = prepare(cfg, data_dir, request.seed)
    names = list(prepared.cohort.modalities)
    settings: dict[str, np.ndarray | None] = {"as observed": None}
    missing = getattr(opts, "missing", None)
    if missing:
        settings = {missing: pattern_observed(prepared.cohort, missing, request.seed)}
    plot = getattr(opts, "plot", None)
    if getattr(opts, "sweep", False) or plot:
        for subset in all_subsets(len(names)):
            mask = np.zeros((prepared.cohort.n, len(names)), bool)
            mask[:, list(subset)] = True
            settings["+".join(names[j] for j in subset)] = mask
        for rate in (30, 50, 70):
            settings[f"mcar{rate}"] = pattern_observed(prepared.cohort, f"mcar{rate}", request.seed)
    per_setting: dict[str, list[dict[str, float]]] = {k: [] for k in settings}
    rows: list[dict[str, Any]] = []
    for fold in out.track(folds_to_run(cfg, prepared), "scoring folds"):
        where = fold_dir(run.path, fold)
        feat = Featurizer.from_state(json.loads((where / FEATURIZER).read_text()))
        feat.check_cohort(prepared.cohort, where / FEATURIZER)
        _, (train_idx, valid_idx, test_idx), ys, info = downstream_split(cfg, prepared, fold, request.seed)
        loop = FinetuneLoop(prepared, feat, train_idx, valid_idx, ys, None, request.seed)
        model = load_weights(
            loop.build_model(_no_init(cfg)), RunDir(where).weights(request.checkpoint)
        ).eval()
        for name, mask in settings.items():
            observed = None if mask is None else mask[test_idx]
            scored = score_fold(model, prepared, feat, cfg, train_idx, test_idx, ys, info, observed)
            per_setting[name].append(scored["metrics"])
            if name == next(iter(settings)):
                rows.extend(dict(r, fold=fold) for r in scored["rows"])
    table = []
    for name, folds in per_setting.items():
        summary = summarise({i: {"metrics": m} for i, m in enumerate(folds)})
        table.append(
            {
                "modalities": name,
                **{k: v for k, v in summary["metrics"].items()},
                **{f"{k} std": v for k, v in summary["std"].items()},
            }
        )
    first = table[0]
    result: dict[str, Any] = {
        "endpoint": endpoint_of(cfg, prepared.cohort),
        "setting": first["modalities"],
        "metrics": {k: first[k] for k in ("c_index", "uno_c", "ibs", "auroc") if k in first},
        "std": {k: first[f"{k} std"] for k in ("c_index", "uno_c", "ibs", "auroc") if f"{k} std" in first},
    }
    if len(table) > 1:
        result["sweep"] = table
    if plot:
        sweep_plot(Path(plot), table, f"{run.path.name}: C-index by modalities at test time")
        result["plot"] = plot
    result.update(cohort_summary(rows))
    if km:
        risk = np.array([r["risk"] for r in rows])
        keep = np.array([r["time"] != "" and r["event"] != "" for r in rows])
        t = np.array([float(r["time"]) for r, k in zip(rows, keep, strict=True) if k])
        e = np.array([int(r["event"]) for r, k in zip(rows, keep, strict=True) if k])
        result["km"] = {
            "path": km,
            **km_plot(Path(km), t, e, risk[keep], title=f"{run.path.name}: out-of-fold risk groups"),
        }
    return result


def sweep_plot(path: Path, table: list[dict[str, Any]], title: str) -> None:
    """A bar per test-time setting: mean C-index over folds with its standard deviation."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from affectkit.core.runs import atomic_save

    names = [row["modalities"] for row in table]
    means = [row.get("c_index", float("nan")) for row in table]
    sds = [row.get("c_index std", 0.0) for row in table]
    fig = Figure(figsize=(max(5.0, 0.7 * len(names) + 2), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    ax.bar(range(len(names)), means, yerr=sds, color="#4c72b0", capsize=3)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("C-index (mean over folds)")
    ax.set_ylim(0.4, 1.0)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def _no_init(cfg: Any) -> Any:
    """The config that rebuilds a fine-tuned model's shape without reading its pretraining run."""
    from dataclasses import replace

    return replace(cfg, finetune=replace(cfg.finetune, init=""))
