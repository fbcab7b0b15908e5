"""tqd end to end, slow set: two processes, kill-and-resume, and the quick bench's tables."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.cli.helpers import assert_resume_matches, json_lines, run_cli
from tests.conftest import subprocess_env

pytestmark = pytest.mark.slow

COUNTS = {"natural": 0, "golden": 8, "motion": 8, "quality": 8, "low": 0, "heldout": 6, "pairs": 2}
TINY = ["--set", "data.frames=4", "--set", "model.width=8", "--set", "model.depth=1", "--set", "model.emb_dim=16",
        "--set", "train.batch_size=4", "--set", "eval.draws=1", "--set", "eval.samples=0"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    from affectkit.tasks.tqd import synth

    out = tmp_path_factory.mktemp("tqd-slow") / "data"
    synth.make(out, seed=5, quick=True, counts=COUNTS, size=16, frames=8)
    return out


def test_torchrun_two_processes_train_and_evaluate(pool, tmp_path):
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    args = ["-m", "affectkit", "--json", "train", "tqd", "--data", str(pool), "--out", str(tmp_path / "multi"),
            "--max-steps", "8", "--set", "train.eval_every=4", *TINY]
    multi = subprocess.run([torchrun, "--nproc_per_node", "2", *args], env=env, capture_output=True, text=True,
                           timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    lines = json_lines(multi.stdout)
    assert sum(line["event"] == "result" for line in lines) == 1 and lines[-1]["step"] == 8
    assert json.loads((tmp_path / "multi" / "meta.json").read_text())["num_processes"] == 2
    # the held-out draws belong to each clip: two evaluating processes give one process's numbers
    single = run_cli(["--json", "evaluate", "tqd", "--run", str(tmp_path / "multi")], env)
    assert single.returncode == 0, single.stderr
    two = subprocess.run(["accelerate", "launch", "--num_processes", "2", "--cpu", "-m", "affectkit", "--json",
                          "evaluate", "tqd", "--run", str(tmp_path / "multi")],
                         env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = json_lines(single.stdout)[-1]["metrics"], json_lines(two.stdout)[-1]["metrics"]
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-5 for k in a)


def test_sigkill_then_resume_matches_the_uninterrupted_run(pool, tmp_path):
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    args = ["train", "tqd", "--data", str(pool), "--seed", "3", "--max-steps", "60", "--sampler", "tqd-categorical",
            "--set", "data.balanced=true", "--set", "train.checkpoint_every=15", "--set", "train.eval_every=30",
            "--set", "train.keep_checkpoints=100", *TINY]
    assert_resume_matches(args, env, tmp_path)


def test_quick_bench_writes_every_table_and_plot(tmp_path):
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"))
    done = run_cli(["--json", "bench", "tqd", "--quick", "--out", str(tmp_path / "bench")], env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    tables = json.loads((tmp_path / "bench" / "results.json").read_text())["tasks"]["tqd"]["tables"]
    names = " | ".join(tables)
    for part in ("claim", "per noise band", "sample metrics", "positive control", "gradient similarity",
                 "Observation 2"):
        assert part in names, names
    claim = next(rows for name, rows in tables.items() if name.startswith("claim"))
    assert {r["comparison"] for r in claim} >= {"tqd - uniform", "tqd - logit-normal", "tqd - golden-only"}
    assert (tmp_path / "bench" / "tqd" / "tqd_gradient_similarity.png").is_file()
