"""Bad values fail before any work, a run that failed in set-up does not block its rerun, killed
writes leave no debris, files get the umask's mode, and long phases log where they are."""

import os
import stat

import pytest
from tests.cli.helpers import invoke, json_lines, one_error

from affectkit.core.errors import DataError
from affectkit.core.output import Output
from affectkit.core.runs import RunDir, atomic_save, atomic_write_text


def _one_error(result, *needles):
    one_error(result.exit_code, result.stderr, *needles)


@pytest.mark.parametrize("args, needle", [
    (["--max-steps", "0"], "--max-steps: train.max_steps: must be >= 1, got 0"),
    (["--max-steps", "-4"], "train.max_steps: must be >= 1, got -4"),
    (["--set", "train.batch_size=0"], "train.batch_size: must be >= 1"),
    (["--set", "train.milestones=[10,-2]"], "train.milestones: must be >= 0, got -2"),
    (["--set", "model.dropout=1.5"], "model.dropout: must be between 0.0 and 1.0"),
    (["--set", "model.dropout=.nan"], "model.dropout: must be between 0.0 and 1.0, got nan"),
])
def test_out_of_range_values_fail_before_any_work(args, needle, tmp_path):
    _one_error(invoke("train", "toy", "--out", str(tmp_path / "r"), *args), needle)
    assert not (tmp_path / "r").exists()  # refused before the run directory was made


def test_a_run_that_failed_in_setup_does_not_block_its_rerun(tmp_path):
    data = tmp_path / "data"
    assert invoke("data", "make", "toy", "--out", str(data), "--quick").exit_code == 0
    (data / "test.csv").write_text("x0,label\n1,0\n")  # wrong columns: fails after set-up
    run = tmp_path / "run"
    _one_error(invoke("train", "toy", "--data", str(data), "--out", str(run)), "missing columns")
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "meta.json"]
    assert invoke("data", "make", "toy", "--out", str(data), "--quick", "--overwrite").exit_code == 0
    rerun = invoke("--json", "train", "toy", "--data", str(data), "--out", str(run), "--max-steps", "4")
    assert rerun.exit_code == 0, rerun.stderr
    assert json_lines(rerun.stdout)[-1]["step"] == 4
    mask = os.umask(0)
    os.umask(mask)
    for made in (run / "checkpoints" / "step-4", run / "checkpoints" / "best", run / "config.yaml"):
        mode = 0o777 if made.is_dir() else 0o666
        assert stat.S_IMODE(made.stat().st_mode) == mode & ~mask, made  # not mkstemp's 0600 / mkdtemp's 0700
    # a run that got past set-up is still protected
    _one_error(invoke("train", "toy", "--data", str(data), "--out", str(run)), "already exists")


def test_killed_writes_leave_no_debris_and_files_get_the_umask_mode(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("{}\n")
    (run / ".results.json.abc123.tmp").write_text("half")  # what a SIGKILL mid-write leaves
    opened = RunDir.open(run)  # set-up debris only: the directory is taken over
    opened.create()
    assert list(run.iterdir()) == []
    atomic_write_text(run / "x.txt", "hello")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((run / "x.txt").stat().st_mode) == 0o666 & ~mask


def test_a_failed_write_names_the_file_not_its_temp(tmp_path):
    def fail(tmp):
        raise PermissionError(13, "Permission denied", tmp)

    with pytest.raises(DataError) as exc:
        atomic_save(tmp_path / "out.bin", fail)
    assert str(tmp_path / "out.bin") in exc.value.message and ".tmp" not in exc.value.message
    assert list(tmp_path.iterdir()) == []


def test_phases_log_lines_when_stderr_is_not_a_terminal(capsys):
    out = Output()
    with out.progress("pretraining the tower", total=8) as bar:
        for _ in range(8):
            bar.advance(status="loss 0.1")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "pretraining the tower: started (0/8)"
    assert "pretraining the tower: 2/8, loss 0.1" in lines and "pretraining the tower: 6/8, loss 0.1" in lines
    assert lines[-1] == "pretraining the tower: done (8/8, loss 0.1)" and len(lines) == 5
    quiet = Output(quiet=True)
    with quiet.progress("x", total=2) as bar:
        bar.advance()
    assert capsys.readouterr().err == ""
