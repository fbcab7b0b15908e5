"""mblfe end to end, slow set: two processes, kill-and-resume, and the positive control."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from tests.cli.helpers import json_lines, run_cli, run_killed
from tests.conftest import subprocess_env

from affectkit.tasks.mblfe.synth import make

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("mblfe-slow") / "quick"
    make(out, seed=7, quick=True)
    return out


def test_torchrun_two_processes_train_and_evaluate(quick, tmp_path):
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    args = ["-m", "affectkit", "--json", "train", "mblfe", "--data", str(quick), "--out", str(tmp_path / "multi"),
            "--set", "train.batch_size=64", "--set", "schedule.epochs=3"]
    multi = subprocess.run([torchrun, "--nproc_per_node", "2", *args], env=env, capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    lines = json_lines(multi.stdout)
    assert sum(line["event"] == "result" for line in lines) == 1
    assert json.loads((tmp_path / "multi" / "meta.json").read_text())["num_processes"] == 2
    assert lines[-1]["step"] == 3 * (300 // 64)
    # evaluation shares the users across processes and gathers them: the same numbers as one process
    single = run_cli(["--json", "evaluate", "mblfe", "--run", str(tmp_path / "multi"), "--split", "test"], env)
    assert single.returncode == 0, single.stderr
    two = subprocess.run(["accelerate", "launch", "--num_processes", "2", "--cpu", "-m", "affectkit", "--json", "evaluate",
                          "mblfe", "--run", str(tmp_path / "multi"), "--split", "test"],
                         env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = json_lines(single.stdout)[-1]["metrics"], json_lines(two.stdout)[-1]["metrics"]
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-6 for k in a)


def test_sigkill_then_resume_matches_the_uninterrupted_run(quick, tmp_path):
    # one thread: threaded sparse backward sums in varying order (1e-8 differences between two
    # identical runs); with one thread a run is bitwise reproducible, so resume must match exactly
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    args = ["train", "mblfe", "--data", str(quick), "--seed", "3", "--set", "train.batch_size=64",
            "--set", "schedule.epochs=25", "--set", "schedule.patience=0", "--set", "train.keep_checkpoints=100"]
    reference = tmp_path / "reference"
    done = run_cli([*args, "--out", str(reference)], env)
    assert done.returncode == 0, done.stderr
    killed = tmp_path / "killed"
    run_killed(args, env, killed, "step-24")
    resumed = run_cli([*args, "--out", str(killed), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(reference / "checkpoints" / "step-100" / "model.safetensors")
    b = load_file(killed / "checkpoints" / "step-100" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_positive_control_mblfe_and_target_lightgcn_beat_popularity(tmp_path, monkeypatch):
    """On the full-size embedded benchmark (one seed, a shorter budget than the protocol)."""
    from affectkit.core.device import get_accelerator
    from affectkit.core.seeding import seed_everything
    from affectkit.tasks.mblfe import TASK
    from affectkit.tasks.mblfe.bench import FULL, popularity_test, train_and_test, variant_config

    data = tmp_path / "full"
    make(data, seed=0, quick=False)
    acc = get_accelerator("no")
    results = {}
    for variant, epochs in (("lightgcn-target", 10), ("mblfe", 40)):
        cfg = TASK.resolve_config(variant_config(TASK, variant, {**FULL, "epochs": epochs, "patience": 0}), data)
        seed_everything(0)
        results[variant] = train_and_test(TASK, cfg, data, 0, acc)[0]["hit@10"]
    pop = popularity_test(data, cfg)["hit@10"]
    assert 0.1 < pop < results["lightgcn-target"] and pop < results["mblfe"], (pop, results)
