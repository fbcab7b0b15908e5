"""au-fe refuses or reports bad input (issue 16): drops are warned with a count, every input is checked
before the tower is pretrained, the tower goes to the cache (never into --data), ranges are declared,
and predict says when frames did not decode or no face was found."""

import io
import json
import os
import shutil
import time

import numpy as np
import pytest
from tests.au_fe.conftest import TINY as BASE
from tests.au_fe.conftest import face_video
from tests.cli.helpers import invoke, json_lines, one_error

from affectkit.core.errors import DataError
from affectkit.core.output import Output, set_output
from affectkit.tasks.au_fe import data as ds

TINY = [*BASE, "--set", "model.use_tsp=false"]  # no text tower: quicker


@pytest.fixture
def stderr():
    """The output sink's stderr, as text."""
    buf = io.StringIO()
    set_output(Output(stderr=buf))
    return buf


def _copy(src, dst, **kwargs):
    """A copy of a dataset whose frames are symbolic links (fast; label files are real copies)."""
    def link_frames(a, b):
        return os.symlink(a, b) if a.endswith(".jpg") else shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link_frames, **kwargs)


def _listing(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


def _error_lines(text):
    return [line for line in text.splitlines() if line.startswith("Error:")]


def _one_error(res, *needles):
    return one_error(res.exit_code, res.stderr, *needles)


# ---- item 1: drops are reported -------------------------------------------------------------------


def test_subjects_and_clips_without_frames_are_warned_with_a_count(quick_data, tmp_path, stderr):
    from affectkit.core.config import apply_overrides
    from affectkit.tasks.au_fe import TASK
    from affectkit.tasks.au_fe.train import read_sources

    data = tmp_path / "data"
    _copy(quick_data, data)
    shutil.rmtree(data / "au" / "Sequences" / "F003")          # a whole subject
    shutil.rmtree(data / "au" / "Sequences" / "M002" / "T2")   # one sequence of a kept subject
    shutil.rmtree(data / "fe" / "Clip" / "clip_224x224" / "00007")
    subjects = len(list((quick_data / "au" / "Sequences").iterdir()))
    cfg = apply_overrides(TASK.Config(), ["data.n_frames=8"])
    full = read_sources(cfg, quick_data)
    assert "Warning" not in stderr.getvalue()  # the intact benchmark drops nothing
    src = read_sources(cfg, data)
    text = stderr.getvalue()
    assert f"Warning: BP4D: 1 of {subjects} subjects have no frames (F003); left out" in text
    assert "Warning: BP4D: 1 of " in text and "sequences have no frames (M002_T2); left out" in text
    assert "Warning: DFEW: 1 of " in text and "have no frames (00007); left out" in text
    assert not any(c.subject == "F003" for c in src.au_train + src.au_test)
    assert len(src.fe_train) + len(src.fe_test) == len(full.fe_train) + len(full.fe_test) - 1


def test_nothing_usable_left_is_an_error_naming_the_frames_folder(quick_data, tmp_path):
    data = tmp_path / "data"
    _copy(quick_data, data)
    shutil.rmtree(data / "au" / "Sequences")
    t0 = time.perf_counter()
    res = invoke("train", "au-fe", "--data", str(data), "--out", str(tmp_path / "r"), *TINY)
    _one_error(res, str(data / "au" / "Sequences"), "BP4D: none of the")
    assert time.perf_counter() - t0 < 10

    _copy(quick_data / "au", data / "au", dirs_exist_ok=True)
    for clip in (data / "fe" / "Clip" / "clip_224x224").iterdir():
        shutil.rmtree(clip)
    res = invoke("train", "au-fe", "--data", str(data), "--out", str(tmp_path / "r"), *TINY)
    _one_error(res, str(data / "fe" / "Clip" / "clip_224x224"), "DFEW: none of the")


def _img(path, value=100):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_disfa_subject_without_frames_is_warned_then_an_error(tmp_path, stderr):
    for subject in ("SN001", "SN002"):
        lab = tmp_path / "ActionUnit_Labels" / subject
        lab.mkdir(parents=True)
        for au in (1, 2):
            (lab / f"{subject}_au{au}.txt").write_text("".join(f"{i},{i % 3}\n" for i in range(1, 5)))
    for i in range(1, 4):  # SN001: 3 of its 4 frames; SN002: none
        _img(tmp_path / "LeftVideoSN001" / f"frame_{i}.jpg")
    (seq,), info = ds.load_disfa(tmp_path, [1, 2])
    assert seq.subject == "SN001" and info["missing_frames"] == 1
    text = stderr.getvalue()
    assert "Warning: DISFA: 1 of 2 subjects (Left camera frames or video) have no frames (SN002); left out" in text
    assert "Warning: DISFA: 1 of 4 labelled frames in the kept subjects have no image; left out" in text
    shutil.rmtree(tmp_path / "LeftVideoSN001")
    with pytest.raises(DataError, match="DISFA: none of the 2 subjects"):
        ds.load_disfa(tmp_path, [1, 2])


def test_ssm_manifests_missing_frames_nan_labels_and_escaping_paths(tmp_path, stderr):
    _img(tmp_path / "F01_01" / "1.jpg")
    (tmp_path / "train.txt").write_text("F01_01/1.jpg 1 0 1\nF01_01/2.jpg 0 0 1\n")
    (seq,) = ds.load_ssm_au_manifest(tmp_path / "train.txt", tmp_path, [1, 2, 4], "ssm-bp4d")
    assert len(seq.frames) == 1
    assert "Warning: train.txt: 1 of 2 listed frames do not exist (F01_01/2.jpg); left out" in stderr.getvalue()
    (tmp_path / "nan.txt").write_text("F01_01/1.jpg 1 nan 1\n")
    with pytest.raises(DataError, match=r"nan.txt: line 1: AU labels must be 0 or 1, got 'nan'"):
        ds.load_ssm_au_manifest(tmp_path / "nan.txt", tmp_path, [1, 2, 4], "ssm-bp4d")
    (tmp_path / "gone.txt").write_text("F01_01/7.jpg 1 0 1\n")
    with pytest.raises(DataError, match="none of the 1 frames listed in gone.txt exists"):
        ds.load_ssm_au_manifest(tmp_path / "gone.txt", tmp_path, [1, 2, 4], "ssm-bp4d")
    (tmp_path / "out.txt").write_text("../secret/1.jpg 1 0 1\n")
    with pytest.raises(DataError, match="out.txt: line 1: path '../secret/1.jpg' leaves the dataset root"):
        ds.load_ssm_au_manifest(tmp_path / "out.txt", tmp_path, [1, 2, 4], "ssm-bp4d")
    (tmp_path / "fe.txt").write_text("/etc 8 0\n")
    with pytest.raises(DataError, match="fe.txt: line 1: path '/etc' leaves the dataset root"):
        ds.load_ssm_fe_manifest(tmp_path / "fe.txt", tmp_path, 7)


# ---- item 3: checks before pretraining; the tower in the cache ------------------------------------


def test_bad_label_csv_fails_fast_before_pretraining_and_writes_nothing(quick_data, tmp_path):
    from affectkit.core.cache import task_cache

    data = tmp_path / "data"
    _copy(quick_data, data)
    label = data / "au" / "AUCoding" / "AU_OCC" / "F002_T1.csv"
    lines = label.read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ",nan" + "," + ",".join(lines[5].split(",")[2:])
    label.write_text("\n".join(lines) + "\n")
    before = _listing(data)
    t0 = time.perf_counter()
    res = invoke("train", "au-fe", "--data", str(data), "--out", str(tmp_path / "r"),
                 "--set", "model.vision=embedded", "--set", "data.image_size=48")
    assert time.perf_counter() - t0 < 10
    _one_error(res, "F002_T1.csv: line 6")
    assert _listing(data) == before
    assert not list(task_cache("au-fe").glob("pretrained-vision*"))  # never got as far as pretraining
    assert not (tmp_path / "r").exists()


@pytest.fixture
def small_pretraining(monkeypatch):
    """The pretraining recipe shrunk to seconds (a different cache key from the real one)."""
    from affectkit.tasks.au_fe import pretrain

    monkeypatch.setattr(pretrain, "SETTINGS", {**pretrain.SETTINGS, "width": 16, "layers": 1, "heads": 2,
                                               "steps": 8, "n_frames": 40, "batch": 4})
    return pretrain


def test_pretrained_tower_lives_in_the_cache_keyed_by_its_settings(small_pretraining, stderr, monkeypatch):
    from affectkit.core.cache import task_cache

    path = small_pretraining.ensure_pretrained_vision(image_size=16)
    assert path.parent == task_cache("au-fe") and (path / "config.json").is_file()
    assert json.loads((path / "pretraining.json").read_text())["steps"] == 8
    lines = [line for line in stderr.getvalue().splitlines() if line.startswith("pretraining the embedded")]
    # stderr is not a terminal: a handful of phase lines, not one per step
    assert 3 <= len(lines) <= 7, lines
    assert any("rendering 40 faces" in line for line in lines) and "done (8/8" in lines[-1]
    assert any(": 4/8" in line for line in lines)
    seen = stderr.getvalue()
    assert small_pretraining.ensure_pretrained_vision(image_size=16) == path
    assert stderr.getvalue() == seen  # reused, not retrained
    monkeypatch.setitem(small_pretraining.SETTINGS, "steps", 9)
    assert small_pretraining.pretrained_vision_dir(image_size=16) != path


def test_training_writes_nothing_into_the_data_directory(quick_data, tmp_path, small_pretraining):
    from affectkit.core.cache import task_cache

    before = _listing(quick_data)
    res = invoke("--json", "train", "au-fe", "--data", str(quick_data), "--out", str(tmp_path / "r"),
                 "--max-steps", "1", *TINY, "--set", "model.vision=embedded")
    assert res.exit_code == 0, res.stderr
    assert _listing(quick_data) == before
    cfg = (tmp_path / "r" / "config.yaml").read_text()
    (tower,) = task_cache("au-fe").glob("pretrained-vision-32px-*")
    assert f"vision: {tower}" in cfg
    assert "pretraining the embedded vision tower: done" in res.stderr


# ---- item 5: ranges -------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["data.au_label_fraction=1.5", "data.n_frames=0", "data.image_size=4",
                                     "optim.lr_other=-1e-3", "loss.mixup_alpha=-0.5", "loss.ramp_epochs=-1",
                                     "optim.ema_decay=2", "data.subset_seed=-1"])
def test_out_of_range_values_are_usage_errors_naming_the_key(quick_data, tmp_path, setting):
    t0 = time.perf_counter()
    res = invoke("train", "au-fe", "--data", str(quick_data), "--out", str(tmp_path / "r"), "--set", setting)
    _one_error(res, setting.split("=")[0])
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize(("settings", "key"), [(["model.moe_top_k=5"], "model.moe_top_k"),
                                               (["model.tiny_heads=3"], "model.tiny_heads"),
                                               (["model.fe_heads=5"], "model.fe_heads")])
def test_options_that_depend_on_each_other_are_checked_first(quick_data, tmp_path, settings, key):
    args = [a for s in settings for a in ("--set", s)]
    res = invoke("train", "au-fe", "--data", str(quick_data), "--out", str(tmp_path / "r"), *args)
    _one_error(res, key)


# ---- item 6: user mistakes ------------------------------------------------------------------------


def test_empty_data_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    res = invoke("train", "au-fe", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r"))
    _one_error(res, str(tmp_path / "empty"))


def test_nan_labels_and_missing_dfew_clip(quick_data, tmp_path):
    data = tmp_path / "data"
    _copy(quick_data, data)
    split = data / "fe" / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv"
    good = split.read_text()
    lines = good.splitlines()
    lines[2] = lines[2].split(",")[0] + ",NaN"
    split.write_text("\n".join(lines) + "\n")
    res = invoke("train", "au-fe", "--data", str(data), "--out", str(tmp_path / "r"), *TINY)
    _one_error(res, "set_1.csv: line 3")
    split.write_text(good + "99999,1\n")  # a clip listed in the split file with no directory
    res = invoke("train", "au-fe", "--data", str(data), "--out", str(tmp_path / "r"), *TINY,
                 "--set", "model.vision=/nowhere/clip")  # stops at the next check, after the data
    assert "Warning: DFEW: 1 of " in res.stderr and "have no frames (99999); left out" in res.stderr
    _one_error(res, "/nowhere/clip", "no config.json")


# ---- item 2: predict -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(quick_data, tmp_path_factory):
    """A one-step run of a tiny model (predict needs a config and weights, not a good model)."""
    path = tmp_path_factory.mktemp("aufe-run") / "run"
    res = invoke("train", "au-fe", "--data", str(quick_data), "--out", str(path), "--max-steps", "1", *TINY)
    assert res.exit_code == 0, res.stderr
    return path


def test_predict_on_a_truncated_video_warns_with_the_count(tiny_run, tmp_path):
    full = tmp_path / "full.avi"
    face_video(full, frames=40)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    res = invoke("--json", "predict", "au-fe", str(cut), "--run", str(tiny_run), "--checkpoint", "last")
    assert res.exit_code == 0, res.stderr
    result = json_lines(res.stdout)[-1]
    assert result["frames_expected"] == 40 and 0 < result["frames_decoded"] < 40
    assert result["frames"] == result["frames_decoded"] == sum(r["event"] == "frame" for r in json_lines(res.stdout))
    lost = 40 - result["frames_decoded"]
    message = f"{lost} of 40 frames did not decode"
    assert any(message in w for w in result["warnings"])
    assert f"Warning: {cut}: {message}" in res.stderr
    ok = invoke("--json", "predict", "au-fe", str(full), "--run", str(tiny_run), "--checkpoint", "last")
    assert json_lines(ok.stdout)[-1]["frames_decoded"] == 40
    assert "did not decode" not in ok.stderr


def test_predict_without_a_face_says_so(tiny_run, tmp_path):
    import cv2

    blank = tmp_path / "blank.avi"
    w = cv2.VideoWriter(str(blank), cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 96))
    for _ in range(12):
        w.write(np.full((96, 96, 3), 128, np.uint8))
    w.release()
    res = invoke("--json", "predict", "au-fe", str(blank), "--run", str(tiny_run), "--checkpoint", "last")
    assert res.exit_code == 0, res.stderr
    lines = json_lines(res.stdout)
    result = lines[-1]
    assert result["status"] == "no_face" and result["face_found_frames"] == 0
    assert result["expression"]["valid"] is False
    assert any("no face found in any of the 12 frames" in w for w in result["warnings"])
    assert "Warning:" in res.stderr and "no face found" in res.stderr
    assert all(r["success"] == 0 for r in lines if r["event"] == "frame")
    csv_out = invoke("predict", "au-fe", str(blank), "--run", str(tiny_run), "--checkpoint", "last", "--format", "csv")
    assert csv_out.exit_code == 0 and "Warning:" in csv_out.stderr and "no face found" in csv_out.stderr


@pytest.mark.parametrize("content", [b"just some notes\n" * 40, b"", b"\x00garbage" * 10],
                         ids=["text", "empty", "binary"])
def test_predict_on_a_file_that_is_not_a_video(tiny_run, tmp_path, content):
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(content)
    t0 = time.perf_counter()
    res = invoke("predict", "au-fe", str(bad), "--run", str(tiny_run), "--checkpoint", "last")
    _one_error(res, str(bad))
    assert time.perf_counter() - t0 < 10
