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


def test_recipe_uses_the_bench_settings():
    from pathlib import Path

    from affectkit.core.config import resolve
    from affectkit.tasks.au_fe.bench import FULL, SETTINGS, variant_config

    recipe = _flat(resolve(TASK.Config, Path(__file__).resolve().parents[2] / "commands/train/au-fe.yaml"))
    bench = _flat(variant_config(TASK, "fe", "ssm", FULL["steps"], seed=0))
    for key in [*(s.split("=")[0] for s in SETTINGS), "data.fe_label_fraction", "train.max_steps", "train.milestones"]:
        if key not in ("train.eval_every", "train.checkpoint_every"):
            assert recipe[key] == bench[key], key


def _fake_runs(fe_deltas, au_deltas, dpm_gain=0.0):
    """SSM and no-TSP score alike (TSP has no effect); no-DPM scores ``dpm_gain`` below SSM."""
    from affectkit.tasks.au_fe.bench import FULL

    runs = {}
    for seed, (de, da) in enumerate(zip(fe_deltas, au_deltas, strict=True)):
        for variant in FULL["variants"]:
            fe_uar = 0.30 + (de / 100 if variant in ("ssm", "no-tsp") else 0.0) - (dpm_gain / 100 if variant == "no-dpm" else 0)
            au_f1 = 0.50 + (da / 100 if variant == "ssm" else 0.0)
            m = {"fe_uar": fe_uar, "fe_war": 0.4, "au_f1": au_f1, "au_auc": 0.8, "seconds": 1.0}
            if variant == "single":
                m_fe = {k: m[k] for k in ("fe_uar", "fe_war", "seconds")}
                m_au = {k: m[k] for k in ("au_f1", "au_auc", "seconds")}
            else:
                m_fe = m_au = m
            runs[("fe", variant, seed)] = m_fe
            runs[("au", variant, seed)] = m_au
    return runs


def test_gates_follow_the_issue_rules():
    from affectkit.tasks.au_fe.bench import FULL, summarize

    gates = {g["gate"]: g for g in summarize(_fake_runs([3, 3, 3, 3, -1], [-0.5] * 5, dpm_gain=2.5),
                                             list(range(5)), FULL["variants"])["gates"]}
    assert gates["FE direction"]["pass"] == "yes" and gates["FE direction"]["wins"] == "4/5"
    assert abs(gates["FE direction"]["mean delta"] - 2.2) < 1e-9
    # deltas 3,3,3,3,-1: sd sqrt(3.2), se 0.8, t(0.975, 4) = 2.7764 -> 2.2 +- 2.2212: a pass whose interval holds 0
    assert abs(gates["FE direction"]["ci95 low"] - (2.2 - 2.7764 * 0.8)) < 1e-3
    assert abs(gates["FE direction"]["ci95 high"] - (2.2 + 2.7764 * 0.8)) < 1e-3
    assert gates["AU direction"]["pass"] == "yes"
    assert gates["DPM effect (FE)"]["pass"] == "credited" and gates["DPM effect (FE)"]["seeds >= 2"] == "4/5"
    assert gates["TSP effect (FE)"]["pass"] == "no measurable effect"
    # a large mean from one seed is not a pass; an AU loss beyond 1 F1 point fails
    gates = {g["gate"]: g for g in summarize(_fake_runs([12, 1, -1, -1, 1], [-1.5] * 5), list(range(5)),
                                             FULL["variants"])["gates"]}
    assert gates["FE direction"]["pass"] == "no" and gates["AU direction"]["pass"] == "no"
    # a module is credited by the count of seeds at >= 2 points, not by its mean or its positive seeds
    dpm = gates["DPM effect (FE)"]
    assert dpm["mean delta"] > 2 and dpm["seeds >= 2"] == "1/5" and dpm["pass"] == "no measurable effect"
