"""au-fe end to end through the CLI on the quick embedded benchmark: data -> train -> evaluate -> predict."""

import csv
import io

import numpy as np
import pytest
from tests.cli.helpers import invoke, json_lines

TINY = ["--set", "data.image_size=32", "--set", "data.n_frames=8", "--set", "model.moe_hidden=32",
        "--set", "model.fe_mlp=64", "--set", "model.fe_heads=4", "--set", "model.tiny_width=32",
        "--set", "model.tiny_layers=2", "--set", "train.batch_size=2", "--set", "train.eval_every=0",
        "--set", "train.checkpoint_every=0"]


@pytest.fixture(scope="module")
def quick_data(tmp_path_factory):
    from affectkit.tasks.au_fe import synth

    out = tmp_path_factory.mktemp("aufe") / "data"
    out.mkdir()
    synth.make(out, seed=0, quick=True)
    return out


def _video(path, frames=20, size=96):
    import cv2

    from affectkit.tasks.au_fe.synth import AUS, _identity, render

    rng = np.random.default_rng(0)
    ident = _identity(rng, "fe")
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (size, size))
    for k in range(frames):
        img = render(ident, {12: min(1.0, k / 10)}, size, rng, 0.0, 1.0, 2.0, (0.0, 0.0))
        w.write(img[:, :, ::-1])
    w.release()
    assert AUS


def test_data_make_writes_bp4d_and_dfew_layouts(quick_data):
    assert (quick_data / "au" / "AUCoding" / "AU_OCC" / "F001_T1.csv").is_file()
    assert list((quick_data / "au" / "Sequences" / "F001" / "T1").glob("*.jpg"))
    assert (quick_data / "fe" / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_5.csv").is_file()
    header = (quick_data / "au" / "AUCoding" / "AU_OCC" / "F001_T1.csv").read_text().splitlines()[0]
    assert header.split(",")[:3] == ["0", "1", "2"]


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
    _video(video)
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
