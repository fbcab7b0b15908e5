"""Image classification datasets in the formats users have, and the torch Dataset the trainer reads.

``read_split(root, split)`` finds one split of a dataset folder in the first layout that has it:

1. ImageFolder: ``root/<split>/<class>/*.png`` (any of ``IMAGE_SUFFIXES``, searched recursively in
   each class folder). Classes are the sub-folder names, sorted; a class folder may be empty, so the
   label indices stay aligned across splits. ``root/<class>/...`` with no split folders is one split,
   named ``all``.
2. CSV lists: ``root/<split>.csv`` with columns ``path,label``; a relative path is relative to the
   CSV's folder; a label is a class name or an integer.
3. HF datasets: a ``datasets.save_to_disk`` folder ``root/<split>`` (holding ``state.json`` /
   ``dataset_info.json``; a DatasetDict's root holds ``dataset_dict.json`` and one such folder per
   split), or parquet files ``root/<split>.parquet`` / ``root/data/<split>-*.parquet`` (the hub's
   layout). The image column is ``image`` or ``img`` (else the one Image-typed column), the label
   column ``label`` or ``labels`` (else the one ClassLabel column); ClassLabel names become the classes.

A split that is not found under its own name is looked up under its aliases (``val``,
``validation``, ``valid``, ``dev``). Labels that are all integers index the classes directly (the
classes are then ``"0" .. str(max)`` unless given); labels that are names are sorted into classes.
Pass ``classes=`` (e.g. the train split's) to read another split with the same label indices.

Rows are named in errors as a person finds them: a CSV's ``row N`` counts the header as row 1 (a
spreadsheet's numbering); an HF dataset's ``row N`` is the 0-based index ``dataset[N]``.

Images stay encoded (a path or the file's bytes) until ``load_image`` decodes one to RGB, so a
table of a large dataset costs little memory; ``ImageDataset`` resizes, caches the uint8 pixels and
normalises. No torchvision: PIL does the decoding and the bicubic resize.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from affectkit.core.errors import DataError, UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_ALIASES = ("validation", "val", "valid", "dev")
SPLIT_ORDER = ("train", *SPLIT_ALIASES, "test")
HF_MARKERS = ("state.json", "dataset_info.json")
IMAGE_COLUMNS = ("image", "img")
LABEL_COLUMNS = ("label", "labels")
CSV_COLUMNS = ("path", "label")
# what pandas reads as NaN, and what an empty spreadsheet cell looks like
MISSING_LABELS = frozenset({"", "nan", "NaN", "NA", "N/A", "null", "None"})
LAYOUTS_HINT = ("expected ROOT/SPLIT/CLASS/*.png, ROOT/SPLIT.csv (path,label), a datasets.save_to_disk "
                "folder, or ROOT/SPLIT.parquet / ROOT/data/SPLIT-*.parquet")


@dataclass
class ImageTable:
    """One split: encoded images, integer labels, class names, and where each item came from."""

    images: list  # Path to an image file, or the file's bytes, or a PIL image
    labels: np.ndarray  # int64, index into classes
    classes: list[str]
    source: Path
    where: list[str]  # per item: "FILE" or "row N of FILE", for error messages

    def __len__(self) -> int:
        return len(self.images)

    def take(self, indices: Sequence[int] | np.ndarray) -> ImageTable:
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        return ImageTable([self.images[i] for i in idx], self.labels[idx].copy(), list(self.classes),
                          self.source, [self.where[i] for i in idx])

    def load(self, i: int) -> Image.Image:
        """Item ``i`` decoded to an RGB PIL image."""
        return load_image(self.images[i], self.where[i])


# ---- images -----------------------------------------------------------------------------------


def load_image(item: Any, where: str | None = None) -> Image.Image:
    """``item`` (a path, encoded bytes or a PIL image) as an RGB PIL image; a file PIL cannot decode
    raises DataError naming ``where`` (the item's row) or else the file."""
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    path = Path(item) if isinstance(item, (str, Path)) else None
    name = where or (str(path) if path is not None else "image bytes")
    what = f"image {path}" if path is not None and name != str(path) else "image"
    try:
        with Image.open(path if path is not None else io.BytesIO(item)) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataError(name, f"{what} not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = "unknown format or corrupt" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise DataError(name, f"cannot read {what} ({reason})",
                        "the file is corrupt or not an image; remove or replace it") from None


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if _is_image_file(p))


# ---- split discovery ----------------------------------------------------------------------------


def _is_hf_folder(folder: Path) -> bool:
    return any((folder / marker).is_file() for marker in HF_MARKERS)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _holds_images(folder: Path) -> bool:
    return any(_is_image_file(p) for p in folder.iterdir())


def _hub_parquet_files(root: Path, split: str) -> list[Path]:
    files = sorted((root / "data").glob(f"{split}-*.parquet")) + sorted((root / "data").glob(f"{split}.parquet"))
    return sorted(set(files))


def _split_sort_key(name: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(name) if name in SPLIT_ORDER else len(SPLIT_ORDER), name)


def splits(root: Path) -> list[str]:
    """The splits present under ``root`` in any layout (train, validation/val, test, then others)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder not found" if not root.exists() else "expected a dataset folder, found a file")
    found: set[str] = set()
    folders = _subdirs(root)
    for d in folders:
        if _is_hf_folder(d) or (d.name != "data" and _subdirs(d)):
            found.add(d.name)
    found.update(p.stem for p in root.glob("*.csv"))
    found.update(p.stem for p in root.glob("*.parquet"))
    if (root / "data").is_dir():
        found.update(p.name.split("-")[0].removesuffix(".parquet") for p in (root / "data").glob("*.parquet"))
    if not found and any(_holds_images(d) for d in folders):
        found.add("all")
    return sorted(found, key=_split_sort_key)


def _candidate_names(split: str) -> list[str]:
    if split in SPLIT_ALIASES:
        return [split, *(a for a in SPLIT_ALIASES if a != split)]
    return [split]


def read_split(root: Path, split: str, classes: Sequence[str] | None = None) -> ImageTable:
    """Split ``split`` of the dataset at ``root`` in whichever layout holds it (see the module doc).
    ``classes`` fixes the class list (and so the label indices), e.g. to the train split's."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder not found" if not root.exists() else "expected a dataset folder, found a file")
    known = list(classes) if classes is not None else None
    for name in _candidate_names(split):
        folder = root / name
        if folder.is_dir():
            if _is_hf_folder(folder):
                return read_hf_disk(folder, known)
            return read_image_folder(folder, known)
        if (root / f"{name}.csv").is_file():
            return read_csv_list(root / f"{name}.csv", known)
        parquet = [root / f"{name}.parquet"] if (root / f"{name}.parquet").is_file() else _hub_parquet_files(root, name)
        if parquet:
            return read_parquet(parquet, known)
    if split == "all" and any(_holds_images(d) for d in _subdirs(root)):
        return read_image_folder(root, known)
    present = splits(root)
    if not present:
        raise DataError(root, "no dataset found", LAYOUTS_HINT)
    raise DataError(root, f"no split {split!r} (found: {', '.join(present)})")


# ---- labels -------------------------------------------------------------------------------------


def _as_int(value: Any) -> int | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return int(number) if number.is_integer() else None
    return None


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip() in MISSING_LABELS


def encode_labels(raw: Sequence[Any], where: Sequence[str], classes: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Raw labels (ints, integer strings or class names) -> (int64 indices, classes)."""
    for value, at in zip(raw, where, strict=True):
        if _is_missing(value):
            raise DataError(at, "empty label", "every row needs a class name or an integer label")
    ints = [_as_int(v) for v in raw]
    if all(i is not None for i in ints):
        return _integer_labels(ints, where, classes)
    names = [str(v).strip() for v in raw]
    if classes is None:
        classes = sorted(set(names))
    index = {c: k for k, c in enumerate(classes)}
    labels = np.empty(len(names), dtype=np.int64)
    for k, (name, at) in enumerate(zip(names, where, strict=True)):
        if name not in index:
            raise DataError(at, f"unknown class {name!r}", f"known classes: {', '.join(classes[:20])}")
        labels[k] = index[name]
    return labels, list(classes)


def _integer_labels(ints: list, where: Sequence[str], classes: list[str] | None) -> tuple[np.ndarray, list[str]]:
    labels = np.asarray(ints, dtype=np.int64)
    for value, at in zip(labels, where, strict=True):
        if value < 0:
            raise DataError(at, f"label {value} is negative", "unlabelled rows (label -1) cannot be used for training")
        if classes is not None and value >= len(classes):
            raise DataError(at, f"label {value} out of range for {len(classes)} classes")
    if classes is None:
        classes = [str(k) for k in range(int(labels.max()) + 1)] if len(labels) else []
    return labels, list(classes)


# ---- ImageFolder --------------------------------------------------------------------------------


def read_image_folder(folder: Path, classes: list[str] | None = None) -> ImageTable:
    """``folder/<class>/**/*.png``: one split, classes = sub-folder names (sorted) unless given."""
    class_dirs = _subdirs(folder)
    if not class_dirs:
        hint = (f"images lie directly in {folder}; if {folder.parent} is one split of class folders, use split 'all'"
                if _holds_images(folder) else "expected one sub-folder of images per class")
        raise DataError(folder, "no classes (no class sub-folders)", hint)
    names = [d.name for d in class_dirs]
    if classes is None:
        classes = names
    index = {c: k for k, c in enumerate(classes)}
    images: list[Path] = []
    labels: list[int] = []
    for d in class_dirs:
        if d.name not in index:
            raise DataError(d, f"class folder {d.name!r} is not one of the {len(classes)} known classes",
                            f"known classes: {', '.join(classes[:20])}")
        files = _image_files(d)
        images += files
        labels += [index[d.name]] * len(files)
    if not images:
        raise DataError(folder, f"no images in its {len(class_dirs)} class folders",
                        f"image files end in {', '.join(IMAGE_SUFFIXES)}")
    return ImageTable(images, np.asarray(labels, dtype=np.int64), list(classes), folder, [str(p) for p in images])


# ---- CSV lists ----------------------------------------------------------------------------------


def read_csv_list(path: Path, classes: list[str] | None = None) -> ImageTable:
    """A CSV with columns ``path,label`` (path relative to the CSV's folder or absolute)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            reader.fieldnames = columns
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"cannot read CSV ({exc})") from None
    for column in CSV_COLUMNS:
        if column not in columns:
            raise DataError(path, f"missing column {column!r} (found: {', '.join(columns) or 'none'})",
                            "the CSV needs a header row with columns path,label")
    if not rows:
        raise DataError(path, "no rows")
    where = [f"row {n} of {path}" for n in range(2, len(rows) + 2)]
    images: list[Path] = []
    for row, at in zip(rows, where, strict=True):
        images.append(_csv_image_path(path, row["path"], at))
    labels, classes = encode_labels([row["label"] for row in rows], where, classes)
    return ImageTable(images, labels, classes, path, where)


def _csv_image_path(csv_path: Path, value: str | None, where: str) -> Path:
    if value is None or not value.strip():
        raise DataError(where, "empty path")
    image = Path(value.strip())
    if not image.is_absolute():
        image = csv_path.parent / image
    if not image.is_file():
        raise DataError(where, f"image {image} not found")
    return image


# ---- HF datasets --------------------------------------------------------------------------------


def read_hf_disk(folder: Path, classes: list[str] | None = None) -> ImageTable:
    """A ``datasets.save_to_disk`` folder of one split."""
    try:
        import datasets
    except ImportError:
        raise UsageError("reading a save_to_disk folder needs the datasets package", "pip install datasets") from None
    try:
        ds = datasets.load_from_disk(str(folder))
    except Exception as exc:  # datasets raises several types for damaged folders
        raise DataError(folder, f"cannot load the saved dataset ({exc.__class__.__name__}: {exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        raise DataError(folder, f"is a DatasetDict (splits: {', '.join(ds)}), not one split",
                        "pass the folder that holds it as the root and name the split")
    image_col, label_col = _hf_columns(folder, ds.features)
    table = ds.select_columns([image_col, label_col]).with_format("arrow")[:]
    return _hf_table(folder, table, ds.features, image_col, label_col, [folder] * len(table),
                     list(range(len(table))), classes)


def read_parquet(files: Sequence[Path], classes: list[str] | None = None) -> ImageTable:
    """Parquet files of one split (rows in file order, then row order within a file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables, sources, rows = [], [], []
    features = None
    image_col = label_col = ""
    for path in files:
        try:
            schema = pq.read_schema(path)
            if features is None:
                features = _features_from_schema(schema)
                image_col, label_col = _hf_columns(path, features)
            missing = [c for c in (image_col, label_col) if c not in schema.names]
            if missing:
                raise DataError(path, f"missing column {missing[0]!r} (found: {', '.join(schema.names)})")
            table = pq.read_table(path, columns=[image_col, label_col])
        except (pa.ArrowException, OSError) as exc:
            raise DataError(path, f"cannot read parquet ({exc.__class__.__name__}: {exc})") from None
        tables.append(table)
        sources += [path] * len(table)
        rows += list(range(len(table)))
    table = pa.concat_tables(tables, promote_options="permissive")
    return _hf_table(Path(files[0]), table, features, image_col, label_col, sources, rows, classes)


def _features_from_schema(schema: Any) -> dict:
    """The HF Features stored in a parquet schema's metadata, else a dict of the arrow types."""
    try:
        import datasets

        return datasets.Features.from_arrow_schema(schema)
    except ImportError:
        return {name: schema.field(name).type for name in schema.names}


def _feature_kind(feature: Any) -> str:
    return type(feature).__name__


def _pick_column(path: Path, features: Any, preferred: tuple[str, ...], kind: str, what: str) -> str:
    names = list(features)
    for name in preferred:
        if name in names:
            return name
    typed = [n for n in names if _feature_kind(features[n]) == kind]
    if len(typed) == 1:
        return typed[0]
    raise DataError(path, f"missing {what} column {' or '.join(map(repr, preferred))} (found: {', '.join(names) or 'none'})",
                    f"rename the {what} column to {preferred[0]!r}")


def _hf_columns(path: Path, features: Any) -> tuple[str, str]:
    image_col = _pick_column(path, features, IMAGE_COLUMNS, "Image", "image")
    label_col = _pick_column(path, features, LABEL_COLUMNS, "ClassLabel", "label")
    return image_col, label_col


def _hf_table(source: Path, table: Any, features: Any, image_col: str, label_col: str, files: list[Path],
              rows: list[int], classes: list[str] | None) -> ImageTable:
    if len(table) == 0:
        raise DataError(source, "no rows")
    where = [f"row {r} of {f}" for f, r in zip(files, rows, strict=True)]
    images = [_hf_image(v, f, at) for v, f, at in zip(table.column(image_col).to_pylist(), files, where, strict=True)]
    label_feature = features[label_col] if features is not None else None
    names = list(label_feature.names) if _feature_kind(label_feature) == "ClassLabel" else None
    labels, classes = encode_labels(table.column(label_col).to_pylist(), where, classes or names)
    return ImageTable(images, labels, classes, source, where)


def _hf_image(value: Any, source: Path, where: str) -> Any:
    """An HF image cell ({"bytes", "path"}, bytes, a path string or a PIL image) -> bytes, Path or PIL."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, str) and value:
        path = Path(value)
        if not path.is_absolute():
            path = (source if source.is_dir() else source.parent) / path
        if not path.is_file():
            raise DataError(where, f"image {path} not found")
        return path
    raise DataError(where, "empty image cell")


# ---- torch Dataset ------------------------------------------------------------------------------


def _channel_stats(values: Sequence[float], what: str) -> torch.Tensor:
    stats = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    if stats.shape != (3,):
        raise UsageError(f"image {what} needs 3 values (R, G, B), got {len(stats)}")
    if what == "std" and bool((stats <= 0).any()):
        raise UsageError(f"image std must be positive, got {stats.tolist()}")
    return stats.view(3, 1, 1)


class ImageDataset(torch.utils.data.Dataset):
    """Item i -> {"pixel_values": float32 [3, S, S], "label": int, "index": i}.

    The image is decoded to RGB, resized to S x S with PIL's bicubic filter (skipped when it already
    has that size), scaled to [0, 1] and normalised by ``mean`` / ``std``. With ``cache`` the resized
    uint8 pixels are kept in memory after the first read (per DataLoader worker process).
    """

    def __init__(self, table: ImageTable, image_size: int, mean: Sequence[float], std: Sequence[float],
                 cache: bool = True):
        if int(image_size) < 1:
            raise UsageError(f"image_size must be a positive number of pixels, got {image_size}")
        self.table = table
        self.image_size = int(image_size)
        self.mean = _channel_stats(mean, "mean")
        self.std = _channel_stats(std, "std")
        self.cache = cache
        self._pixels: list[np.ndarray | None] = [None] * len(table)

    def __len__(self) -> int:
        return len(self.table)

    def pixels(self, i: int) -> np.ndarray:
        """Item ``i`` as resized uint8 pixels [S, S, 3]."""
        cached = self._pixels[i]
        if cached is not None:
            return cached
        img = self.table.load(i)
        size = (self.image_size, self.image_size)
        if img.size != size:
            img = img.resize(size, Image.Resampling.BICUBIC)
        arr = np.array(img, dtype=np.uint8)  # a writable copy: torch.from_numpy shares it
        if self.cache:
            self._pixels[i] = arr
        return arr

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = torch.from_numpy(self.pixels(i)).permute(2, 0, 1).float().div_(255.0)
        x = (x - self.mean) / self.std
        return {"pixel_values": x, "label": int(self.table.labels[i]), "index": int(i)}


def collate(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """ImageDataset items -> {"pixel_values": [B, 3, S, S], "labels": [B] long, "index": [B] long}."""
    return {
        "pixel_values": torch.stack([it["pixel_values"] for it in items]),
        "labels": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
    }


def class_counts(table: ImageTable) -> dict[str, int]:
    """Images per class name, for summaries."""
    counts = np.bincount(table.labels, minlength=len(table.classes))
    return {c: int(n) for c, n in zip(table.classes, counts, strict=True)}


__all__ = ["IMAGE_SUFFIXES", "ImageDataset", "ImageTable", "class_counts", "collate", "encode_labels", "load_image",
           "read_csv_list", "read_hf_disk", "read_image_folder", "read_parquet", "read_split", "splits"]
