"""act-prompt end to end, slow set: two processes (with the layer sweep), kill-and-resume, and the quick
bench's tables (which pretrain both embedded backbones)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.cli.helpers import assert_resume_matches, json_lines, run_cli
from tests.conftest import subprocess_env

pytestmark = pytest.mark.slow

FAST = ["--set", "backbone.pretrained=false", "--set", "data.task=textures", "--set", "train.batch_size=16"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from affectkit.tasks.act_prompt.synth import make

    out = tmp_path_factory.mktemp("ap-slow") / "data"
    make(out, seed=2, quick=True, tasks=["textures"])
    return out


def test_torchrun_two_processes_sweep_train_and_evaluate(data, tmp_path):
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    run = tmp_path / "multi"
    args = ["-m", "affectkit", "--json", "train", "act-prompt", "--data", str(data), "--out", str(run),
            "--max-steps", "6", "--set", "train.eval_every=3", "--set", "layer=auto", "--set", "sweep.steps=2",
            "--set", "sweep.layers=[2,4]", *FAST]
    multi = subprocess.run([torchrun, "--nproc_per_node", "2", *args], env=env, capture_output=True, text=True,
                           timeout=600)
    assert multi.returncode == 0, multi.stderr[-3000:]
    lines = json_lines(multi.stdout)
    assert sum(line["event"] == "result" for line in lines) == 1 and lines[-1]["step"] == 6
    assert lines[-1]["layer"] in (2, 4) and json.loads((run / "sweep.json").read_text())["chosen"] == lines[-1]["layer"]
    assert json.loads((run / "meta.json").read_text())["num_processes"] == 2
    single = run_cli(["--json", "evaluate", "act-prompt", "--run", str(run)], env)
    assert single.returncode == 0, single.stderr
    assert json_lines(single.stdout)[-1]["metrics"]["accuracy"] == pytest.approx(lines[-1]["test"]["accuracy"])


def test_sigkill_then_resume_matches_the_uninterrupted_run(data, tmp_path):
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    args = ["train", "act-prompt", "--data", str(data), "--seed", "3", "--max-steps", "40", "--set", "layer=2",
            "--set", "train.checkpoint_every=10", "--set", "train.eval_every=20", "--set", "train.keep_checkpoints=100",
            *FAST]
    assert_resume_matches(args, env, tmp_path)


def test_quick_bench_writes_every_table_and_plot(tmp_path):
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"))
    done = run_cli(["--json", "bench", "act-prompt", "--quick", "--out", str(tmp_path / "bench")], env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    tables = json.loads((tmp_path / "bench" / "results.json").read_text())["tasks"]["act-prompt"]["tables"]
    names = " | ".join(tables)
    for part in ("accuracy and costs", "claim (a)", "claim (b)", "positive control", "layer preference"):
        assert part in names, names
    claim = next(rows for name, rows in tables.items() if name.startswith("claim (a)"))
    assert {(r["backbone"], r["comparison"]) for r in claim} >= {("resnet", "ap - vp"), ("vit", "ap - vp")}
    for arch in ("resnet", "vit"):
        assert (tmp_path / "bench" / "act-prompt" / f"act_prompt_{arch}_accuracy_vs_params.png").is_file()
