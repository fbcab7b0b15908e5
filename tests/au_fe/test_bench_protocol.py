"""The embedded protocol's settings are the same for every variant except what the variant names."""

import dataclasses

import pytest

from affectkit.tasks.au_fe import TASK
from affectkit.tasks.au_fe.bench import DIRECTIONS, FULL, variant_config


def _flat(cfg, prefix=""):
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out.update(_flat(v, prefix + f.name + "."))
        else:
            out[prefix + f.name] = v
    return out


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_variants_differ_only_in_their_switch(direction):
    base = _flat(variant_config(TASK, direction, "ssm", 100, 3))
    expected = {"no-dpm": {"model.use_dpm"}, "no-tsp": {"model.use_tsp"}, "single": {"model.branches"}}
    for variant in FULL["variants"][1:]:
        other = _flat(variant_config(TASK, direction, variant, 100, 3))
        assert {k for k in base if base[k] != other[k]} == expected[variant]
    assert base["data.subset_seed"] == 3 and base["train.max_steps"] == 100
    frac = "data.fe_label_fraction" if direction == "fe" else "data.au_label_fraction"
    assert base[frac] == 0.1


@pytest.mark.slow
def test_quick_bench_runs(tmp_path):
    from tests.cli.helpers import invoke, json_lines

    res = invoke("--json", "bench", "au-fe", "--quick", "--out", str(tmp_path / "b"))
    assert res.exit_code == 0, res.stderr
    assert json_lines(res.stdout)[-1]["tasks"] == ["au-fe"]
