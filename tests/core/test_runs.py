import json

import pytest

from affectkit.core.errors import UsageError
from affectkit.core.runs import RunDir, atomic_write_json, atomic_write_text
from affectkit.core.seeding import capture_rng, restore_rng, seed_everything


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello")
    atomic_write_json(tmp_path / "b.json", {"x": float("nan"), "y": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]
    assert json.loads((tmp_path / "b.json").read_text()) == {"x": None, "y": 1}


def test_existing_run_dir_is_refused(tmp_path):
    run = RunDir.open(tmp_path / "run")
    run.create()
    (run.path / "config.yaml").write_text("a: 1\n")
    # a run that got past set-up (issue 16: one that did not may be taken over, see test_failures_leave_nothing)
    (run.path / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(UsageError, match="already exists"):
        RunDir.open(tmp_path / "run")
    with pytest.raises(UsageError, match="exclude"):
        RunDir.open(tmp_path / "run", resume=True, overwrite=True)
    with pytest.raises(UsageError, match="nothing to resume"):
        RunDir.open(tmp_path / "other", resume=True)
    replaced = RunDir.open(tmp_path / "run", overwrite=True)
    replaced.create()
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_metrics_stream_truncates_on_resume(tmp_path):
    run = RunDir.open(tmp_path / "run")
    run.create()
    for step in (10, 20, 30):
        run.log_metrics({"step": step, "split": "train", "loss": 1.0 / step})
    with open(run.metrics_path, "a") as fh:
        fh.write('{"step": 40, "spl')  # a line cut by a kill
    run.truncate_metrics(20)
    assert [r["step"] for r in run.read_metrics()] == [10, 20]


def test_rng_state_round_trip():
    import random

    import numpy as np
    import torch

    seed_everything(3)
    state = json.loads(json.dumps(capture_rng()))
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng(state)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b
