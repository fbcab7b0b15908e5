"""rppg through the command line on a few short embedded videos: evaluate (classical and a tiny
trained FreqPhys), predict on a file, on stdin and with a plot, and the bad inputs users hit."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from tests.cli.helpers import invoke, json_lines, one_error
from tests.conftest import subprocess_env

from affectkit.tasks.rppg.synth import make

# quick plan: 1-6 train, 7-8 valid, 9-11 test clean, 12-14 test hard
SUBJECTS = [1, 2, 7, 10, 12]
TINY = ["--set", "model.dim=8", "--set", "model.depth=1", "--set", "model.heads=1", "--set", "model.dim_head=8",
        "--set", "model.mlp_dim=8", "--set", "model.dropout=0", "--set", "train.batch_size=2", "--set", "epochs=1",
        "--set", "data.clip_every=2", "--set", "eval.clip_every=4", "--set", "diffusion.sample_steps=2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rppg") / "ubfc"
    make(root, 0, quick=True, duration=12, subjects=SUBJECTS)
    return root


def _truth(data: Path, subject: int) -> float:
    rows = list(csv.DictReader((data / "splits.csv").open()))
    return float(next(r for r in rows if r["subject"] == f"subject{subject}")["hr_mean"])


def test_evaluate_classical_reports_metrics_and_files(data: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    res = invoke("--json", "evaluate", "rppg", "--data", str(data), "--method", "pos", "--set", "data.subset=clean",
                 "--report", str(report))
    assert res.exit_code == 0, res.stderr
    out = json_lines(res.stdout)[-1]
    assert set(out["metrics"]) == {"mae", "rmse", "mape", "pearson", "snr"}
    assert out["n_videos"] == 1 and out["metrics"]["mae"] <= 1.0
    rows = list(csv.DictReader((report / "windows.csv").open()))
    assert rows[0]["video"] == "subject10"
    assert (report / "bland_altman.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((report / "results.json").read_text())["method"] == "pos"


def test_evaluate_freqphys_preset_scores_clips(data: Path) -> None:
    res = invoke("--json", "evaluate", "rppg", "--data", str(data), "--method", "chrom", "--preset", "freqphys",
                 "--split", "test")
    assert res.exit_code == 0, res.stderr
    out = json_lines(res.stdout)[-1]
    assert out["preset"] == "freqphys" and out["n_videos"] == 2 and out["n_units"] == 2


def test_predict_video_rows_summary_csv_and_plot(data: Path, tmp_path: Path) -> None:
    video = data / "subject10" / "vid.avi"
    plot = tmp_path / "trace.png"
    res = invoke("--json", "predict", "rppg", str(video), "--window", "6", "--plot", str(plot))
    assert res.exit_code == 0, res.stderr
    lines = json_lines(res.stdout)
    windows = [x for x in lines if x["event"] == "window"]
    assert len(windows) == 2 and windows[1]["start_s"] == 6.0
    summary = lines[-1]
    assert summary["method"] == "pos" and summary["frames"] == 360
    assert abs(summary["hr_median"] - _truth(data, 10)) < 3.0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    res = invoke("predict", "rppg", str(video), "--window", "4", "--format", "csv", "--method", "chrom")
    assert res.exit_code == 0, res.stderr
    rows = list(csv.DictReader(res.stdout.splitlines()))
    assert len(rows) == 3 and {"window", "start_s", "end_s", "hr", "snr_self_db"} <= set(rows[0])


def test_predict_reads_an_mjpeg_stream_from_stdin(data: Path) -> None:
    cap = cv2.VideoCapture(str(data / "subject10" / "vid.avi"))
    chunks = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        chunks.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    proc = subprocess.run([sys.executable, "-m", "affectkit", "--json", "predict", "rppg", "-", "--fps", "30",
                           "--window", "6"], input=b"".join(chunks), capture_output=True, env=subprocess_env(),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = json_lines(proc.stdout.decode())
    assert [x["window"] for x in lines if x["event"] == "window"] == [0, 1]
    assert abs(lines[-1]["hr_median"] - _truth(data, 10)) < 3.0


def test_train_evaluate_predict_tiny_freqphys(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = invoke("--json", "train", "rppg", "--data", str(data), "--out", str(run), *TINY)
    assert res.exit_code == 0, res.stderr
    assert (run / "checkpoints" / "best" / "model.safetensors").is_file()
    res = invoke("--json", "evaluate", "rppg", "--run", str(run), "--preset", "freqphys")
    assert res.exit_code == 0, res.stderr
    out = json_lines(res.stdout)[-1]
    assert out["method"] == "freqphys" and np.isfinite(out["metrics"]["mae"])
    res = invoke("--json", "evaluate", "rppg", "--run", str(run), "--preset", "toolbox")
    assert res.exit_code == 0, res.stderr
    res = invoke("--json", "predict", "rppg", str(data / "subject10" / "vid.avi"), "--run", str(run),
                 "--checkpoint", "last")
    assert res.exit_code == 0, res.stderr
    lines = json_lines(res.stdout)
    assert lines[-1]["method"] == "freqphys" and len([x for x in lines if x["event"] == "window"]) == 1


@pytest.mark.parametrize("args,needles", [
    (["evaluate", "rppg", "--method", "nope"], ["method"]),
    (["evaluate", "rppg", "--method", "freqphys"], ["--run"]),
    (["predict", "rppg", "VIDEO", "--method", "freqphys"], ["--run"]),
    (["evaluate", "rppg", "--set", "face.detect_evry=3"], ["detect_evry"]),
    (["evaluate", "rppg", "--set", "data.fps=-30"], ["data.fps"]),
    (["evaluate", "rppg", "--preset", "nope"], ["preset"]),
    (["predict", "rppg", "-"], ["--fps"]),
])
def test_usage_errors(data: Path, args: list[str], needles: list[str]) -> None:
    args = [a.replace("VIDEO", str(data / "subject10" / "vid.avi")) for a in args]
    if args[0] == "evaluate":
        args += ["--data", str(data)]
    res = invoke(*args)
    one_error(res.exit_code, res.stderr, *needles)


def test_data_stats_per_split(data: Path) -> None:
    res = invoke("--json", "data", "stats", "rppg", "--data", str(data))
    assert res.exit_code == 0, res.stderr
    out = json_lines(res.stdout)[-1]
    assert out["dataset"] == "ubfc-rppg" and out["recordings"] == len(SUBJECTS)
    assert out["splits"]["train"]["recordings"] == 2 and out["splits"]["test"]["fps"] == [30.0]
    assert out["splits"]["test"]["seconds_min"] == 12.0


def _copy(data: Path, tmp_path: Path, subjects: tuple[str, ...] = ("subject10",)) -> Path:
    root = tmp_path / "bad"
    root.mkdir()
    for s in subjects:
        shutil.copytree(data / s, root / s)
    (root / "splits.csv").write_text("subject,split,subset\n" + "".join(f"{s},test,clean\n" for s in subjects))
    return root


def test_corrupt_video_names_the_file(data: Path, tmp_path: Path) -> None:
    root = _copy(data, tmp_path)
    (root / "subject10" / "vid.avi").write_bytes(b"not a video at all" * 100)
    res = invoke("evaluate", "rppg", "--data", str(root), "--method", "pos")
    one_error(res.exit_code, res.stderr, "vid.avi")
    res = invoke("predict", "rppg", str(root / "subject10" / "vid.avi"))
    one_error(res.exit_code, res.stderr, "vid.avi")


def test_ground_truth_length_mismatch_names_the_file(data: Path, tmp_path: Path) -> None:
    root = _copy(data, tmp_path)
    gt = root / "subject10" / "ground_truth.txt"
    rows = [line.split() for line in gt.read_text().splitlines()]
    gt.write_text("\n".join(" ".join(r[:-30]) for r in rows) + "\n")
    res = invoke("evaluate", "rppg", "--data", str(root), "--method", "pos")
    one_error(res.exit_code, res.stderr, "ground_truth.txt")


def test_nan_ground_truth_names_the_file(data: Path, tmp_path: Path) -> None:
    root = _copy(data, tmp_path)
    gt = root / "subject10" / "ground_truth.txt"
    rows = [line.split() for line in gt.read_text().splitlines()]
    rows[0][5] = "nan"
    gt.write_text("\n".join(" ".join(r) for r in rows) + "\n")
    res = invoke("evaluate", "rppg", "--data", str(root), "--method", "pos")
    one_error(res.exit_code, res.stderr, "ground_truth.txt")


def test_video_without_a_face_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "noface.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(90):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    res = invoke("predict", "rppg", str(path), "--window", "2")
    one_error(res.exit_code, res.stderr, "noface.avi", "no face")
