"""The embedded benchmark (synth.py): layout and counts, byte-identical files per seed, classes a
simple classifier learns, and data.py's readers reading it back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression

from affectkit.core.errors import UsageError
from affectkit.tasks.act_prompt import data, synth

SEED = 0
QUICK_COUNTS = {  # classes, train, val, test (digits: 60/20/20 % of each of load_digits' classes)
    "source": (10, 1200, 300, 300),
    "digits": (10, 1078, 359, 360),
    "shapes-shift": (6, 180, 90, 90),
    "textures": (8, 240, 120, 120),
}
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("act_prompt_quick")
    return out, synth.make(out, seed=SEED, quick=True)


def file_hashes(root: Path, task: str) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / task).rglob("*.png"))}


def gray_pixels(table: data.ImageTable) -> np.ndarray:
    """[N, 32, 32] luma in [0, 1]."""
    return np.stack([np.asarray(table.load(i), dtype=np.float32) @ LUMA / 255.0 for i in range(len(table))])


def spectral_signature(gray: np.ndarray, bands: int = 10, harmonics: tuple[int, ...] = (2, 4, 6)) -> np.ndarray:
    """Position-, rotation- and colour-invariant features: per radial band of the power spectrum of
    the standardised image, the band's log power and the magnitudes of its angular harmonics (a
    disc is isotropic, a square or dot grid 4-fold, a triangle 6-fold, stripes 2-fold)."""
    g = (gray - gray.mean(axis=(1, 2), keepdims=True)) / (gray.std(axis=(1, 2), keepdims=True) + 1e-3)
    power = np.abs(np.fft.fftshift(np.fft.fft2(g), axes=(1, 2))) ** 2
    f = np.arange(gray.shape[1]) - gray.shape[1] // 2
    fx, fy = np.meshgrid(f, f)
    radius, angle = np.hypot(fx, fy), np.arctan2(fy, fx)
    edges = np.linspace(1, gray.shape[1] // 2, bands + 1)
    features = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_band = (radius >= lo) & (radius < hi)
        band = power[:, in_band]
        total = band.sum(axis=1) + 1e-6
        features.append(np.log(total))
        features += [np.abs(band @ np.exp(1j * k * angle[in_band])) / total for k in harmonics]
    return np.stack(features, axis=1)


def probe_accuracy(root: Path, features) -> tuple[float, int]:
    """Test accuracy of a logistic regression on ``features`` of the train split, and the class count."""
    train = data.read_split(root, "train")
    test = data.read_split(root, "test", classes=train.classes)
    x_train, x_test = features(gray_pixels(train)), features(gray_pixels(test))
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    clf = LogisticRegression(max_iter=500).fit((x_train - mean) / std, train.labels)
    return float(clf.score((x_test - mean) / std, test.labels)), len(train.classes)


def test_layout_counts_and_summary(quick):
    out, summary = quick
    assert summary == {"tasks": {t: dict(zip(("classes", "train", "val", "test"), c, strict=True))
                                 for t, c in QUICK_COUNTS.items()}, "seed": SEED, "size": 32}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classes"]["source"][:2] == ["disc-stripes", "disc-dots"]
    assert "shapes-shift" in (out / "README.txt").read_text()
    for task, (n_classes, *sizes) in QUICK_COUNTS.items():
        assert data.splits(out / task) == ["train", "val", "test"]
        for split, size in zip(synth.SPLITS, sizes, strict=True):
            folders = sorted(p for p in (out / task / split).iterdir())
            assert len(folders) == n_classes
            assert sum(len(list(f.glob("*.png"))) for f in folders) == size
    with Image.open(next((out / "source" / "train" / "ring-dots").glob("*.png"))) as img:
        assert img.mode == "RGB" and img.size == (32, 32)


def test_readers_read_it_back(quick):
    out, summary = quick
    manifest = json.loads((out / "manifest.json").read_text())
    for task, counts in summary["tasks"].items():
        train = data.read_split(out / task, "train")
        assert train.classes == sorted(manifest["classes"][task])
        assert len(train) == counts["train"]
        val = data.read_split(out / task, "validation", classes=train.classes)  # alias of "val"
        assert len(val) == counts["val"] and set(np.unique(val.labels)) == set(range(counts["classes"]))
    digits_train = data.read_split(out / "digits", "train")
    ds = data.ImageDataset(digits_train, 32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert ds[0]["pixel_values"].shape == (3, 32, 32)


def test_same_seed_byte_identical_other_seed_different(quick, tmp_path):
    out, _ = quick
    tasks = ["source", "shapes-shift", "textures"]
    synth.make(tmp_path / "again", seed=SEED, quick=True, tasks=tasks)
    for task in tasks:
        assert file_hashes(out, task) == file_hashes(tmp_path / "again", task)
    synth.make(tmp_path / "other", seed=SEED + 1, quick=True, tasks=["textures"])
    first = "textures/train/checker/0000.png"
    assert (out / first).read_bytes() != (tmp_path / "other" / first).read_bytes()


def test_source_classes_learnable_from_invariant_features(quick):
    out, _ = quick
    accuracy, n_classes = probe_accuracy(out / "source", spectral_signature)
    assert n_classes == 10 and accuracy > 0.6  # chance 0.1; 0.81 at seed 0


def test_digits_learnable_from_raw_pixels(quick):
    out, _ = quick

    def raw_8px(gray: np.ndarray) -> np.ndarray:  # load_digits' own resolution; fast to fit
        return gray.reshape(len(gray), 8, 4, 8, 4).mean(axis=(2, 4)).reshape(len(gray), -1)

    accuracy, n_classes = probe_accuracy(out / "digits", raw_8px)
    assert n_classes == 10 and accuracy > 0.8  # 0.96 at seed 0


def test_bad_arguments(tmp_path):
    with pytest.raises(UsageError, match="unknown act-prompt benchmark task 'mnist'"):
        synth.make(tmp_path, SEED, True, tasks=["mnist"])
    (tmp_path / "textures" / "junk").mkdir(parents=True)
    with pytest.raises(UsageError, match="textures: directory exists and is not empty"):
        synth.make(tmp_path, SEED, True, tasks=["textures"])
