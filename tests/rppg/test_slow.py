"""rppg end to end, slow set: two processes, kill-and-resume, and the positive control."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.cli.helpers import assert_resume_matches, json_lines, run_cli
from tests.conftest import subprocess_env

from affectkit.tasks.rppg.synth import make

pytestmark = pytest.mark.slow

SUBJECTS = [1, 2, 3, 4, 7, 9, 10]  # train 1-4, valid 7, test clean 9-10
TINY = ["--set", "model.dim=8", "--set", "model.depth=1", "--set", "model.heads=1", "--set", "model.dim_head=8",
        "--set", "model.mlp_dim=8", "--set", "model.dropout=0", "--set", "data.clip_every=4",
        "--set", "eval.clip_every=8", "--set", "diffusion.sample_steps=2"]


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    out = tmp_path_factory.mktemp("rppg-slow") / "ubfc"
    make(out, seed=5, quick=True, duration=14, subjects=SUBJECTS)
    return out


def test_torchrun_two_processes_train_then_evaluate(short, tmp_path):
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    args = ["-m", "affectkit", "--json", "train", "rppg", "--data", str(short), "--out", str(tmp_path / "multi"),
            *TINY, "--set", "train.batch_size=4", "--set", "epochs=2"]
    multi = subprocess.run([torchrun, "--nproc_per_node", "2", *args], env=env, capture_output=True, text=True,
                           timeout=600)
    assert multi.returncode == 0, multi.stderr[-3000:]
    lines = json_lines(multi.stdout)
    assert sum(line["event"] == "result" for line in lines) == 1
    assert json.loads((tmp_path / "multi" / "meta.json").read_text())["num_processes"] == 2
    assert lines[-1]["step"] == 2 * (lines[-1]["data"]["train_clips"] // 4) > 0
    res = run_cli(["--json", "evaluate", "rppg", "--run", str(tmp_path / "multi"), "--preset", "freqphys"], env)
    assert res.returncode == 0, res.stderr
    assert json_lines(res.stdout)[-1]["n_videos"] == 2


def test_sigkill_then_resume_matches_the_uninterrupted_run(short, tmp_path):
    # one thread: a run is then bitwise reproducible, so the resumed run must match exactly
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    args = ["train", "rppg", "--data", str(short), "--seed", "3", *TINY, "--set", "train.batch_size=2",
            "--set", "epochs=6", "--set", "train.keep_checkpoints=100"]
    reference, killed = assert_resume_matches(args, env, tmp_path)
    ra = [json.loads(x) for x in (reference / "metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    drop = ("time", "elapsed")
    assert [{k: v for k, v in r.items() if k not in drop} for r in ra] == \
        [{k: v for k, v in r.items() if k not in drop} for r in rb]


def test_positive_control_freqphys_clean_mae_below_5_bpm(tmp_path):
    """The quick embedded benchmark, the bench's network and settings, two epochs, one seed."""
    from affectkit.core.device import get_accelerator
    from affectkit.core.seeding import seed_everything
    from affectkit.tasks.rppg import TASK
    from affectkit.tasks.rppg.bench import CONTROL_MAE, train_deep

    data = tmp_path / "quick"
    make(data, seed=0, quick=True)
    seed_everything(0)
    result = train_deep(TASK, "freqphys", data, 0, 2, get_accelerator("no"))
    assert result["clean"]["mae"] < CONTROL_MAE, result
