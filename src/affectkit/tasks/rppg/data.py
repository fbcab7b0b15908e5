"""Loaders for the public rPPG datasets in their released on-disk layouts (spec §3.3) and their
standard train/valid/test splits (spec §2.7).

Every loader returns :class:`Recording` objects whose frames are read lazily through a
:class:`~affectkit.tasks.rppg.frames.FrameSource`; loading a dataset reads only the ground-truth files
and the video containers' headers. The reference pulse ``bvp`` always has one value per video frame.

Layouts (``root`` is the folder the user points at):

- ``ubfc-rppg``: ``subject<N>/vid.avi`` + ``ground_truth.txt`` (DATASET_2: three whitespace-separated
  rows PPG, HR bpm, time s; one value per frame) or ``gtdump.xmp`` (DATASET_1: CSV rows
  ``timestamp_ms, hr, spo2, ppg``, resampled by length to the frame count).
- ``pure``: ``<SS-TT>/<SS-TT>/Image<timestamp_ns>.png`` + ``<SS-TT>/<SS-TT>.json`` (``"/FullPackage"``
  pulse-oximeter samples, ``"/Image"`` frame timestamps).
- ``cohface``: ``<subject>/<session>/data.avi`` + ``data.hdf5`` (``pulse`` at 256 Hz, ``time``); needs h5py.
- ``mmpd``: ``subject<N>/p<N>_<k>.mat`` (``video`` T x H x W x 3, ``GT_ppg``, metadata), 30 fps.
- ``vipl-hr``: ``p<i>/v<j>/source<k>/video.avi`` + ``wave.csv`` + ``gt_HR.csv`` + ``time.txt`` (sources 1-3;
  the NIR ``source4`` is skipped).

Subjects are named as on disk: the subject folder's name (``subject38``, ``p12``, ``7``), for PURE the
``SS`` of ``SS-TT`` (``01``).

Ground truth that is one sample longer or shorter than the video (a common off-by-one in these
releases) is trimmed, or padded by repeating its last value; a larger mismatch is a DataError naming
the ground-truth file and both numbers.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError, require_dir
from affectkit.tasks.rppg.frames import FrameSource, open_array, open_images, open_video

DATASETS = ("ubfc-rppg", "pure", "cohface", "mmpd", "vipl-hr")

_ALIASES = {
    "ubfc": "ubfc-rppg",
    "ubfc_rppg": "ubfc-rppg",
    "ubfcrppg": "ubfc-rppg",
    "vipl": "vipl-hr",
    "vipl_hr": "vipl-hr",
    "viplhr": "vipl-hr",
}

MMPD_FPS = 30.0
MMPD_META_KEYS = ("light", "motion", "exercise", "skin_color", "gender", "glasser", "hair_cover", "makeup")
SPLITS = ("train", "valid", "test")
SPLITS_FILE = "splits.csv"


@dataclass
class Recording:
    """One video with its reference pulse.

    ``bvp``: float64, one value per video frame. ``hr``: per-frame reference heart rate (bpm) when the
    dataset ships one, else None. ``meta``: at least ``dataset``, ``root`` and ``path``, plus
    dataset-specific fields (PURE ``setup``, MMPD metadata, VIPL ``scenario``/``source``, ...)."""

    id: str
    subject: str
    source: FrameSource
    bvp: np.ndarray
    hr: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        """Frame rate of the video (Hz)."""
        return self.source.fps


# --------------------------------------------------------------------------------------------------
# small helpers


def canonical_name(name: str) -> str:
    """Map a dataset name or alias (``ubfc``, ``VIPL``) to one of :data:`DATASETS`; UsageError if unknown."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise UsageError(f"unknown rPPG dataset {name!r}", f"choose one of: {', '.join(DATASETS)}")
    return key


def _subject_number(subject: str) -> int | None:
    """The first integer in a subject name (``subject38`` -> 38, ``p7`` -> 7, ``01`` -> 1), else None."""
    m = re.search(r"\d+", subject)
    return int(m.group()) if m else None


def _number_or_fail(subject: str, name: str) -> int:
    """Like :func:`_subject_number` but a DataError when the subject name carries no number."""
    n = _subject_number(subject)
    if n is None:
        raise DataError(
            None,
            f"{name}: cannot read a subject number from {subject!r}",
            f"write {SPLITS_FILE} (columns subject,split) in the dataset root",
        )
    return n


def _check_values(x: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Return ``x`` as float64 or raise DataError when it is empty or holds NaN/inf."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        raise DataError(path, f"{what} is empty")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise DataError(path, f"{what} has {bad.size} NaN or infinite value(s), first at index {int(bad[0])}")
    return x


def _parse_float(text: str, path: Path, where: str) -> float:
    """Parse one number or raise DataError naming the file and the position."""
    try:
        return float(text)
    except ValueError:
        raise DataError(path, f"non-numeric value {text.strip()!r} at {where}") from None


def _align(x: np.ndarray, n: int, path: Path, what: str, video: str) -> np.ndarray:
    """Fit ``x`` to ``n`` frames: equal -> as is; off by one -> trim, or pad by repeating the edge;
    more -> DataError naming ``path`` with both lengths. ``n <= 0`` (unknown count) keeps ``x``."""
    if n <= 0 or len(x) == n:
        return x
    if abs(len(x) - n) > 1:
        raise DataError(
            path,
            f"{what} has {len(x)} samples but {video} has {n} frames",
            "the ground truth must hold one value per video frame",
        )
    return x[:n] if len(x) > n else np.append(x, x[-1])


def _resample(x: np.ndarray, n: int) -> np.ndarray:
    """Linearly resample ``x`` by length to ``n`` samples (first and last samples kept)."""
    if len(x) == n:
        return x.astype(np.float64)
    if len(x) == 1:
        return np.full(n, float(x[0]))
    return np.interp(np.linspace(0.0, len(x) - 1.0, n), np.arange(len(x), dtype=np.float64), x)


def _read_text(path: Path, what: str) -> str:
    """Read a text file, DataError naming it (``what`` missing) when absent or unreadable."""
    if not path.is_file():
        raise DataError(path, f"{what} not found")
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DataError(path, f"cannot read {what} ({e.strerror})") from None


def _frame_count(source: FrameSource, path: Path) -> int:
    """The container's declared frame count; DataError when it declares none."""
    if source.n_frames <= 0:
        raise DataError(path, "the video declares no frame count, so the ground truth cannot be aligned")
    return source.n_frames


def _base_meta(name: str, root: Path, path: Path) -> dict:
    return {"dataset": name, "root": str(root), "path": str(path)}


# --------------------------------------------------------------------------------------------------
# UBFC-rPPG


def _read_ubfc_txt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``ground_truth.txt``: 3 whitespace-separated rows (PPG, HR bpm, time s) -> (ppg, hr)."""
    lines = [ln for ln in _read_text(path, "ground truth").splitlines() if ln.strip()]
    if not lines:
        raise DataError(path, "ground truth file is empty")
    if len(lines) != 3:
        raise DataError(path, f"expected 3 whitespace-separated rows (PPG, HR, time), found {len(lines)}")
    rows = [
        [_parse_float(v, path, f"row {r + 1}, column {c + 1}") for c, v in enumerate(ln.split())]
        for r, ln in enumerate(lines)
    ]
    if len({len(r) for r in rows}) != 1:
        raise DataError(path, f"the 3 rows have different lengths {[len(r) for r in rows]}")
    ppg = _check_values(np.array(rows[0]), path, "PPG (row 1)")
    hr = _check_values(np.array(rows[1]), path, "HR (row 2)")
    return ppg, hr


def _read_ubfc_xmp(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``gtdump.xmp`` (DATASET_1): CSV rows ``timestamp_ms, hr, spo2, ppg`` -> (ppg, hr) at its own rate."""
    lines = [ln for ln in _read_text(path, "ground truth").splitlines() if ln.strip()]
    if not lines:
        raise DataError(path, "ground truth file is empty")
    ppg, hr = [], []
    for i, ln in enumerate(lines, 1):
        cols = [c for c in ln.strip().rstrip(",").split(",")]
        if len(cols) < 4:
            raise DataError(
                path, f"line {i} has {len(cols)} column(s), expected 4 (timestamp_ms, hr, spo2, ppg)"
            )
        hr.append(_parse_float(cols[1], path, f"line {i}, column 2"))
        ppg.append(_parse_float(cols[3], path, f"line {i}, column 4"))
    ppg_a = _check_values(np.array(ppg), path, "PPG (column 4)")
    return ppg_a, _check_values(np.array(hr), path, "HR (column 2)")


def _load_ubfc_subject(folder: Path, root: Path, fps: float | None) -> Recording:
    """One UBFC-rPPG subject folder (DATASET_2 ``ground_truth.txt`` or DATASET_1 ``gtdump.xmp``)."""
    txt, xmp = folder / "ground_truth.txt", folder / "gtdump.xmp"
    if not txt.is_file() and not xmp.is_file():
        raise DataError(
            txt, "ground truth not found (expected ground_truth.txt or, for DATASET_1, gtdump.xmp)"
        )
    video = folder / "vid.avi"
    source = open_video(video, fps)
    n = _frame_count(source, video)
    if txt.is_file():
        ppg, hr = _read_ubfc_txt(txt)
        bvp, hr = _align(ppg, n, txt, "PPG", video.name), _align(hr, n, txt, "HR", video.name)
        gt = txt
    else:
        ppg, hr = _read_ubfc_xmp(xmp)
        bvp, hr, gt = _resample(ppg, n), _resample(hr, n), xmp
    meta = _base_meta("ubfc-rppg", root, folder) | {"ground_truth": gt.name}
    return Recording(folder.name, folder.name, source, bvp, hr, meta)


def _is_ubfc(root: Path) -> bool:
    return any((d / "vid.avi").is_file() for d in _subdirs(root))


def load_ubfc(root: Path, fps: float | None = None) -> list[Recording]:
    """UBFC-rPPG: every sub-folder holding ``vid.avi`` or a ground-truth file is one subject."""
    names = ("vid.avi", "ground_truth.txt", "gtdump.xmp")
    folders = [d for d in _subdirs(root) if any((d / f).exists() for f in names)]
    return [_load_ubfc_subject(d, root, fps) for d in folders]


# --------------------------------------------------------------------------------------------------
# PURE

_PURE_SEQ = re.compile(r"^(\d{2})-(\d{2})$")
_PURE_IMG = re.compile(r"(\d+)")


def _pure_json(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Parse a PURE ``<SS-TT>.json`` -> (pulse timestamps ns, waveform, pulseRate, image timestamps ns)."""
    text = _read_text(path, "ground truth")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("/FullPackage"), list):
        raise DataError(path, 'missing the "/FullPackage" list of pulse-oximeter samples')
    pkg = data["/FullPackage"]
    if not pkg:
        raise DataError(path, '"/FullPackage" is empty')
    ts, wave, rate = [], [], []
    for i, entry in enumerate(pkg):
        try:
            value = entry["Value"]
            ts.append(int(entry["Timestamp"]))
            wave.append(float(value["waveform"]))
            rate.append(float(value["pulseRate"]))
        except (KeyError, TypeError, ValueError):
            raise DataError(
                path, f'"/FullPackage" entry {i} lacks a numeric Timestamp, Value.waveform or Value.pulseRate'
            ) from None
    images = data.get("/Image")
    img_ts = None
    if isinstance(images, list) and images:
        try:
            img_ts = np.array([int(e["Timestamp"]) for e in images], dtype=np.int64)
        except (KeyError, TypeError, ValueError):
            raise DataError(path, '"/Image" entries must each hold a numeric Timestamp') from None
    t = np.array(ts, dtype=np.int64)
    order = np.argsort(t, kind="stable")
    wave_a = _check_values(np.array(wave)[order], path, '"/FullPackage" waveform')
    rate_a = _check_values(np.array(rate)[order], path, '"/FullPackage" pulseRate')
    return t[order], wave_a, rate_a, img_ts


def _pure_images(folder: Path, json_ts: np.ndarray | None, json_path: Path) -> tuple[list[Path], np.ndarray]:
    """PNG frames sorted by the timestamp in their file name, with those timestamps (ns). Falls back to
    the json's ``"/Image"`` timestamps when the names carry none and the counts agree."""
    if not folder.is_dir():
        raise DataError(folder, "image folder not found (expected <SS-TT>/<SS-TT>/Image<timestamp>.png)")
    paths = [p for p in folder.iterdir() if p.suffix.lower() == ".png"]
    if not paths:
        raise DataError(folder, "no PNG frames found")
    stamps = [_PURE_IMG.findall(p.stem) for p in paths]
    if all(stamps):
        ts = np.array([int(s[-1]) for s in stamps], dtype=np.int64)
        order = np.argsort(ts, kind="stable")
        return [paths[i] for i in order], ts[order]
    if json_ts is None or len(json_ts) != len(paths):
        raise DataError(
            folder,
            'frame file names carry no timestamp and the json\'s "/Image" list does not '
            f"match the {len(paths)} frames",
            f"see {json_path}",
        )
    return sorted(paths), np.sort(json_ts)


def _load_pure_sequence(seq: Path, root: Path, fps: float | None) -> Recording:
    """One PURE sequence folder ``<SS-TT>``."""
    json_path = seq / f"{seq.name}.json"
    if not json_path.is_file() and (root / f"{seq.name}.json").is_file():
        json_path = root / f"{seq.name}.json"
    pulse_ts, wave, rate, json_img_ts = _pure_json(json_path)
    frames, img_ts = _pure_images(seq / seq.name, json_img_ts, json_path)
    t0 = img_ts[0]
    t_img = (img_ts - t0).astype(np.float64) / 1e9
    t_pulse = (pulse_ts - t0).astype(np.float64) / 1e9
    if t_pulse[-1] < t_img[0] or t_pulse[0] > t_img[-1]:
        raise DataError(json_path, "the pulse samples do not overlap the image timestamps in time")
    rate_hz = fps
    if not rate_hz:
        span = t_img[-1] - t_img[0]
        if len(t_img) < 2 or span <= 0:
            raise DataError(
                seq / seq.name, "cannot derive a frame rate from the image timestamps", "pass --fps"
            )
        rate_hz = (len(t_img) - 1) / span
    source = open_images(frames, float(rate_hz), str(seq / seq.name))
    bvp = np.interp(t_img, t_pulse, wave)
    hr = np.interp(t_img, t_pulse, rate)
    subject, setup = _PURE_SEQ.match(seq.name).groups()
    meta = _base_meta("pure", root, seq) | {"setup": setup, "ground_truth": str(json_path)}
    return Recording(seq.name, subject, source, bvp, hr, meta)


def _is_pure(root: Path) -> bool:
    return any(
        _PURE_SEQ.match(d.name) and ((d / d.name).is_dir() or (d / f"{d.name}.json").is_file())
        for d in _subdirs(root)
    )


def load_pure(root: Path, fps: float | None = None) -> list[Recording]:
    """PURE: every ``SS-TT`` folder is one sequence of subject ``SS`` in setup ``TT``. The frame rate is
    (frames - 1) / (last - first image timestamp); the waveform and pulse rate are linearly
    interpolated onto the image timestamps (held constant beyond the first/last pulse sample)."""
    return [_load_pure_sequence(d, root, fps) for d in _subdirs(root) if _PURE_SEQ.match(d.name)]


# --------------------------------------------------------------------------------------------------
# COHFACE


def _h5py(path: Path, what: str):
    """Import h5py lazily; DataError naming ``path`` when it is missing."""
    try:
        import h5py
    except ImportError:
        raise DataError(
            path, f"reading {what} needs h5py, which is not installed", "pip install h5py"
        ) from None
    return h5py


def _read_cohface_hdf5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``data.hdf5`` -> (pulse, time in s relative to the first sample)."""
    if not path.is_file():
        raise DataError(path, "ground truth not found")
    h5py = _h5py(path, "COHFACE data.hdf5")
    try:
        with h5py.File(path, "r") as f:
            if "pulse" not in f:
                raise DataError(path, "has no 'pulse' dataset")
            pulse = np.asarray(f["pulse"][()], dtype=np.float64).ravel()
            time = np.asarray(f["time"][()], dtype=np.float64).ravel() if "time" in f else None
    except OSError as e:
        raise DataError(path, f"cannot read HDF5 file ({e})") from None
    pulse = _check_values(pulse, path, "pulse")
    if time is None:
        time = np.arange(len(pulse)) / 256.0
    time = _check_values(time, path, "time")
    if len(time) != len(pulse):
        raise DataError(path, f"'pulse' has {len(pulse)} samples but 'time' has {len(time)}")
    return pulse, time - time[0]


def _load_cohface_session(folder: Path, root: Path, fps: float | None) -> Recording:
    """One COHFACE ``<subject>/<session>`` folder."""
    pulse, t = _read_cohface_hdf5(folder / "data.hdf5")
    video = folder / "data.avi"
    source = open_video(video, fps)
    n = _frame_count(source, video)
    bvp = np.interp(np.arange(n) / source.fps, t, pulse)
    subject, session = folder.parent.name, folder.name
    meta = _base_meta("cohface", root, folder) | {"session": session}
    return Recording(f"{subject}-{session}", subject, source, bvp, None, meta)


def _cohface_sessions(root: Path) -> list[Path]:
    return [
        s
        for d in _subdirs(root)
        if d.name.isdigit()
        for s in _subdirs(d)
        if s.name.isdigit() and ((s / "data.avi").exists() or (s / "data.hdf5").exists())
    ]


def _is_cohface(root: Path) -> bool:
    return bool(_cohface_sessions(root))


def load_cohface(root: Path, fps: float | None = None) -> list[Recording]:
    """COHFACE: ``<subject>/<session>/data.avi`` + ``data.hdf5``. Frame i is at i / fps seconds and the
    256-Hz pulse is linearly interpolated there (its ``time`` taken relative to its first sample)."""
    return [_load_cohface_session(s, root, fps) for s in _cohface_sessions(root)]


# --------------------------------------------------------------------------------------------------
# MATLAB files (MMPD, VIPL fold files)


def _mat_str(value: Any) -> Any:
    """A MATLAB value as a plain Python value: char arrays -> str, 1-element numbers -> int/float."""
    if isinstance(value, str | bytes):
        return value.decode(errors="replace") if isinstance(value, bytes) else value
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return " ".join(str(s).strip() for s in arr.ravel())
    if arr.dtype == object:
        return [_mat_str(v) for v in arr.ravel()] if arr.size != 1 else _mat_str(arr.ravel()[0])
    if arr.size == 1 and arr.dtype.kind in "biuf":
        v = arr.ravel()[0].item()
        return int(v) if isinstance(v, float) and v.is_integer() else v
    return arr.tolist()


def _h5_value(h5py, f, obj) -> Any:
    """A v7.3 (HDF5) MATLAB variable as numpy (axes reversed to MATLAB order) or str (char)."""
    if isinstance(obj, h5py.Group):
        return {k: _h5_value(h5py, f, v) for k, v in obj.items()}
    data = obj[()]
    cls = obj.attrs.get("MATLAB_class", b"")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    if cls == "char":
        return "".join(chr(int(c)) for c in np.asarray(data).T.ravel() if int(c))
    if isinstance(data, np.ndarray) and data.dtype.kind == "O":  # cell array of references
        return np.array([_h5_value(h5py, f, f[ref]) for ref in data.ravel()], dtype=object)
    return np.asarray(data).T


def _mat_read_h5(path: Path, names: list[str] | None) -> dict[str, Any]:
    h5py = _h5py(path, "this MATLAB v7.3 (HDF5) .mat file")
    try:
        with h5py.File(path, "r") as f:
            keys = [k for k in f if not k.startswith("#")] if names is None else [k for k in names if k in f]
            return {k: _h5_value(h5py, f, f[k]) for k in keys}
    except OSError as e:
        raise DataError(path, f"cannot read .mat file ({e})") from None


def _mat_read(path: Path, names: list[str] | None = None) -> dict[str, Any]:
    """Variables of a .mat file (all when ``names`` is None); v7.3 files go through h5py."""
    import scipy.io

    if not path.is_file():
        raise DataError(path, ".mat file not found")
    try:
        data = scipy.io.loadmat(str(path), variable_names=names)
    except NotImplementedError:
        return _mat_read_h5(path, names)
    except (ValueError, TypeError, OSError) as e:
        raise DataError(path, f"cannot read .mat file ({e})") from None
    return {k: v for k, v in data.items() if not k.startswith("__")}


def _mat_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of a .mat file's variables (MATLAB axis order) without reading their data."""
    import scipy.io

    try:
        return {name: tuple(shape) for name, shape, _ in scipy.io.whosmat(str(path))}
    except NotImplementedError:
        h5py = _h5py(path, "this MATLAB v7.3 (HDF5) .mat file")
        try:
            with h5py.File(path, "r") as f:
                return {k: tuple(f[k].shape[::-1]) for k in f if isinstance(f[k], h5py.Dataset)}
        except OSError as e:
            raise DataError(path, f"cannot read .mat file ({e})") from None
    except (ValueError, TypeError, OSError) as e:
        raise DataError(path, f"cannot read .mat file ({e})") from None


# --------------------------------------------------------------------------------------------------
# MMPD

_MMPD_FILE = re.compile(r"^p\d+_\d+\.mat$", re.IGNORECASE)


def _mmpd_video_loader(path: Path) -> Callable[[], np.ndarray]:
    """A function reading ``video`` from the .mat when called (so the list of recordings stays small)."""

    def load() -> np.ndarray:
        return np.asarray(_mat_read(path, ["video"]).get("video"))

    return load


def _load_mmpd_file(path: Path, root: Path, fps: float | None) -> Recording:
    """One MMPD ``p<N>_<k>.mat``: validates ``video``'s shape and ``GT_ppg``; the video stays on disk."""
    shapes = _mat_shapes(path)
    if "video" not in shapes:
        raise DataError(path, "has no 'video' variable")
    shape = shapes["video"]
    if len(shape) != 4 or shape[-1] != 3:
        raise DataError(path, f"'video' should be T x H x W x 3, got {shape}")
    n = int(shape[0])
    data = _mat_read(path, ["GT_ppg", *MMPD_META_KEYS])
    if "GT_ppg" not in data:
        raise DataError(path, "ground truth 'GT_ppg' not found")
    ppg = _check_values(np.asarray(data["GT_ppg"]), path, "GT_ppg")
    bvp = _align(ppg, n, path, "GT_ppg", "'video'")
    meta = _base_meta("mmpd", root, path) | {k: _mat_str(data[k]) for k in MMPD_META_KEYS if k in data}
    source = open_array(_mmpd_video_loader(path), float(fps or MMPD_FPS), n, str(path))
    return Recording(path.stem, path.parent.name, source, bvp, None, meta)


def _mmpd_files(root: Path) -> list[Path]:
    return [
        p for d in _subdirs(root) for p in sorted(d.iterdir()) if p.is_file() and _MMPD_FILE.match(p.name)
    ]


def _is_mmpd(root: Path) -> bool:
    return bool(_mmpd_files(root))


def load_mmpd(root: Path, fps: float | None = None) -> list[Recording]:
    """MMPD: ``subject<N>/p<N>_<k>.mat``, 30 fps; metadata fields become ``meta`` entries."""
    return [_load_mmpd_file(p, root, fps) for p in _mmpd_files(root)]


# --------------------------------------------------------------------------------------------------
# VIPL-HR

_VIPL_SOURCES = ("source1", "source2", "source3")


def _read_column(path: Path, what: str) -> np.ndarray:
    """A one-column CSV with an optional header line (``Wave``, ``HR``) -> float64 values."""
    lines = [ln.strip() for ln in _read_text(path, what).splitlines() if ln.strip()]
    values = []
    for i, ln in enumerate(lines, 1):
        cols = ln.rstrip(",").split(",")
        if len(cols) != 1:
            raise DataError(path, f"line {i} has {len(cols)} columns, expected 1")
        if i == 1 and not re.match(r"^[-+.\d]", cols[0]):
            continue  # header
        values.append(_parse_float(cols[0], path, f"line {i}"))
    if not values:
        raise DataError(path, f"{what} is empty")
    return _check_values(np.array(values), path, what)


def _vipl_fps(path: Path) -> tuple[float, int]:
    """``time.txt`` (per-frame ms timestamps) -> (fps = (frames - 1) / duration, frames)."""
    t = _read_column(path, "frame timestamps")
    if len(t) < 2 or t[-1] <= t[0]:
        raise DataError(path, "needs at least 2 increasing timestamps (ms) to derive the frame rate")
    return (len(t) - 1) / ((t[-1] - t[0]) / 1000.0), len(t)


def _load_vipl_source(folder: Path, root: Path, fps: float | None) -> Recording:
    """One VIPL-HR ``p<i>/v<j>/source<k>`` folder."""
    wave_path, time_path, hr_path = folder / "wave.csv", folder / "time.txt", folder / "gt_HR.csv"
    wave = _read_column(wave_path, "ground truth")
    meta = _base_meta("vipl-hr", root, folder)
    rate = fps
    if not rate and time_path.is_file():
        rate, meta["time_txt_frames"] = _vipl_fps(time_path)
    video = folder / "video.avi"
    source = open_video(video, rate)
    n = source.n_frames or meta.get("time_txt_frames", 0)
    if n <= 0:
        raise DataError(video, "the video declares no frame count and time.txt is missing")
    hr = _resample(_read_column(hr_path, "ground-truth HR"), n) if hr_path.is_file() else None
    subject, scenario = folder.parent.parent.name, folder.parent.name
    meta |= {"scenario": scenario, "source": folder.name}
    return Recording(f"{subject}-{scenario}-{folder.name}", subject, source, _resample(wave, n), hr, meta)


def _vipl_folders(root: Path) -> list[Path]:
    return [
        s
        for p in _subdirs(root)
        if re.match(r"^p\d+$", p.name)
        for v in _subdirs(p)
        if re.match(r"^v\d+", v.name)
        for s in _subdirs(v)
        if s.name in _VIPL_SOURCES
    ]


def _is_vipl(root: Path) -> bool:
    return bool(_vipl_folders(root))


def load_vipl(root: Path, fps: float | None = None) -> list[Recording]:
    """VIPL-HR: RGB sources 1-3 (NIR ``source4`` skipped). fps = (frames - 1) / duration from ``time.txt``
    (container rate when it is missing); ``wave.csv`` and ``gt_HR.csv`` are resampled by length to the
    container's frame count (``gt_HR.csv`` is optional: ``hr`` is None without it)."""
    return [_load_vipl_source(s, root, fps) for s in _vipl_folders(root)]


# --------------------------------------------------------------------------------------------------
# detection and entry point


def _subdirs(path: Path) -> list[Path]:
    """Sub-folders of ``path`` sorted by name (hidden ones skipped)."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


_DETECT: dict[str, Callable[[Path], bool]] = {
    "ubfc-rppg": _is_ubfc,
    "pure": _is_pure,
    "cohface": _is_cohface,
    "mmpd": _is_mmpd,
    "vipl-hr": _is_vipl,
}

_LOADERS: dict[str, Callable[[Path, float | None], list[Recording]]] = {
    "ubfc-rppg": load_ubfc,
    "pure": load_pure,
    "cohface": load_cohface,
    "mmpd": load_mmpd,
    "vipl-hr": load_vipl,
}

_EXPECTED = (
    "ubfc-rppg: subject<N>/vid.avi + ground_truth.txt; pure: <SS-TT>/<SS-TT>/Image*.png + <SS-TT>.json; "
    "cohface: <subject>/<session>/data.avi + data.hdf5; mmpd: subject<N>/p<N>_<k>.mat; "
    "vipl-hr: p<i>/v<j>/source<k>/video.avi + wave.csv"
)


def detect_dataset(root: str | Path) -> str:
    """Tell which dataset ``root`` holds from its folder layout; DataError listing the layouts otherwise."""
    root = require_dir(root, "dataset folder")
    for name, test in _DETECT.items():
        if test(root):
            return name
    raise DataError(root, "does not look like any supported rPPG dataset", f"expected one of: {_EXPECTED}")


def load_dataset(root: str | Path, name: str | None = None, fps: float | None = None) -> list[Recording]:
    """All recordings of the dataset at ``root`` sorted by id. ``name`` (else detected) is one of
    :data:`DATASETS`; ``fps`` overrides the frame rate the dataset declares."""
    root = require_dir(root, "dataset folder")
    key = canonical_name(name) if name else detect_dataset(root)
    if fps is not None and (not np.isfinite(fps) or fps <= 0):
        raise UsageError(f"fps must be a positive number, got {fps}")
    recs = _LOADERS[key](root, fps)
    if not recs:
        raise DataError(root, f"no {key} recordings found", f"expected {_EXPECTED}")
    return sorted(recs, key=lambda r: r.id)


# --------------------------------------------------------------------------------------------------
# splits


def _read_splits_csv(path: Path) -> dict[str, dict[str, str]]:
    """``splits.csv`` -> {subject: row}; each row has ``split`` plus any extra columns."""
    text = _read_text(path, "split file")
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip() for f in (reader.fieldnames or [])]
    rows = list(reader)
    if "subject" not in fields or "split" not in fields:
        raise DataError(
            path, f"needs a header with columns subject,split (found {','.join(fields) or 'none'})"
        )
    if not rows:
        raise DataError(path, "split file has no rows")
    table: dict[str, dict[str, str]] = {}
    for i, row in enumerate(rows, 2):
        row = {
            k.strip(): v.strip() if isinstance(v, str) else "" for k, v in row.items() if isinstance(k, str)
        }
        subject, split = row["subject"], row["split"].lower()
        if not subject:
            raise DataError(path, f"line {i}: empty subject")
        if split not in SPLITS:
            raise DataError(path, f"line {i}: split {row['split']!r} is not one of train, valid, test")
        if subject in table and table[subject]["split"] != split:
            raise DataError(path, f"line {i}: subject {subject!r} is listed in two splits")
        table[subject] = row | {"split": split}
    return table


def _split_from_csv(recs: list[Recording], path: Path) -> dict[str, list[Recording]]:
    """Assign recordings by ``splits.csv``. A purely numeric subject there (``38``) also matches a
    subject name with that number (``subject38``, ``01``); extra columns are copied into ``meta``."""
    table = _read_splits_csv(path)
    by_number = {int(s): row for s, row in table.items() if s.isdigit()}
    out: dict[str, list[Recording]] = {s: [] for s in SPLITS}
    missing: list[str] = []
    for rec in recs:
        row = table.get(rec.subject)
        if row is None and (num := _subject_number(rec.subject)) is not None:
            row = by_number.get(num)
        if row is None:
            missing.append(rec.subject)
            continue
        rec.meta.update({k: v for k, v in row.items() if k not in ("subject", "split") and k})
        out[row["split"]].append(rec)
    if missing:
        names = sorted(set(missing))
        shown = ", ".join(names[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
        raise DataError(
            path, f"{len(names)} subject(s) not listed: {shown}", "add a subject,split row for each"
        )
    return out


def _read_fold_ids(path: Path) -> set[int]:
    """Test subject numbers from an official VIPL-HR ``fold{k}.mat``: every number in every variable
    (numeric arrays, cells, or strings such as ``p12``)."""
    found: list[int] = []

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                collect(v)
        elif isinstance(value, str | bytes):
            found.extend(
                int(m) for m in re.findall(r"\d+", value if isinstance(value, str) else value.decode())
            )
        else:
            arr = np.asarray(value)
            if arr.dtype == object:
                for v in arr.ravel():
                    collect(v)
            elif arr.dtype.kind in "US":
                for v in arr.ravel():
                    collect(str(v))
            elif arr.dtype.kind in "biuf":
                vals = arr.astype(np.float64).ravel()
                if not np.all(np.isfinite(vals)) or not np.all(vals == np.round(vals)):
                    raise DataError(path, "fold file holds non-integer subject ids")
                found.extend(int(v) for v in vals)

    collect(_mat_read(path))
    if not found:
        raise DataError(path, "fold file holds no subject ids")
    return set(found)


def _protocol_split(recs: list[Recording], name: str, fold: int | None, root: Path | None) -> dict[str, str]:
    """{subject: split} for the dataset's published protocol (spec §2.7)."""
    subjects = sorted({r.subject for r in recs})
    if name == "vipl-hr":
        if fold is None or not 1 <= int(fold) <= 5:
            raise UsageError(f"VIPL-HR uses 5 subject-exclusive folds: pass a fold 1..5 (got {fold})")
        if root is None:
            raise UsageError("VIPL-HR splits need the dataset root (where fold1.mat..fold5.mat live)")
        path = root / f"fold{int(fold)}.mat"
        if not path.is_file():
            raise DataError(
                path,
                "VIPL-HR fold file not found",
                f"copy the official fold1.mat..fold5.mat into {root} or write {root / SPLITS_FILE}",
            )
        test = _read_fold_ids(path)
        return {s: "test" if _number_or_fail(s, name) in test else "train" for s in subjects}
    rules: dict[str, Callable[[int], str]] = {
        "ubfc-rppg": lambda n: "test" if 38 <= n <= 49 else "train",
        "pure": lambda n: "test" if 1 <= n <= 4 else "train",
        "mmpd": lambda n: "test" if 27 <= n <= 33 else "valid" if 24 <= n <= 26 else "train",
        "cohface": lambda n: "test" if n % 4 == 0 else "train",
    }
    return {s: rules[name](_number_or_fail(s, name)) for s in subjects}


def split_recordings(
    recs: list[Recording],
    name: str | None = None,
    fold: int | None = None,
    *,
    root: str | Path | None = None,
) -> dict[str, list[Recording]]:
    """Split recordings into ``train``/``valid``/``test`` (subject-exclusive, spec §2.7):

    - UBFC-rPPG: test = subjects 38..49, train = the rest, valid empty.
    - PURE: test = subjects 01..04 (all setups), train = 05..10 (and any other), valid empty.
    - MMPD: test = p27..p33, valid = p24..p26, train = the rest.
    - VIPL-HR: 5-fold; ``fold`` (1..5) picks ``fold{k}.mat`` in the root, whose numbers are the test
      subjects' ids (``p<i>``); train = the rest, valid empty.
    - COHFACE (not in the FreqPhys protocols; the Idiap protocol files are not shipped): test =
      subjects whose number is divisible by 4 (4, 8, ..., 40), train = the rest, valid empty.

    A ``splits.csv`` in the dataset root (columns ``subject,split``, split in train|valid|test; extra
    columns such as ``subset`` are copied into each recording's ``meta``) overrides the protocol for
    any dataset; every subject must be listed. ``root`` defaults to the recordings' ``meta["root"]``
    and ``name`` to their ``meta["dataset"]``.
    """
    if name is None:
        names = {r.meta.get("dataset") for r in recs}
        if len(names) != 1 or None in names:
            raise UsageError("split_recordings needs the dataset name")
        name = names.pop()
    key = canonical_name(name)
    if root is None:
        roots = {r.meta.get("root") for r in recs} - {None}
        root = roots.pop() if len(roots) == 1 else None
    root_path = Path(root) if root is not None else None
    if root_path is not None and (root_path / SPLITS_FILE).is_file():
        return _split_from_csv(recs, root_path / SPLITS_FILE)
    assign = _protocol_split(recs, key, fold, root_path)
    out: dict[str, list[Recording]] = {s: [] for s in SPLITS}
    for rec in recs:
        out[assign[rec.subject]].append(rec)
    return out
