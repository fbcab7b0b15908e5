"""prime end to end, slow set: pretraining and fine-tuning under torchrun (two processes), a
pretraining killed with SIGKILL and resumed bitwise, and the positive control (a model learns the
GBSG survival signal)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.cli.helpers import json_lines, run_cli
from tests.conftest import subprocess_env
from tests.prime.helpers import TINY

pytest.importorskip("sksurv")
pytest.importorskip("lifelines")
pytestmark = pytest.mark.slow


def test_torchrun_two_processes_pretrain_then_finetune(data: Path, tmp_path: Path) -> None:
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    base = ["-m", "affectkit", "--json", "train", "prime", "--data", str(data), "--fold", "1", *TINY]
    pre = subprocess.run([torchrun, "--nproc_per_node", "2", *base, "--max-steps", "8", "--out", str(tmp_path / "pre")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert pre.returncode == 0, pre.stderr[-3000:]
    assert json.loads((tmp_path / "pre" / "meta.json").read_text())["num_processes"] == 2
    fine = subprocess.run([torchrun, "--nproc_per_node", "2", *base, "--stage", "finetune", "--init", str(tmp_path / "pre"),
                           "--max-steps", "6", "--set", "train.eval_every=3", "--out", str(tmp_path / "fine")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert fine.returncode == 0, fine.stderr[-3000:]
    lines = json_lines(fine.stdout)
    assert sum(line["event"] == "result" for line in lines) == 1
    assert lines[-1]["n_folds"] == 1 and 0.0 <= lines[-1]["metrics"]["c_index"] <= 1.0
    res = run_cli(["--json", "evaluate", "prime", "--run", str(tmp_path / "fine")], env)
    assert res.returncode == 0, res.stderr
    assert json_lines(res.stdout)[-1]["metrics"]["c_index"] == pytest.approx(lines[-1]["metrics"]["c_index"], abs=1e-6)


def test_sigkill_then_resume_matches_the_uninterrupted_pretraining(data: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    args = ["train", "prime", "--data", str(data), "--fold", "0", "--seed", "3", *TINY, "--max-steps", "24",
            "--set", "train.checkpoint_every=6", "--set", "train.keep_checkpoints=100"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = run_cli([*args, "--out", str(reference)], env, timeout=600)
    assert done.returncode == 0, done.stderr
    ckpts = reference / "folds" / "0" / "checkpoints"
    steps = sorted(int(p.name.split("-")[1]) for p in ckpts.glob("step-*"))
    assert steps == [6, 12, 18, 24]
    proc = subprocess.Popen([sys.executable, "-m", "affectkit", *args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((killed / "folds" / "0" / "checkpoints").glob("step-6")):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists(), "the run finished before it could be killed"
    resumed = run_cli([*args, "--out", str(killed), "--resume"], env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(ckpts / "step-24" / "model.safetensors")
    b = load_file(killed / "folds" / "0" / "checkpoints" / "step-24" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_positive_control_zero_fill_learns_gbsg_survival(data: Path, tmp_path: Path) -> None:
    """The bench's network and settings, supervised from scratch on fold 0 of GBSG (complete): the
    test C-index of overall survival is clearly above chance."""
    from affectkit.tasks.prime.bench import SETTINGS

    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"))
    sets = [x for s in SETTINGS for x in ("--set", s)]
    res = run_cli(["--json", "train", "prime", "--data", str(data), "--fold", "0", "--stage", "finetune", *sets,
                   "--set", "model.fill=zero", "--set", "model.text_encoder=hashing", "--max-steps", "150",
                   "--set", "train.eval_every=30", "--endpoint", "os", "--out", str(tmp_path / "run")], env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json_lines(res.stdout)[-1]["metrics"]["c_index"] > 0.62
