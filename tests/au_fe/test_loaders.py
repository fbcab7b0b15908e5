"""Fabricated miniature trees in each released layout parse; malformed input gives clear errors."""

import json

import numpy as np
import pytest
from PIL import Image

from affectkit.core.errors import DataError
from affectkit.tasks.au_fe import data as ds

AUS = [1, 2, 4]


def _img(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def _bp4d(root, subject="F001", task="T1", frames=range(10, 30), rows=None, skip_images=()):
    d = root / "AUCoding" / "AU_OCC"
    d.mkdir(parents=True, exist_ok=True)
    lines = ["0,1,2,3,4"]
    for f in frames:
        lines.append(rows(f) if rows else f"{f},1,0,0,{1 if f % 2 else 9}")
        if f not in skip_images:
            _img(root / "Sequences" / subject / task / f"{f:04d}.jpg")
    (d / f"{subject}_{task}.csv").write_text("\n".join(lines) + "\n")


def test_bp4d_parses_not_coded_as_masked(tmp_path):
    _bp4d(tmp_path)
    seqs, info = ds.load_bp4d(tmp_path, AUS)
    (s,) = seqs
    assert s.subject == "F001" and s.frame_ids.tolist() == list(range(10, 30))
    assert s.labels[:, 0].tolist() == [1.0] * 20
    assert s.mask[:, 2].tolist() == [0.0 if f % 2 == 0 else 1.0 for f in range(10, 30)]
    assert s.labels[s.mask[:, 2] == 0, 2].sum() == 0  # 9 never becomes a positive
    assert info["not_coded_entries"] == 10


def test_au_clips_never_cross_a_gap(tmp_path):
    frames = list(range(1, 21)) + list(range(25, 45))  # a gap after frame 20
    _bp4d(tmp_path, frames=frames, skip_images={30})  # and a missing image at 30
    seqs, info = ds.load_bp4d(tmp_path, AUS)
    assert info["missing_frames"] == 1
    clips = ds.au_clips(seqs, length=8)
    for c in clips:
        ids = [int(p.stem) for p in c.frames]
        assert ids == list(range(ids[0], ids[0] + 8))
    # segments: 1-20 (2 clips), 25-29 (0 clips), 31-44 (1 clip)
    assert len(clips) == 3


def test_bp4d_bad_values_and_missing_columns(tmp_path):
    _bp4d(tmp_path, rows=lambda f: f"{f},1,0,0,5")
    with pytest.raises(DataError, match=r"F001_T1.csv: line 2: AU occurrence must be 0, 1 or 9"):
        ds.load_bp4d(tmp_path, AUS)
    with pytest.raises(DataError, match="no column for AU 24"):
        ds.load_bp4d(tmp_path, [1, 24])
    with pytest.raises(DataError, match="AU_OCC"):
        ds.load_bp4d(tmp_path / "nowhere", AUS)


def test_bp4d_folds_are_subject_exclusive(tmp_path):
    for subj in ("F001", "F003", "M003"):
        _bp4d(tmp_path, subject=subj)
    seqs, _ = ds.load_bp4d(tmp_path, AUS)
    train, test = ds.split_au(seqs, 1, "bp4d", tmp_path)
    assert {s.subject for s in test} == {"F001"}
    assert {s.subject for s in train} == {"F003", "M003"}
    train3, test3 = ds.split_au(seqs, 3, "bp4d", tmp_path)
    assert {s.subject for s in test3} == {"M003"}


def test_disfa_intensity_threshold_and_frames(tmp_path):
    lab = tmp_path / "ActionUnit_Labels" / "SN001"
    lab.mkdir(parents=True)
    for au, vals in {1: [0, 1, 2, 3], 2: [5, 0, 0, 2], 4: [0, 0, 0, 0]}.items():
        (lab / f"SN001_au{au}.txt").write_text("".join(f"{i + 1},{v}\n" for i, v in enumerate(vals)))
    for i in range(1, 5):
        _img(tmp_path / "LeftVideoSN001" / f"frame_{i}.jpg")
    (s,), _ = ds.load_disfa(tmp_path, AUS)
    assert s.labels[:, 0].tolist() == [0, 0, 1, 1] and s.labels[:, 1].tolist() == [1, 0, 0, 1]
    (lab / "SN001_au4.txt").write_text("1,7\n")
    with pytest.raises(DataError, match="SN001_au4.txt: line 1: intensity must be 0-5"):
        ds.load_disfa(tmp_path, AUS)


def test_disfa_reads_video_frames(tmp_path):
    import cv2

    lab = tmp_path / "ActionUnit_Labels" / "SN002"
    lab.mkdir(parents=True)
    for au in AUS:
        (lab / f"SN002_au{au}.txt").write_text("".join(f"{i},{2 if i == 3 else 0}\n" for i in range(1, 6)))
    video = tmp_path / "Videos_LeftCamera" / "LeftVideoSN002_comp.avi"
    video.parent.mkdir(parents=True)
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20, (16, 16))
    for i in range(5):
        w.write(np.full((16, 16, 3), 40 * i, np.uint8))
    w.release()
    (s,), _ = ds.load_disfa(tmp_path, AUS)
    from affectkit.tasks.au_fe.clips import FrameReader

    frame = FrameReader().read(s.frames[2])
    assert frame.shape == (16, 16, 3) and abs(int(frame.mean()) - 80) < 6
    video.write_bytes(b"not a video")
    with pytest.raises(DataError, match="cannot open video"):
        FrameReader().read(s.frames[0])


def test_ssm_manifests(tmp_path):
    _img(tmp_path / "F01_01" / "1.jpg")
    _img(tmp_path / "F01_01" / "2.jpg")
    (tmp_path / "train.txt").write_text("F01_01/1.jpg 1 0 1\nF01_01/2.jpg 0 0 1\n")
    (seq,) = ds.load_ssm_au_manifest(tmp_path / "train.txt", tmp_path, AUS, "ssm-bp4d")
    assert seq.labels.tolist() == [[1, 0, 1], [0, 0, 1]] and seq.subject == "F01"
    (tmp_path / "bad.txt").write_text("F01_01/1.jpg 1 0\n")
    with pytest.raises(DataError, match="expected a path and 3 labels"):
        ds.load_ssm_au_manifest(tmp_path / "bad.txt", tmp_path, AUS, "ssm-bp4d")
    (tmp_path / "d.jsonl").write_text(json.dumps({"img_path": "F01_01/1.jpg", "AUs": [2, 999, 999]}) + "\n")
    (seq,) = ds.load_ssm_au_manifest(tmp_path / "d.jsonl", tmp_path, AUS, "ssm-disfa")
    assert seq.labels.tolist() == [[0, 1, 0]]


EXPR = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]


def test_dfew_split_files_and_errors(tmp_path):
    split = tmp_path / "EmoLabel_DataSplit" / "train(single-labeled)"
    split.mkdir(parents=True)
    (split / "set_1.csv").write_text("video_name,label\n1,1\n2,7\n3,3\n")
    for vid in ("00001", "00002"):
        for k in range(3):
            _img(tmp_path / "Clip" / "clip_224x224" / vid / f"{vid}_{k}.jpg")
    clips, problems = ds.load_dfew(tmp_path, 1, "train", EXPR)
    assert [(c.clip_id, c.label) for c in clips] == [("00001", 0), ("00002", 6)]
    assert problems["missing_clips"] == 1  # clip 3 has no frames: counted, not fatal
    (split / "set_1.csv").write_text("video_name,label\n1,nan\n")
    with pytest.raises(DataError, match="set_1.csv: line 2: label 'nan' is not a number"):
        ds.load_dfew(tmp_path, 1, "train", EXPR)
    (split / "set_1.csv").write_text("video_name,label\n1,9\n")
    with pytest.raises(DataError, match="set_1.csv: line 2: label must be 1-7"):
        ds.load_dfew(tmp_path, 1, "train", EXPR)
    (split / "set_1.csv").write_text("name,emotion\n1,1\n")
    with pytest.raises(DataError, match="expected columns video_name,label"):
        ds.load_dfew(tmp_path, 1, "train", EXPR)


def test_ferv39k_and_mafw(tmp_path):
    setup = tmp_path / "4_setups" / "All_scenes"
    setup.mkdir(parents=True)
    (setup / "train_All.csv").write_text("Action/Sad/0010 Sad\nAction/Happy/0003 Happy\n")
    for rel in ("Action/Sad/0010", "Action/Happy/0003"):
        _img(tmp_path / "2_ClipsforFaceCrop" / rel / "1.jpg")
    clips, _ = ds.load_ferv39k(tmp_path, "train", EXPR)
    assert [c.label for c in clips] == [1, 0]
    mafw = tmp_path / "mafw"
    s = mafw / "Train & Test Set" / "single" / "no_caption" / "set_1"
    s.mkdir(parents=True)
    (s / "train.txt").write_text("00025.mp4 contempt\n00026.mp4 4\n")
    for c in ("00025", "00026"):
        _img(mafw / "data" / "frames" / c / "1.jpg")
    mafw11 = EXPR + ["contempt", "anxiety", "helplessness", "disappointment"]
    clips, _ = ds.load_mafw(mafw, 1, "train", mafw11)
    assert [c.label for c in clips] == [7, 0]  # official index 4 = happiness


def test_tsn_sampling():
    assert ds.tsn_indices(40, 16, train=False) == [int(1.25 + 2.5 * k) for k in range(16)]
    assert ds.tsn_indices(10, 16, train=False) == list(range(10)) + [9] * 6
    idx = ds.tsn_indices(64, 16, train=True, rng=np.random.default_rng(0))
    assert all(4 * k <= i < 4 * (k + 1) for k, i in enumerate(idx))


def test_labelled_subset_is_seeded_and_stratified():
    labels = [0] * 50 + [1] * 30 + [2] * 3
    a = ds.labelled_subset(83, 0.1, 3, labels)
    assert a == ds.labelled_subset(83, 0.1, 3, labels)
    assert {labels[i] for i in a} == {0, 1, 2}
