"""The ``filter-prefs`` pipeline: score every pair with every value's reward model, z-normalise per
reward model within each value dataset (pooled chosen + rejected), compute value consistency, keep the
consistent pairs. Invalid rows are counted by reason, never dropped silently."""

from __future__ import annotations

import gc
import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.vc_soup.method_consistency import consistency_stats, keep_mask, score_gaps
from affectkit.tasks.vc_soup.rewards import Scorer, make_scorer, parse_number


@dataclass
class FilterSpec:
    values: tuple[str, ...]
    rewards: dict[str, str] = field(default_factory=dict)  # value -> backend spec; default precomputed
    cost_models: tuple[str, ...] = ()
    threshold: float | None = 0.0
    keep_ratio: float | None = None
    template: str = "{prompt}{response}"
    keep_all: bool = False
    strict: bool = False
    device: str = "cpu"
    cache: Path | None = None

    def validate(self) -> None:
        if not self.values:
            raise UsageError("no values given", "pass --values helpful,harmless")
        if len(set(self.values)) != len(self.values):
            raise UsageError(f"--values has duplicates: {','.join(self.values)}")
        for name in list(self.rewards) + list(self.cost_models):
            if name not in self.values:
                raise UsageError(f"{name!r} is not one of --values ({','.join(self.values)})", "every --reward/--cost-model name must be a value")
        if self.keep_ratio is not None and self.threshold is not None:
            raise UsageError("--threshold and --keep-ratio exclude each other")
        if self.keep_ratio is None and self.threshold is None:
            self.threshold = 0.0
        if self.keep_ratio is not None and not 0.0 <= self.keep_ratio <= 1.0:
            raise UsageError(f"--keep-ratio must be in [0, 1], got {self.keep_ratio}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise UsageError(f"--threshold must be finite, got {self.threshold}")


def _precomputed(row: dict[str, Any], value: str, spec: str) -> tuple[Any, Any]:
    _, _, arg = spec.partition(":")
    if arg:
        col_c, _, col_r = arg.partition(",")
        return row.get(col_c), row.get(col_r)
    rc, rr = row.get("rewards_chosen"), row.get("rewards_rejected")
    return (rc.get(value) if isinstance(rc, dict) else None), (rr.get(value) if isinstance(rr, dict) else None)


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: building millions of small dicts otherwise triggers
    full collections over every live row again and again (no cycles are created here)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def filter_prefs(rows: list[dict[str, Any]], spec: FilterSpec, source: str = "input", progress: Callable[[str], Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return (output rows, stats). Output rows keep every input field and add the scores."""
    with no_gc():
        return _filter_prefs(rows, spec, source, progress)


def _filter_prefs(rows: list[dict[str, Any]], spec: FilterSpec, source: str, progress: Callable[[str], Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    spec.validate()
    n_total = len(rows)
    invalid: Counter[str] = Counter()
    bad = np.zeros(n_total, dtype=bool)
    prompts: list[str] = []
    chosen: list[str] = []
    rejected: list[str] = []
    for i, r in enumerate(rows):
        c, rj, p = r.get("chosen"), r.get("rejected"), r.get("prompt")
        if not isinstance(c, str) or not isinstance(rj, str) or not c.strip() or not rj.strip():
            bad[i] = True
            invalid["missing_chosen_or_rejected"] += 1
        if p is not None and not isinstance(p, str):
            p = str(p)
        prompts.append(p or "")
        chosen.append(c if isinstance(c, str) else "")
        rejected.append(rj if isinstance(rj, str) else "")

    K = len(spec.values)
    raw_c = np.full((n_total, K), np.nan)
    raw_r = np.full((n_total, K), np.nan)
    backends: dict[str, str] = {}
    scorers: list[Scorer] = []
    for k, value in enumerate(spec.values):
        bspec = spec.rewards.get(value, "precomputed")
        backends[value] = bspec
        scorer = make_scorer(bspec, spec.template, spec.device)
        if scorer is None:
            reasons: Counter[str] = Counter()
            bad_now = bad.tolist()
            col_c, col_r = [math.nan] * n_total, [math.nan] * n_total
            for i, r in enumerate(rows):
                if bad_now[i]:
                    continue
                a, b = _precomputed(r, value, bspec)
                if a is None or b is None:
                    reasons["missing_reward"] += 1
                    bad[i] = True
                    continue
                fa, fb = parse_number(a), parse_number(b)
                if fa is None or fb is None:
                    reasons["non_numeric_reward"] += 1
                    bad[i] = True
                    continue
                if not (math.isfinite(fa) and math.isfinite(fb)):
                    reasons["nan_reward"] += 1
                    bad[i] = True
                    continue
                col_c[i], col_r[i] = fa, fb
            raw_c[:, k], raw_r[:, k] = col_c, col_r
            if reasons and not (~bad).any():
                raise DataError(source, f"no usable {value!r} rewards ({', '.join(f'{k}: {v}' for k, v in reasons.items())})",
                                f"precomputed rewards are read from rewards_chosen[{value!r}] and rewards_rejected[{value!r}]; "
                                f"or pass --reward {value}=BACKEND")
            invalid.update(reasons)
        else:
            if spec.cache is not None:
                scorer.load_cache(spec.cache.with_name(f"{spec.cache.stem}.{value}{spec.cache.suffix or '.jsonl'}"))
            idx = np.flatnonzero(~bad)
            if progress:
                progress(f"scoring {value} with {bspec} ({2 * idx.size} texts)")
            ps = [prompts[i] for i in idx]
            sc = scorer(ps, [chosen[i] for i in idx])
            sr = scorer(ps, [rejected[i] for i in idx])
            finite = np.isfinite(sc) & np.isfinite(sr)
            if (~finite).any():
                invalid["nan_reward"] += int((~finite).sum())
                bad[idx[~finite]] = True
            raw_c[idx, k], raw_r[idx, k] = sc, sr
            scorers.append(scorer)
            if spec.cache is not None:
                scorer.save_cache(spec.cache.with_name(f"{spec.cache.stem}.{value}{spec.cache.suffix or '.jsonl'}"))

    n_invalid = int(bad.sum())
    if spec.strict and n_invalid:
        raise DataError(source, f"{n_invalid} invalid rows ({', '.join(f'{k}: {v}' for k, v in sorted(invalid.items()))})", "drop --strict to skip them")
    if n_total and n_invalid == n_total:
        raise DataError(source, f"no valid rows ({', '.join(f'{k}: {v}' for k, v in sorted(invalid.items()))})",
                        "rows need non-empty chosen and rejected strings and numeric rewards for every value")

    cost = [v in spec.cost_models for v in spec.values]
    groups: dict[str, list[int]] = {}
    for i, (r, b) in enumerate(zip(rows, bad.tolist(), strict=True)):
        if not b:
            groups.setdefault(str(r.get("value", "default")), []).append(i)

    kept_all = np.zeros(n_total, dtype=bool)
    zc_all = np.full((n_total, K), np.nan)
    zr_all = np.full((n_total, K), np.nan)
    g_all = np.full((n_total, K), np.nan)
    c_all = np.full(n_total, np.nan)
    group_stats: dict[str, Any] = {}
    all_gaps, all_c, all_kept = [], [], []
    for gname, members in groups.items():
        idx = np.asarray(members)
        res = score_gaps(raw_c[idx], raw_r[idx], cost)
        mask = keep_mask(res["consistency"], spec.threshold, spec.keep_ratio)
        kept_all[idx] = mask
        zc_all[idx], zr_all[idx], g_all[idx], c_all[idx] = res["z_chosen"], res["z_rejected"], res["gaps"], res["consistency"]
        st = consistency_stats(res["gaps"], res["consistency"], mask)
        st["reward_models"] = {v: {"mean": res["mu"][k], "std": res["sigma"][k], "cost": cost[k]} for k, v in enumerate(spec.values)}
        group_stats[gname] = st
        all_gaps.append(res["gaps"])
        all_c.append(res["consistency"])
        all_kept.append(mask)

    # plain Python floats once, not numpy scalars per row (this loop runs a million times)
    bad_l, kept_l, c_l = bad.tolist(), kept_all.tolist(), c_all.tolist()
    rc_l, rr_l, zc_l, zr_l, g_l = raw_c.tolist(), raw_r.tolist(), zc_all.tolist(), zr_all.tolist(), g_all.tolist()
    vals = list(enumerate(spec.values))
    out_rows: list[dict[str, Any]] = []
    for i, r in enumerate(rows):
        if bad_l[i] or (not kept_l[i] and not spec.keep_all):
            continue
        row = dict(r)
        prev_c = row.get("rewards_chosen") if isinstance(row.get("rewards_chosen"), dict) else {}
        prev_r = row.get("rewards_rejected") if isinstance(row.get("rewards_rejected"), dict) else {}
        rci, rri, zci, zri, gi = rc_l[i], rr_l[i], zc_l[i], zr_l[i], g_l[i]
        row["rewards_chosen"] = {**prev_c, **{v: rci[k] for k, v in vals}}
        row["rewards_rejected"] = {**prev_r, **{v: rri[k] for k, v in vals}}
        row["z_chosen"] = {v: zci[k] for k, v in vals}
        row["z_rejected"] = {v: zri[k] for k, v in vals}
        row["gap_z"] = {v: gi[k] for k, v in vals}
        row["consistency"] = c_l[i]
        row["kept"] = kept_l[i]
        out_rows.append(row)

    n_valid = n_total - n_invalid
    overall = consistency_stats(np.concatenate(all_gaps) if all_gaps else np.zeros((0, K)),
                                np.concatenate(all_c) if all_c else np.zeros(0),
                                np.concatenate(all_kept) if all_kept else np.zeros(0, bool))
    stats = {
        "source": source,
        "values": list(spec.values),
        "backends": backends,
        "cost_models": list(spec.cost_models),
        "template": spec.template,
        "threshold": spec.threshold,
        "keep_ratio": spec.keep_ratio,
        "n_rows": n_total,
        "n_valid": n_valid,
        "n_dropped_invalid": n_invalid,
        "invalid_reasons": dict(sorted(invalid.items())),
        **{k: v for k, v in overall.items() if k != "n"},
        "datasets": group_stats,
    }
    return out_rows, stats
