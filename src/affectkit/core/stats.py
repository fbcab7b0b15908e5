"""Statistics of a benchmark protocol over paired seeds: mean and sample sd, the Student-t
interval of a mean, paired deltas, wins, and a z score against a random baseline.

Every bench reports its comparisons with these, so the tables of all tasks read alike.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (n - 1; 0.0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_sd of no values")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The Student-t interval of the mean of ``values`` (None with fewer than two values)."""
    if len(values) < 2:
        return None
    from scipy import stats

    mean, sd = mean_sd(values)
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * sd / math.sqrt(len(values))
    return mean - half, mean + half


def paired_deltas(method: Sequence[float], baseline: Sequence[float], scale: float = 1.0) -> list[float]:
    """``scale * (method[i] - baseline[i])``, seed by seed (both in the same seed order)."""
    if len(method) != len(baseline):
        raise ValueError(f"paired deltas need as many values on both sides ({len(method)} vs {len(baseline)})")
    return [scale * (float(a) - float(b)) for a, b in zip(method, baseline, strict=True)]


def wins(deltas: Sequence[float], threshold: float = 0.0) -> int:
    """How many deltas exceed ``threshold`` (the seeds on which the method is ahead by more)."""
    return sum(d > threshold for d in deltas)


def paired_summary(deltas: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """One comparison's row: the mean delta, its Student-t interval, and the wins as ``k/n``."""
    row: dict[str, Any] = {"mean delta": statistics.fmean(deltas)}
    interval = t_interval(deltas, level)
    if interval is not None:
        pct = round(100 * level)
        row[f"ci{pct} low"], row[f"ci{pct} high"] = interval
    row["wins"] = f"{wins(deltas)}/{len(deltas)}"
    return row


def z_against(value: float, baseline: Sequence[float]) -> float:
    """``(value - mean) / sd`` of a random baseline's draws (NaN when their sd is 0 or undefined)."""
    if len(baseline) < 2:
        return math.nan
    mean, sd = mean_sd(baseline)
    return (float(value) - mean) / sd if sd > 0 else math.nan
