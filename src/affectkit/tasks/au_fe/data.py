"""Readers for the released AU and dynamic-FE dataset layouts, and the clip builders.

AU sources (frame labels) -> ``AUSequence``s -> 16-frame clips that never cross a gap:
- BP4D: ``AUCoding/AU_OCC/<Subj>_<Task>.csv`` (header row; first column the frame number; one
  column per AU; 0/1, 9 = not coded) and frames ``Sequences/<Subj>/<Task>/<frame>.jpg``.
- DISFA: ``ActionUnit_Labels/SN001/SN001_au<k>.txt`` (lines ``frame,intensity``, active iff
  intensity >= 2) with frames ``<Left|Right>VideoSN001/frame_<n>.jpg`` (SSM's extraction) or the
  video ``Videos_LeftCamera/LeftVideoSN001_comp.avi``.
- SSM manifests: ``train.txt``/``test.txt`` lines ``<seq>/<frame>.jpg b1 .. bA`` (BP4D) or JSON lines
  ``{"img_path": ..., "AUs": [...]}`` padded with 999 (DISFA), paths relative to the root.
FE sources (clip labels) -> ``FEClip``s:
- DFEW: ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_<k>.csv`` (video_name,label; 1 happy,
  2 sad, 3 neutral, 4 angry, 5 surprise, 6 disgust, 7 fear) and ``Clip/clip_224x224/<00001>/*.jpg``.
- FERV39K: ``4_setups/All_scenes/{train,test}_All.csv`` (``Scene/Emotion/id Emotion``) with frames
  under ``2_ClipsforFaceCrop/<Scene>/<Emotion>/<id>/``.
- MAFW: ``Train & Test Set/single/no_caption/set_<k>/{train,test}.txt`` (``clip label``) with frames
  under ``data/frames/<clip>/``; labels by name or 1-based official index (anger, disgust, fear,
  happiness, neutral, sadness, surprise, contempt, anxiety, helplessness, disappointment).
- SSM / DFER-CLIP manifests: ``train.txt``/``test.txt`` lines ``frame_dir n_frames label0``.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectkit.core.errors import DataError
from affectkit.core.output import get_output

# Subject-exclusive test folds (SSM's split manifests = JAA-Net / ME-GraphAU partitions).
BP4D_FOLDS = {
    1: ["F01", "F02", "F08", "F09", "F10", "F16", "F18", "F23", "M01", "M04", "M07", "M08", "M12", "M14"],
    2: ["F03", "F05", "F11", "F13", "F20", "F22", "M02", "M05", "M10", "M11", "M13", "M16", "M17", "M18"],
    3: ["F04", "F06", "F07", "F12", "F14", "F15", "F17", "F19", "F21", "M03", "M06", "M09", "M15"],
}
DISFA_FOLDS = {
    1: ["SN001", "SN002", "SN009", "SN010", "SN016", "SN026", "SN027", "SN030", "SN032"],
    2: ["SN006", "SN011", "SN012", "SN013", "SN018", "SN021", "SN024", "SN028", "SN031"],
    3: ["SN003", "SN004", "SN005", "SN007", "SN008", "SN017", "SN023", "SN025", "SN029"],
}
DFEW_LABELS = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]  # official 1..7
FERV39K_NAMES = {"Happy": "happiness", "Sad": "sadness", "Neutral": "neutral", "Angry": "anger",
                 "Surprise": "surprise", "Disgust": "disgust", "Fear": "fear"}
MAFW_OFFICIAL = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt",
                 "anxiety", "helplessness", "disappointment"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class AUSequence:
    subject: str
    name: str
    frame_ids: np.ndarray        # [N] frame numbers
    frames: list                 # [N] image paths, or (video path, frame index) pairs
    labels: np.ndarray           # [N, A] 0/1
    mask: np.ndarray             # [N, A] 1 = coded


@dataclass
class AUClip:
    sequence: str
    subject: str
    frames: list
    labels: np.ndarray           # [T, A]
    mask: np.ndarray             # [T, A]


@dataclass
class FEClip:
    clip_id: str
    frames: list
    label: int


# ---- AU sources ---------------------------------------------------------------------------------


def bp4d_subject_key(subject: str) -> str:
    """F001 -> F01 (the fold lists' spelling)."""
    m = re.fullmatch(r"([FM])0*(\d+)", subject)
    return f"{m.group(1)}{int(m.group(2)):02d}" if m else subject


def _frame_index(directory: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    if not directory.is_dir():
        return found
    for p in directory.iterdir():
        if p.suffix.lower() in IMAGE_SUFFIXES:
            digits = re.findall(r"\d+", p.stem)
            if digits:
                found[int(digits[-1])] = p
    return found


def _listing(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def report_dropped(dataset: str, unit: str, dropped: list[str], total: int, where: Path) -> None:
    """Say that ``dropped`` of ``total`` ``unit`` have no frames and are left out: a stderr warning with the
    count and the first names; when none is left, a DataError naming ``where`` (the frames' folder)."""
    if not dropped:
        return
    if len(dropped) >= total:
        raise DataError(where, f"{dataset}: none of the {total} {unit} has frames ({_listing(dropped)} missing)",
                        "check the dataset root and its frame folders")
    get_output().warn(f"{dataset}: {len(dropped)} of {total} {unit} have no frames ({_listing(dropped)}); left out")


def load_bp4d(root: Path, aus: list[int]) -> tuple[list[AUSequence], dict]:
    label_dir = root / "AUCoding" / "AU_OCC"
    if not label_dir.is_dir():
        raise DataError(label_dir, "BP4D label folder not found (expected AUCoding/AU_OCC/<Subj>_<Task>.csv)")
    files = sorted(label_dir.glob("*.csv"))
    if not files:
        raise DataError(label_dir, "no <Subj>_<Task>.csv label files")
    sequences, missing_frames, not_coded, labelled, gaps = [], 0, 0, 0, 0
    subjects: dict[str, int] = {}  # subject -> sequences kept
    empty: list[str] = []          # sequences with no frame at all
    for path in files:
        subject, _, task = path.stem.partition("_")
        if not task:
            raise DataError(path, "file name is not <Subject>_<Task>.csv")
        rows = list(csv.reader(path.open(newline="", encoding="utf-8-sig")))
        if len(rows) < 2:
            raise DataError(path, "no label rows")
        header = rows[0]
        try:
            au_cols = {int(float(h)): i for i, h in enumerate(header) if i > 0 and h.strip()}
        except ValueError:
            raise DataError(path, f"header must list AU numbers after the frame column, got {header[:5]}...") from None
        absent = [a for a in aus if a not in au_cols]
        if absent:
            raise DataError(path, f"no column for AU {', '.join(map(str, absent))}")
        frames_dir = root / "Sequences" / subject / task
        index = _frame_index(frames_dir)
        subjects.setdefault(subject, 0)
        ids, paths, labels, masks, coded = [], [], [], [], 0
        for lineno, row in enumerate(rows[1:], start=2):
            if not row or not row[0].strip():
                continue
            try:
                frame = int(float(row[0]))
                values = [int(float(row[au_cols[a]])) for a in aus]
            except (ValueError, IndexError):
                raise DataError(path, f"line {lineno}: expected numbers, got {row[:6]}...") from None
            bad = [v for v in values if v not in (0, 1, 9)]
            if bad:
                raise DataError(path, f"line {lineno}: AU occurrence must be 0, 1 or 9 (not coded), got {bad[0]}")
            coded += 1
            if frame not in index:
                missing_frames += 1
                continue
            vals = np.asarray(values)
            not_coded += int((vals == 9).sum())
            ids.append(frame)
            paths.append(index[frame])
            labels.append(np.where(vals == 1, 1, 0))
            masks.append(np.where(vals == 9, 0, 1))
        if ids:
            order = np.argsort(ids)
            sequences.append(AUSequence(subject, f"{subject}_{task}", np.asarray(ids)[order], [paths[i] for i in order],
                                        np.asarray(labels, np.float32)[order], np.asarray(masks, np.float32)[order]))
            subjects[subject] += 1
            labelled += coded
            gaps += coded - len(ids)
        else:
            empty.append(f"{subject}_{task}")
    frames_root = root / "Sequences"
    gone = [s for s, kept in subjects.items() if not kept]
    report_dropped("BP4D", "subjects", gone, len(subjects), frames_root)
    partial = [name for name in empty if name.partition("_")[0] not in gone]
    of_kept = sum(1 for p in files if p.stem.partition("_")[0] not in gone)
    report_dropped("BP4D", "sequences", partial, of_kept, frames_root)
    if gaps:
        get_output().warn(f"BP4D: {gaps} of {labelled} labelled frames in the kept sequences have no image; left out")
    return sequences, {"sequences": len(sequences), "missing_frames": missing_frames, "not_coded_entries": not_coded}


def load_disfa(root: Path, aus: list[int], threshold: int = 2, camera: str = "Left") -> tuple[list[AUSequence], dict]:
    label_root = root / "ActionUnit_Labels"
    if not label_root.is_dir():
        raise DataError(label_root, "DISFA label folder not found (expected ActionUnit_Labels/SN001/SN001_au1.txt)")
    sequences, missing, labelled, gone = [], 0, 0, []
    subject_dirs = sorted(p for p in label_root.iterdir() if p.is_dir())
    if not subject_dirs:
        raise DataError(label_root, "no subject folders with labels")
    for subj_dir in subject_dirs:
        subject = subj_dir.name
        per_au: dict[int, dict[int, int]] = {}
        for au in aus:
            path = subj_dir / f"{subject}_au{au}.txt"
            if not path.is_file():
                raise DataError(path, f"label file for AU {au} not found")
            values: dict[int, int] = {}
            for lineno, line in enumerate(path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                parts = line.replace(" ", "").split(",")
                try:
                    frame, intensity = int(parts[0]), int(float(parts[1]))
                except (ValueError, IndexError):
                    raise DataError(path, f"line {lineno}: expected 'frame,intensity', got {line!r}") from None
                if not 0 <= intensity <= 5:
                    raise DataError(path, f"line {lineno}: intensity must be 0-5, got {intensity}")
                values[frame] = intensity
            per_au[au] = values
        frame_ids = sorted(set.intersection(*(set(v) for v in per_au.values())))
        frames_dir = root / f"{camera}Video{subject}"
        index = _frame_index(frames_dir)
        video = root / f"Videos_{camera}Camera" / f"{camera}Video{subject}_comp.avi"
        ids, refs = [], []
        if not index and not video.is_file():
            gone.append(subject)  # neither frames nor the video
            continue
        for f in frame_ids:
            if index:
                if f not in index:
                    continue
                refs.append(index[f])
            else:
                refs.append((video, f - 1))  # label frames are 1-based
            ids.append(f)
        if not ids:
            gone.append(subject)
            continue
        labelled += len(frame_ids)
        missing += len(frame_ids) - len(ids)
        labels = np.asarray([[1.0 if per_au[a][f] >= threshold else 0.0 for a in aus] for f in ids], np.float32)
        sequences.append(AUSequence(subject, subject, np.asarray(ids), refs, labels, np.ones_like(labels)))
    report_dropped("DISFA", f"subjects ({camera} camera frames or video)", gone, len(subject_dirs), root)
    if missing:
        get_output().warn(f"DISFA: {missing} of {labelled} labelled frames in the kept subjects have no image; left out")
    return sequences, {"sequences": len(sequences), "missing_frames": missing}


def inside_root(rel: str, source: Path, lineno: int) -> Path:
    """A path read from a dataset file, refused unless it is relative and stays inside the dataset root."""
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise DataError(source, f"line {lineno}: path {rel!r} leaves the dataset root",
                        "paths in the dataset's files are relative to its root, without '..'")
    return p


def load_ssm_au_manifest(path: Path, root: Path, aus: list[int], kind: str) -> list[AUSequence]:
    """SSM's BP4D text manifests or DISFA JSON-lines manifests, grouped into sequences by folder."""
    if not path.is_file():
        raise DataError(path, "manifest not found")
    groups: dict[str, list[tuple[int, Path, np.ndarray]]] = {}
    absent: list[str] = []
    listed = 0
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        if kind == "ssm-disfa":
            try:
                rec = json.loads(line)
                rel, active = rec["img_path"], {int(a) for a in rec["AUs"] if int(a) != 999}
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise DataError(path, f"line {lineno}: expected {{\"img_path\": ..., \"AUs\": [...]}}") from None
            label = np.asarray([1.0 if a in active else 0.0 for a in aus], np.float32)
        else:
            parts = line.split()
            if len(parts) != 1 + len(aus):
                raise DataError(path, f"line {lineno}: expected a path and {len(aus)} labels, got {len(parts) - 1}")
            rel = parts[0]
            try:
                label = np.asarray([float(x) for x in parts[1:]], np.float32)
            except ValueError:
                raise DataError(path, f"line {lineno}: labels must be numbers") from None
            bad = [x for x, v in zip(parts[1:], label, strict=True) if v not in (0.0, 1.0)]
            if bad:
                raise DataError(path, f"line {lineno}: AU labels must be 0 or 1, got {bad[0]!r}")
        p = inside_root(rel, path, lineno)
        digits = re.findall(r"\d+", p.stem)
        if not digits:
            raise DataError(path, f"line {lineno}: no frame number in {rel!r}")
        if not (root / p).is_file():
            absent.append(rel)
            continue
        groups.setdefault(str(p.parent), []).append((int(digits[-1]), root / p, label))
        listed += 1
    if absent:
        listed += len(absent)
        if not groups:
            raise DataError(root, f"none of the {listed} frames listed in {path.name} exists "
                                  f"({_listing(absent)} missing)", "paths in the manifest are relative to the dataset root")
        get_output().warn(f"{path.name}: {len(absent)} of {listed} listed frames do not exist ({_listing(absent)}); left out")
    sequences = []
    for name, items in sorted(groups.items()):
        items.sort(key=lambda x: x[0])
        labels = np.stack([x[2] for x in items])
        subject = re.sub(r"^(?:.*?)([FM]\d+|SN\d+).*$", r"\1", Path(name).name)
        sequences.append(AUSequence(subject, name, np.asarray([x[0] for x in items]), [x[1] for x in items],
                                    labels, np.ones_like(labels)))
    return sequences


def au_clips(sequences: list[AUSequence], length: int = 16) -> list[AUClip]:
    """Non-overlapping windows of ``length`` consecutive frames (stride = length); a window never
    crosses a gap in the frame numbers; a short tail is dropped."""
    clips = []
    for seq in sequences:
        breaks = np.flatnonzero(np.diff(seq.frame_ids) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(seq.frame_ids)], strict=True):
            for s in range(lo, hi - length + 1, length):
                clips.append(AUClip(seq.name, seq.subject, seq.frames[s : s + length],
                                    seq.labels[s : s + length], seq.mask[s : s + length]))
    return clips


def split_au(sequences: list[AUSequence], fold: int, dataset: str, root: Path) -> tuple[list[AUSequence], list[AUSequence]]:
    """Subject-exclusive split: ``folds.json`` in the root if present, else the official partition."""
    custom = root / "folds.json"
    if custom.is_file():
        try:
            folds = {int(k): v for k, v in json.loads(custom.read_text()).items()}
        except (json.JSONDecodeError, ValueError):
            raise DataError(custom, "expected {\"1\": [test subjects], ...}") from None
        key = str
    else:
        folds = BP4D_FOLDS if dataset == "bp4d" else DISFA_FOLDS
        key = bp4d_subject_key if dataset == "bp4d" else str
    if fold not in folds:
        raise DataError(custom if custom.is_file() else root, f"no fold {fold} (folds: {sorted(folds)})")
    test = set(folds[fold])
    train_seqs = [s for s in sequences if key(s.subject) not in test]
    test_seqs = [s for s in sequences if key(s.subject) in test]
    if not test_seqs:
        raise DataError(root, f"fold {fold}: none of its test subjects is in the data")
    return train_seqs, test_seqs


# ---- FE sources ---------------------------------------------------------------------------------


def _frames_of(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _fe_clip(clip_id: str, frame_dir: Path, label: int, source: Path, problems: dict) -> FEClip | None:
    problems["listed"] = problems.get("listed", 0) + 1
    frames = _frames_of(frame_dir)
    if not frames:
        problems["missing_clips"] = problems.get("missing_clips", 0) + 1
        problems.setdefault("missing", []).append(clip_id)
        return None
    return FEClip(clip_id, frames, label)


def _report_clips(dataset: str, source: Path, frames_root: Path, problems: dict) -> dict:
    """Warn about the clips of ``source`` that have no frames (a DataError naming ``frames_root`` when
    none has); the counts stay in the returned problems, the names do not."""
    missing = problems.pop("missing", [])
    report_dropped(dataset, f"clips listed in {source.parent.name}/{source.name}", missing,
                   problems.pop("listed", 0), frames_root)
    return problems


def load_dfew(root: Path, fold: int, split: str, expressions: list[str]) -> tuple[list[FEClip], dict]:
    path = root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{fold}.csv"
    if not path.is_file():
        raise DataError(path, "DFEW split file not found")
    problems: dict = {}
    clips = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"video_name", "label"} <= set(reader.fieldnames):
            raise DataError(path, f"expected columns video_name,label, got {reader.fieldnames}")
        for lineno, row in enumerate(reader, start=2):
            try:
                official = int(float(row["label"]))
            except (TypeError, ValueError):
                raise DataError(path, f"line {lineno}: label {row['label']!r} is not a number") from None
            if not 1 <= official <= 7:
                raise DataError(path, f"line {lineno}: label must be 1-7, got {official}")
            name = DFEW_LABELS[official - 1]
            if name not in expressions:
                continue
            vid = (row["video_name"] or "").strip()
            vid = f"{int(vid):05d}" if vid.isdigit() else str(inside_root(vid, path, lineno))
            clip = _fe_clip(vid, root / "Clip" / "clip_224x224" / vid, expressions.index(name), path, problems)
            if clip:
                clips.append(clip)
    return clips, _report_clips("DFEW", path, root / "Clip" / "clip_224x224", problems)


def load_ferv39k(root: Path, split: str, expressions: list[str]) -> tuple[list[FEClip], dict]:
    path = root / "4_setups" / "All_scenes" / f"{split}_All.csv"
    if not path.is_file():
        raise DataError(path, "FERV39K split file not found")
    frames_root = root / "2_ClipsforFaceCrop" if (root / "2_ClipsforFaceCrop").is_dir() else root
    problems: dict = {}
    clips = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 2 or parts[1] not in FERV39K_NAMES:
            raise DataError(path, f"line {lineno}: expected 'Scene/Emotion/id Emotion', got {line!r}")
        name = FERV39K_NAMES[parts[1]]
        if name in expressions:
            rel = inside_root(parts[0], path, lineno)
            clip = _fe_clip(parts[0], frames_root / rel, expressions.index(name), path, problems)
            if clip:
                clips.append(clip)
    return clips, _report_clips("FERV39K", path, frames_root, problems)


def _fields(path: Path, n: int, expected: str, what: str):
    """(line number, fields) of a whitespace-separated file with ``n`` fields per non-empty line."""
    if not path.is_file():
        raise DataError(path, f"{what} not found")
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != n:
            raise DataError(path, f"line {lineno}: expected '{expected}', got {line!r}")
        yield lineno, parts


def load_mafw(root: Path, fold: int, split: str, expressions: list[str]) -> tuple[list[FEClip], dict]:
    path = root / "Train & Test Set" / "single" / "no_caption" / f"set_{fold}" / f"{split}.txt"
    problems: dict = {}
    clips = []
    for lineno, parts in _fields(path, 2, "clip label", "MAFW split file"):
        label = parts[1].lower()
        name = MAFW_OFFICIAL[int(label) - 1] if label.isdigit() and 1 <= int(label) <= 11 else label
        if name not in MAFW_OFFICIAL:
            raise DataError(path, f"line {lineno}: unknown MAFW label {parts[1]!r}")
        if name in expressions:
            clip_id = inside_root(parts[0], path, lineno).stem
            clip = _fe_clip(clip_id, root / "data" / "frames" / clip_id, expressions.index(name), path, problems)
            if clip:
                clips.append(clip)
    return clips, _report_clips("MAFW", path, root / "data" / "frames", problems)


def load_ssm_fe_manifest(path: Path, root: Path, n_classes: int) -> tuple[list[FEClip], dict]:
    problems: dict = {}
    clips = []
    for lineno, parts in _fields(path, 3, "frame_dir n_frames label", "manifest"):
        try:
            label = int(parts[2])
        except ValueError:
            raise DataError(path, f"line {lineno}: label {parts[2]!r} is not an integer") from None
        if not 0 <= label < n_classes:
            raise DataError(path, f"line {lineno}: label must be 0-{n_classes - 1}, got {label}")
        clip = _fe_clip(parts[0], root / inside_root(parts[0], path, lineno), label, path, problems)
        if clip:
            clips.append(clip)
    return clips, _report_clips("manifest", path, root, problems)


# ---- sampling -----------------------------------------------------------------------------------


def tsn_indices(n_frames: int, segments: int, train: bool, rng: np.random.Generator | None = None) -> list[int]:
    """TSN sampling: one frame per equal segment (random in training, the segment centre in
    evaluation); clips with <= ``segments`` frames use all frames and repeat the last one."""
    if n_frames <= segments:
        return list(range(n_frames)) + [n_frames - 1] * (segments - n_frames)
    tick = n_frames / segments
    if train:
        rng = rng or np.random.default_rng()
        return [min(n_frames - 1, int(tick * k + rng.random() * tick)) for k in range(segments)]
    return [int(tick / 2 + tick * k) for k in range(segments)]


def labelled_subset(n: int, fraction: float, seed: int, labels: list[int] | None = None) -> list[int]:
    """A seeded subset of ``fraction`` of the indices (stratified by label when given; at least one
    per class present)."""
    if fraction >= 1.0:
        return list(range(n))
    rng = np.random.default_rng([seed, 7])
    if labels is None:
        k = max(1, int(round(fraction * n)))
        return sorted(rng.permutation(n)[:k].tolist())
    chosen = []
    labels_arr = np.asarray(labels)
    for c in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == c)
        k = max(1, int(round(fraction * len(idx))))
        chosen.extend(rng.permutation(idx)[:k].tolist())
    return sorted(chosen)
