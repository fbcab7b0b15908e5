import itertools

import numpy as np
import pytest

from affectkit.tasks.vc_soup.method_pareto import GRID_3, pareto_mask, weight_grid
from affectkit.tasks.vc_soup.metrics import hypervolume, lmc_barrier


def test_spec_example_front_and_hv():
    pts = np.array([[0.9, 0.2], [0.6, 0.6], [0.2, 0.9], [0.5, 0.5]])
    assert pareto_mask(pts).tolist() == [True, True, True, False]
    assert hypervolume(pts[:3], (0, 0)) == pytest.approx(0.48)
    assert hypervolume(pts, (0, 0)) == pytest.approx(0.48)


def test_ties_are_kept_and_ref_clips():
    pts = np.array([[1.0, 1.0], [1.0, 1.0], [0.5, 2.0]])
    assert pareto_mask(pts).all()
    assert hypervolume(np.array([[-1.0, 5.0]]), (0, 0)) == 0.0
    assert hypervolume(np.array([[2.0, 3.0]]), (1, 1)) == pytest.approx(2.0)


def _hv_inclusion_exclusion(p, ref):
    total = 0.0
    n = len(p)
    for size in range(1, n + 1):
        for sub in itertools.combinations(range(n), size):
            corner = np.min(p[list(sub)], axis=0)
            vol = np.prod(np.clip(corner - ref, 0, None))
            total += (-1) ** (size + 1) * vol
    return total


@pytest.mark.parametrize("k", [2, 3, 4])
def test_hv_matches_inclusion_exclusion(k):
    rng = np.random.default_rng(k)
    p = rng.uniform(0, 1, size=(7, k))
    ref = np.full(k, 0.1)
    assert hypervolume(p, ref) == pytest.approx(_hv_inclusion_exclusion(p, ref), rel=1e-9)


def test_weight_grids():
    g2 = weight_grid(2)
    assert len(g2) == 11 and g2[0] == (0.0, 1.0) and g2[-1] == (1.0, 0.0) and g2[3] == (0.3, 0.7)
    assert all(abs(sum(w) - 1) < 1e-9 for w in g2)
    g3 = weight_grid(3)
    assert len(g3) == 13 and g3 == list(GRID_3) and (0.33, 0.33, 0.33) in g3
    g4 = weight_grid(4, steps=2)
    assert len(g4) == 10 and all(abs(sum(w) - 1) < 1e-9 for w in g4)


def test_lmc_barrier():
    assert lmc_barrier([1.0, 0.5, 1.0]) == pytest.approx(0.5)  # reward dips by 0.5 in the middle
    assert lmc_barrier([0.0, 0.75, 1.0]) == 0.0  # above the line: no barrier
    assert lmc_barrier([1.0, 2.0, 1.0], higher_is_better=False) == pytest.approx(1.0)
    assert lmc_barrier([0.0, 0.0, 0.0, 1.0], [0, 0.5, 0.9, 1.0]) == pytest.approx(0.9)
