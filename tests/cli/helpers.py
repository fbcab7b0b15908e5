import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from affectkit.cli import app, hoist_global_flags


def invoke(*args: str):
    """Run the CLI in-process; returns click's Result with separate stdout and stderr."""
    return CliRunner().invoke(app, hoist_global_flags(list(args)), catch_exceptions=False)


def json_lines(text: str) -> list[dict]:
    """Every stdout line must be a JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run_cli(args: list[str], env: dict, timeout: int = 300, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "affectkit", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def one_error(exit_code: int, stderr: str, *needles: str, code: int = 2) -> str:
    """An error as users must see it: exit ``code`` (2: usage or bad input), exactly one `Error:`
    line holding every needle, no traceback. Returns that line."""
    assert exit_code == code, (exit_code, stderr)
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    for needle in needles:
        assert str(needle) in errors[0], (needle, errors[0])
    return errors[0]


def run_killed(args: list[str], env: dict, out: Path, checkpoint_glob: str, timeout: float = 120) -> None:
    """Start ``affectkit ARGS --out OUT`` and SIGKILL it as soon as a checkpoint directory matching
    ``checkpoint_glob`` appears under ``OUT/checkpoints``; the run must not have finished by then."""
    proc = subprocess.Popen([sys.executable, "-m", "affectkit", *args, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and not list((out / "checkpoints").glob(checkpoint_glob)):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists(), "the run finished before it could be killed"


def assert_resume_matches(args: list[str], env: dict, tmp_path: Path, timeout: int = 600) -> tuple[Path, Path]:
    """Train ``affectkit ARGS`` uninterrupted, then again killed at its first step checkpoint and
    resumed; the last checkpoint's weights must be bitwise equal. Returns (reference, resumed) runs."""
    from safetensors.torch import load_file

    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = run_cli([*args, "--out", str(reference)], env, timeout=timeout)
    assert done.returncode == 0, done.stderr
    steps = sorted(int(p.name.split("-")[1]) for p in (reference / "checkpoints").glob("step-*"))
    assert len(steps) >= 2, steps
    run_killed(args, env, killed, f"step-{steps[0]}", timeout=timeout / 2)
    resumed = run_cli([*args, "--out", str(killed), "--resume"], env, timeout=timeout)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(reference / "checkpoints" / f"step-{steps[-1]}" / "model.safetensors")
    b = load_file(killed / "checkpoints" / f"step-{steps[-1]}" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    return reference, killed
