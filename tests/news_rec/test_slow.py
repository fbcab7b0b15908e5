"""news-rec end to end, slow set: two processes, kill-and-resume."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.cli.helpers import assert_resume_matches, json_lines, run_cli
from tests.conftest import subprocess_env

from affectkit.tasks.news_rec.synth import make

pytestmark = pytest.mark.slow
SMALL = ["--set", "train.batch_size=256", "--set", "model.news_encoder=bow"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("news-rec-slow") / "quick"
    make(out, seed=4, quick=True)
    return out


def test_torchrun_two_processes_train_and_evaluate(quick, tmp_path):
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    multi = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "affectkit", "--json", "train", "news-rec",
                            "--data", str(quick), "--out", str(tmp_path / "multi"), "--max-steps", "6", *SMALL],
                           env=env, capture_output=True, text=True, timeout=600)
    assert multi.returncode == 0, multi.stderr[-3000:]
    lines = json_lines(multi.stdout)
    assert sum(line["event"] == "result" for line in lines) == 1 and lines[-1]["step"] == 6
    assert json.loads((tmp_path / "multi" / "meta.json").read_text())["num_processes"] == 2
    assert 0.5 < lines[-1]["metrics"]["auc"] <= 1.0
    ev = run_cli(["--json", "evaluate", "news-rec", "--run", str(tmp_path / "multi")], env)
    assert ev.returncode == 0, ev.stderr
    assert 0.0 <= json_lines(ev.stdout)[-1]["metrics"]["ndcg@10"] <= 1.0


def test_sigkill_then_resume_matches_the_uninterrupted_run(quick, tmp_path):
    # one thread: a run is then bitwise reproducible, so resume must match exactly
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    args = ["train", "news-rec", "--data", str(quick), "--seed", "3", *SMALL, "--set", "schedule.epochs=3",
            "--set", "schedule.patience=0", "--set", "train.keep_checkpoints=100"]
    assert_resume_matches(args, env, tmp_path)
