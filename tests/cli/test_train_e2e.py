import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from tests.cli.helpers import invoke, json_lines, run_cli, run_killed
from tests.conftest import subprocess_env


def _metrics_without_time(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("time")
    return rows


def test_data_make_writes_the_format(tmp_path):
    out = tmp_path / "toy-data"
    result = invoke("--json", "data", "make", "toy", "--out", str(out), "--seed", "3", "--quick")
    assert result.exit_code == 0, result.stderr
    res = json_lines(result.stdout)[-1]
    assert res["n_files"] == 2 and res["train"] == 90
    assert (out / "train.csv").read_text().startswith("x0,x1")
    again = invoke("data", "make", "toy", "--out", str(out))
    assert again.exit_code == 2 and "not empty" in again.stderr


def test_train_evaluate_bench_end_to_end(tmp_path):
    run = tmp_path / "run"
    result = invoke("--json", "train", "toy", "--out", str(run), "--max-steps", "20")
    assert result.exit_code == 0, result.stderr
    lines = json_lines(result.stdout)
    final = lines[-1]
    assert final["event"] == "result" and final["run_dir"] == str(run) and final["step"] == 20
    assert final["metrics"]["accuracy"] > 0.7
    for name in ("config.yaml", "meta.json", "metrics.jsonl", "results.json", "report.md"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "best" / "model.safetensors").is_file()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["seed"] == 0 and "torch" in meta["versions"]

    ev = invoke("--json", "evaluate", "toy", "--run", str(run), "--checkpoint", "last")
    assert ev.exit_code == 0, ev.stderr
    ev_res = json_lines(ev.stdout)[-1]
    assert ev_res["metrics"]["accuracy"] == pytest.approx(final["metrics"]["accuracy"])

    again = invoke("--json", "train", "toy", "--out", str(run))
    assert again.exit_code == 2 and "already exists" in again.stderr

    bench_out = tmp_path / "bench"
    b = invoke("--json", "bench", "toy", "--quick", "--out", str(bench_out))
    assert b.exit_code == 0, b.stderr
    blines = json_lines(b.stdout)
    assert blines[-1]["event"] == "result" and blines[-1]["tasks"] == ["toy"]
    results = json.loads((bench_out / "results.json").read_text())
    methods = [r["method"] for r in results["tasks"]["toy"]["tables"]["toy blobs"]]
    assert methods == ["mlp", "linear"]
    assert (bench_out / "report.md").read_text().count("| mlp |") == 1
    assert list((bench_out / "toy").glob("*.png"))


def test_same_seed_same_metrics(tmp_path):
    for name in ("a", "b"):
        result = invoke("train", "toy", "--out", str(tmp_path / name), "--seed", "5", "--max-steps", "20")
        assert result.exit_code == 0, result.stderr
    assert _metrics_without_time(tmp_path / "a") == _metrics_without_time(tmp_path / "b")


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"))
    args = ["train", "toy", "--seed", "1", "--set", "train.max_steps=400", "--set", "train.checkpoint_every=7",
            "--set", "train.eval_every=25", "--set", "train.log_every=1"]
    reference = tmp_path / "reference"
    done = run_cli([*args, "--out", str(reference)], env)
    assert done.returncode == 0, done.stderr

    killed = tmp_path / "killed"
    run_killed(args, env, killed, "step-1[0-9][0-9]")

    resumed = run_cli([*args, "--out", str(killed), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    a = load_file(reference / "checkpoints" / "step-400" / "model.safetensors")
    b = load_file(killed / "checkpoints" / "step-400" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), key
    assert _metrics_without_time(reference) == _metrics_without_time(killed)


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
@pytest.mark.slow
def test_torchrun_two_processes_matches_single_process(tmp_path):
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    args = ["--json", "train", "toy", "--seed", "2", "--max-steps", "30", "--set", "model.dropout=0"]
    single = run_cli([*args, "--out", str(tmp_path / "single")], env)
    assert single.returncode == 0, single.stderr
    torchrun = str(Path(sys.executable).parent / "torchrun")
    multi = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "affectkit", *args, "--out", str(tmp_path / "multi")],
                           env=env, capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    lines = json_lines(multi.stdout)  # only rank 0 prints: one result line
    assert sum(1 for line in lines if line["event"] == "result") == 1
    meta = json.loads((tmp_path / "multi" / "meta.json").read_text())
    assert meta["num_processes"] == 2
    # stated tolerance: same global batches, gradients averaged over the two halves -> float rounding only
    a = load_file(tmp_path / "single" / "checkpoints" / "step-30" / "model.safetensors")
    b = load_file(tmp_path / "multi" / "checkpoints" / "step-30" / "model.safetensors")
    for key in a:
        assert (a[key] - b[key]).abs().max().item() < 1e-4, key
    s_res, m_res = json_lines(single.stdout)[-1], lines[-1]
    assert abs(s_res["metrics"]["nll"] - m_res["metrics"]["nll"]) < 1e-4


def test_json_stdout_stays_clean_while_progress_bars_draw(tmp_path):
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), FORCE_COLOR="1", COLUMNS="100")
    proc = run_cli(["--json", "train", "toy", "--out", str(tmp_path / "run"), "--max-steps", "20"], env)
    assert proc.returncode == 0, proc.stderr
    assert "training toy" in proc.stderr  # the bar drew on stderr
    lines = json_lines(proc.stdout)
    assert lines[-1]["event"] == "result"
