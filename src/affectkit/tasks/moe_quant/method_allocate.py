"""From an order to per-expert bits under an average budget (bits per expert inside each MoE layer).

``paper_counts`` is the authors' count rule (two levels, or three equally spaced levels), which
reproduces the counts in the spec's table; ``milp_bits`` solves the knapsack over levels with
scipy's MILP (HiGHS). Every layer gets the same counts; the achieved average is reported and never
exceeds the budget unless ``allow_over``. ``allocate_from_orders`` applies either to the order of
every layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _two_level(E: int, avg: float, hi: int, lo: int) -> int:
    """Number of experts at ``hi``: round(kappa * E), kappa = clip((avg - lo)/(hi - lo), 0, 1)."""
    kappa = min(max((avg - lo) / (hi - lo), 0.0), 1.0)
    return int(math.floor(kappa * E + 0.5))


def paper_counts(E: int, avg: float, levels: list[int] | tuple[int, ...], allow_over: bool = False) -> list[int]:
    """Counts per level (levels sorted high to low) by the authors' rule.

    Two levels {h, l}: n_h = round(kappa E). Three equally spaced levels {h, m, l} (Delta = h - l):
    start from the two-level solution on (h, m) if avg >= m, else on (m, l); then
    - avg > h - Delta/3: move mid experts one up and one down (average kept) until fewer than two
      mid experts remain;
    - h - 2 Delta/3 <= avg <= h - Delta/3: make the same moves while, after the move, the mid count is
      still at least the count of the level being filled from zero (low if avg >= m, high otherwise);
    - avg < h - 2 Delta/3: no moves.
    """
    lv = sorted((int(b) for b in levels), reverse=True)
    if len(set(lv)) != len(lv):
        raise ValueError(f"levels must be distinct, got {list(levels)}")
    if len(lv) == 1:
        counts = [E]
    elif len(lv) == 2:
        counts = [_two_level(E, avg, lv[0], lv[1])]
        counts.append(E - counts[0])
    elif len(lv) == 3:
        h, m, lo = lv
        if h - m != m - lo:
            raise ValueError(f"three levels must be equally spaced, got {lv}")
        delta = h - lo
        if avg >= m:
            nh = _two_level(E, avg, h, m)
            nh, nm, nl = nh, E - nh, 0
        else:
            nm = _two_level(E, avg, m, lo)
            nh, nm, nl = 0, nm, E - nm
        if avg > h - delta / 3:
            while nm >= 2:
                nh, nm, nl = nh + 1, nm - 2, nl + 1
        elif avg >= h - 2 * delta / 3:
            while nm >= 2:
                side = nl if avg >= m else nh
                if nm - 2 < side + 1:
                    break
                nh, nm, nl = nh + 1, nm - 2, nl + 1
        counts = [nh, nm, nl]
    else:
        raise ValueError(f"the count rule takes 1, 2 or 3 levels, got {len(lv)}")
    if not allow_over:
        counts = _trim_over(counts, lv, E, avg)
    return counts


def _trim_over(counts: list[int], lv: list[int], E: int, avg: float) -> list[int]:
    """Move experts down one level at a time (from the highest level) until sum(bits) <= E * avg."""
    counts = list(counts)
    budget = E * avg + 1e-9
    while sum(c * b for c, b in zip(counts, lv, strict=True)) > budget:
        top = next((i for i in range(len(lv) - 1) if counts[i] > 0), None)
        if top is None:
            break
        counts[top] -= 1
        counts[top + 1] += 1
    return counts


def bits_from_order(order: list[int], counts: list[int], levels: list[int]) -> list[int]:
    """Experts ``order[0:counts[0]]`` get the highest level, the next ``counts[1]`` the next, ..."""
    lv = sorted(levels, reverse=True)
    bits = [0] * len(order)
    pos = 0
    for c, b in zip(counts, lv, strict=True):
        for e in order[pos:pos + c]:
            bits[e] = b
        pos += c
    return bits


def rank_weights(num_experts: int, kind: str = "harmonic") -> np.ndarray:
    """Sensitivity weight by rank (rank 0 = most sensitive)."""
    r = np.arange(num_experts, dtype=float)
    if kind == "harmonic":
        return 1.0 / (1.0 + r)
    if kind == "linear":
        return (num_experts - r) / num_experts
    raise ValueError(f"unknown rank weight {kind!r}")


def milp_bits(sens: np.ndarray, levels: list[int], avg: float, allow_over: bool = False,
              err_base: float = 4.0) -> list[int]:
    """min sum_s sens_s * err_base**(-b_s)  s.t. one level per expert, sum_s b_s <= E * avg."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    sens = np.asarray(sens, dtype=float)
    E, lv = len(sens), sorted(levels, reverse=True)
    L = len(lv)
    c = np.array([sens[s] * err_base ** (-b) for s in range(E) for b in lv])
    one_hot = np.zeros((E, E * L))
    for s in range(E):
        one_hot[s, s * L:(s + 1) * L] = 1.0
    budget_row = np.array([b for _ in range(E) for b in lv], dtype=float)[None, :]
    budget = E * avg if not allow_over else E * max(lv)
    # At least the lowest level everywhere must fit, else the problem is infeasible.
    cons = [LinearConstraint(one_hot, 1, 1), LinearConstraint(budget_row, -np.inf, budget + 1e-9)]
    res = milp(c, constraints=cons, integrality=np.ones(E * L), bounds=Bounds(0, 1))
    if res.x is None:
        raise ValueError(f"no allocation of levels {lv} meets an average of {avg} bits")
    x = np.round(res.x).reshape(E, L)
    return [int(lv[int(np.argmax(x[s]))]) for s in range(E)]


@dataclass
class LayerAllocation:
    name: str
    order: list[int]
    bits: list[int]
    scores: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class Allocation:
    policy: str
    order_kind: str
    levels: list[int]
    avg_bits: float | None
    layers: list[LayerAllocation]
    extra: dict = field(default_factory=dict)

    @property
    def achieved_avg(self) -> float:
        allb = [b for la in self.layers for b in la.bits]
        return float(np.mean(allb)) if allb else float("nan")

    def expert_bits(self) -> dict[str, list[int]]:
        return {la.name: list(la.bits) for la in self.layers}

    def to_json(self) -> dict:
        return {
            "policy": self.policy, "order": self.order_kind, "levels": self.levels,
            "avg_bits": self.avg_bits, "achieved_avg_bits": self.achieved_avg,
            "layers": [{"name": la.name, "order": la.order, "bits": la.bits, "scores": la.scores}
                       for la in self.layers],
            **self.extra,
        }


def allocate_from_orders(orders: dict[str, list[int]], levels: list[int], avg_bits: float, policy: str = "paper",
                         allow_over: bool = False, order_kind: str = "combined", rank_weight: str = "harmonic",
                         scores: dict[str, Any] | None = None) -> Allocation:
    lv = sorted((int(b) for b in levels), reverse=True)
    layers = []
    extra: dict[str, Any] = {}
    for name, order in orders.items():
        E = len(order)
        if policy == "paper":
            counts = paper_counts(E, avg_bits, lv, allow_over)
            bits = bits_from_order(order, counts, lv)
            extra["counts"] = counts
        elif policy == "milp":
            w = rank_weights(E, rank_weight)
            sens = np.empty(E)
            sens[np.asarray(order)] = w
            bits = milp_bits(sens, lv, avg_bits, allow_over)
        else:
            raise ValueError(f"unknown policy {policy!r}; choose paper or milp")
        layers.append(LayerAllocation(name, list(order), bits, dict((scores or {}).get(name, {}))))
    return Allocation(policy, order_kind, lv, float(avg_bits), layers, extra)
