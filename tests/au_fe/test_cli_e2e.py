"""au-fe end to end through the CLI on the quick embedded benchmark: data -> train -> evaluate -> predict."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.au_fe.conftest import TINY, face_video
from tests.cli.helpers import invoke, json_lines, run_cli
from tests.conftest import subprocess_env


def test_data_make_writes_bp4d_and_dfew_layouts(quick_data):
    assert (quick_data / "au" / "AUCoding" / "AU_OCC" / "F001_T1.csv").is_file()
    assert list((quick_data / "au" / "Sequences" / "F001" / "T1").glob("*.jpg"))
    assert (quick_data / "fe" / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_5.csv").is_file()
    header = (quick_data / "au" / "AUCoding" / "AU_OCC" / "F001_T1.csv").read_text().splitlines()[0]
    assert header.split(",")[:3] == ["0", "1", "2"]


@pytest.mark.slow
def test_train_evaluate_predict(quick_data, tmp_path):
    run = tmp_path / "run"
    res = invoke("--json", "train", "au-fe", "--data", str(quick_data), "--out", str(run), "--max-steps", "2", *TINY)
    assert res.exit_code == 0, res.stderr
    final = json_lines(res.stdout)[-1]
    assert final["step"] == 2 and {"fe_uar", "fe_war", "au_f1", "au_auc"} <= set(final["metrics"])

    ev = invoke("--json", "evaluate", "au-fe", "--run", str(run), "--checkpoint", "last")
    assert ev.exit_code == 0, ev.stderr
    assert json_lines(ev.stdout)[-1]["metrics"]["fe_war"] == pytest.approx(final["metrics"]["fe_war"])

    video = tmp_path / "face.avi"
    face_video(video)
    pr = invoke("predict", "au-fe", str(video), "--run", str(run), "--checkpoint", "last", "--format", "csv")
    assert pr.exit_code == 0, pr.stderr
    rows = list(csv.DictReader(io.StringIO(pr.stdout)))
    assert len(rows) == 20 and "AU12_p" in rows[0] and "AU12_c" in rows[0]
    assert all(0.0 <= float(r["AU12_p"]) <= 1.0 for r in rows)
    js = invoke("--json", "predict", "au-fe", str(video), "--run", str(run), "--checkpoint", "last")
    lines = json_lines(js.stdout)
    assert sum(line["event"] == "frame" for line in lines) == 20
    assert lines[-1]["event"] == "result" and lines[-1]["expression"]["label"] in lines[-1]["expression"]["probs"]

    bad = tmp_path / "corrupt.avi"
    bad.write_bytes(b"\x00garbage" * 10)
    res = invoke("predict", "au-fe", str(bad), "--run", str(run))
    assert res.exit_code == 2 and "corrupt.avi" in res.stderr and "Traceback" not in res.stderr


def test_data_au_and_fe_flags(quick_data, tmp_path):
    res = invoke("--json", "train", "au-fe", "--data-au", str(quick_data / "au"), "--data-fe", str(quick_data / "fe"),
                 "--out", str(tmp_path / "r"), "--max-steps", "1", *TINY)
    assert res.exit_code == 0, res.stderr
    res = invoke("train", "au-fe", "--data-au", str(tmp_path / "missing"), "--out", str(tmp_path / "r2"))
    assert res.exit_code == 2 and "missing" in res.stderr


def test_bad_au_label_file_is_one_clear_error(quick_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(quick_data, data)
    label = data / "au" / "AUCoding" / "AU_OCC" / "F001_T1.csv"
    lines = label.read_text().splitlines()
    fields = lines[3].split(",")
    fields[1] = "x"  # AU 1
    lines[3] = ",".join(fields)
    label.write_text("\n".join(lines) + "\n")
    res = invoke("train", "au-fe", "--data", str(data), "--out", str(tmp_path / "r"), "--max-steps", "1", *TINY)
    assert res.exit_code == 2, res.stderr
    assert "F001_T1.csv: line 4" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_two_processes_train_and_gather_the_same_evaluation(quick_data, tmp_path):
    """SSM under torchrun (Accelerate MULTI_CPU over gloo): the joint loader and the DDP-wrapped model
    train; evaluating one checkpoint with two processes gathers every test clip once, so the metrics
    equal the single-process ones exactly."""
    env = subprocess_env(AFFECTKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    bindir = Path(sys.executable).parent
    common = ["--json", "train", "au-fe", "--data", str(quick_data), "--max-steps", "3", "--seed", "1", *TINY]
    multi = subprocess.run([str(bindir / "torchrun"), "--nproc_per_node", "2", "-m", "affectkit", *common,
                            "--out", str(tmp_path / "multi")], env=env, capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert json.loads((tmp_path / "multi" / "meta.json").read_text())["num_processes"] == 2
    trained = json_lines(multi.stdout)[-1]["metrics"]

    evaluate = ["--json", "evaluate", "au-fe", "--checkpoint", "last", "--run", str(tmp_path / "multi")]
    single = run_cli(evaluate, env)
    assert single.returncode == 0, single.stderr[-3000:]
    # torchrun reads `--run` as its own --run-path, so the two-process evaluation goes through accelerate launch
    two = subprocess.run([str(bindir / "accelerate"), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "affectkit", *evaluate],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    one_metrics, two_metrics = json_lines(single.stdout)[-1]["metrics"], json_lines(two.stdout)[-1]["metrics"]
    assert one_metrics == two_metrics
    assert one_metrics["fe_war"] == pytest.approx(trained["fe_war"])
