"""The tables of the prime protocol from its per-cell records (dataset, endpoint, setting, fold, seed,
method, c_index, auroc): C-index per setting, the pre-registered tests, and paired deltas with the
Nadeau-Bengio corrected interval (J = 15 cells, 5-fold CV: n_test / n_train = 1/4)."""

from __future__ import annotations

from typing import Any

import numpy as np

from affectkit.tasks.prime.bench import NONINFERIORITY, RIDGE_MARGIN

N_TRAIN, N_TEST = 4, 1  # the ratio of training to test patients in 5-fold CV


def _cells(records: list[dict[str, Any]], dataset: str, endpoint: str, method: str,
           settings: tuple[str, ...]) -> dict[tuple[str, int, int], float]:
    return {(r["setting"], r["fold"], r["seed"]): r["c_index"] for r in records
            if r["dataset"] == dataset and r["endpoint"] == endpoint and r["method"] == method
            and r["setting"] in settings}


def _mean(values: Any) -> float:
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def paired(records: list[dict[str, Any]], dataset: str, endpoint: str, a: str, b: str,
           settings: tuple[str, ...]) -> dict[str, Any]:
    """``a - b`` per (fold, seed), averaged over ``settings``, with the corrected interval."""
    from affectkit.tasks.prime.metrics import nadeau_bengio

    ca, cb = _cells(records, dataset, endpoint, a, settings), _cells(records, dataset, endpoint, b, settings)
    keys = sorted(set(ca) & set(cb))
    per: dict[tuple[int, int], list[float]] = {}
    for s, f, seed in keys:
        if np.isfinite(ca[(s, f, seed)]) and np.isfinite(cb[(s, f, seed)]):
            per.setdefault((f, seed), []).append(ca[(s, f, seed)] - cb[(s, f, seed)])
    deltas = [float(np.mean(v)) for _, v in sorted(per.items())]
    row: dict[str, Any] = {"comparison": f"{a} - {b}", "cells": len(deltas)}
    if len(deltas) >= 2:
        nb = nadeau_bengio(deltas, N_TRAIN, N_TEST)
        row.update({"mean delta": nb["mean"], "ci95 low": nb["ci_low"], "ci95 high": nb["ci_high"], "p": nb["p"]})
    elif deltas:
        row["mean delta"] = deltas[0]
    row["ahead"] = f"{sum(d > 0 for d in deltas)}/{len(deltas)}"
    return row


def summarize(records: list[dict[str, Any]], plan: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {}
    settings = tuple(plan["missing"])
    order = ["ridge-cox", "prime", "zero-fill", "mean-imputation", "modality-dropout", "null-copy"]
    seen = set(r["method"] for r in records)
    methods = [m for m in order if m in seen] + sorted(seen - set(order))
    targets = [(d, e) for d, eps in plan["datasets"].items() for e in eps]
    for dataset, endpoint in targets:
        rows = []
        for method in methods:
            if not any(r["dataset"] == dataset and r["method"] == method for r in records):
                continue  # a single-modality model of another dataset's modality
            row: dict[str, Any] = {"method": method}
            for s in settings:
                vals = [r["c_index"] for r in records if r["dataset"] == dataset and r["endpoint"] == endpoint
                        and r["method"] == method and r["setting"] == s]
                if vals:
                    row[f"C {s}"] = _mean(vals)
                    row[f"sd {s}"] = float(np.nanstd(vals, ddof=1)) if len(vals) > 1 else 0.0
            aur = [r["auroc"] for r in records if r["dataset"] == dataset and r["endpoint"] == endpoint
                   and r["method"] == method and r["setting"] == "complete"]
            row["3-yr AUROC complete"] = _mean(aur) if aur else float("nan")
            rows.append(row)
        tables[f"{dataset} {endpoint}: C-index by missingness (mean and sd over folds x seeds)"] = rows

    claim = []
    for dataset, endpoint in targets:
        if dataset != "gbsg":
            continue
        means = {m: _mean(_cells(records, dataset, endpoint, m, settings).values())
                 for m in ("zero-fill", "mean-imputation")}
        better = max(means, key=lambda m: means[m] if np.isfinite(means[m]) else -1)
        row = paired(records, dataset, endpoint, "prime", better, settings)
        ok = row.get("mean delta", float("nan")) >= NONINFERIORITY
        claim.append({"endpoint": endpoint, "test": f"non-inferiority: mean delta >= {NONINFERIORITY}", **row,
                      "pass": "yes" if ok else "no"})
        ridge = paired(records, dataset, endpoint, "prime", "ridge-cox", ("complete",))
        ok = ridge.get("mean delta", float("nan")) >= -RIDGE_MARGIN
        claim.append({"endpoint": endpoint, "test": f"within {RIDGE_MARGIN} of ridge-cox (complete)", **ridge,
                      "pass": "yes" if ok else "no"})
    if claim:
        tables["claim: pre-registered tests on GBSG (C-index deltas, Nadeau-Bengio 95 % interval)"] = claim

    if "complete" in settings and "mcar70" in settings:
        control = []
        for method in methods:
            if method.startswith("single:"):
                continue
            full = _mean(r["c_index"] for r in records if r["method"] == method and r["setting"] == "complete")
            low = _mean(r["c_index"] for r in records if r["method"] == method and r["setting"] == "mcar70")
            control.append({"method": method, "C complete": full, "C mcar70": low,
                            "pass": "yes" if full > low else "no"})
        tables["positive control: C-index with no missing data above 70 % missing (mean over endpoints)"] = control

    deltas = []
    for dataset, endpoint in targets:
        for s in settings:
            for a, b in (("prime", "zero-fill"), ("prime", "mean-imputation"), ("prime", "modality-dropout"),
                         ("null-copy", "zero-fill")):
                row = paired(records, dataset, endpoint, a, b, (s,))
                if row["cells"]:
                    deltas.append({"dataset": dataset, "endpoint": endpoint, "setting": s, **row})
    tables["superiority (reported only): paired C-index deltas per setting, Nadeau-Bengio 95 % interval"] = deltas
    return tables
