"""Readers of image classification datasets (data.py): each layout round-trips a tiny set, and each
bad input gives a one-line DataError naming the file (and the row where there is one)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.act_prompt import data

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "emu": (30, 30, 200)}


def png_bytes(colour: tuple[int, int, int], size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: Path, colour: tuple[int, int, int], size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(colour, size))
    return path


def image_folder(root: Path, split: str, per_class: dict[str, int]) -> None:
    for name, n in per_class.items():
        (root / split / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_png(root / split / name / f"{i}.png", COLOURS[name])


def first_pixel(table: data.ImageTable, i: int) -> tuple[int, ...]:
    return table.load(i).getpixel((0, 0))


def assert_colours_match_labels(table: data.ImageTable) -> None:
    for i in range(len(table)):
        assert first_pixel(table, i) == COLOURS[table.classes[table.labels[i]]]


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---- round trips --------------------------------------------------------------------------------


def test_image_folder_splits_classes_and_alignment(tmp_path):
    image_folder(tmp_path, "train", {"cat": 2, "dog": 3, "emu": 1})
    image_folder(tmp_path, "validation", {"cat": 1, "emu": 1})
    image_folder(tmp_path, "test", {"dog": 1})
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    assert data.splits(tmp_path) == ["train", "validation", "test"]
    train = data.read_split(tmp_path, "train")
    assert train.classes == ["cat", "dog", "emu"] and len(train) == 6
    assert train.labels.dtype == np.int64 and train.labels.tolist() == [0, 0, 1, 1, 1, 2]
    assert_colours_match_labels(train)
    val = data.read_split(tmp_path, "val", classes=train.classes)  # alias of "validation"
    assert val.labels.tolist() == [0, 2] and val.source == tmp_path / "validation"
    test = data.read_split(tmp_path, "test", classes=train.classes)
    assert test.labels.tolist() == [1] and test.classes == train.classes
    sub = train.take([5, 0])
    assert sub.labels.tolist() == [2, 0] and sub.where == [train.where[5], train.where[0]]


def test_image_folder_without_split_folders_is_split_all(tmp_path):
    image_folder(tmp_path, ".", {"cat": 1, "dog": 2})
    assert data.splits(tmp_path) == ["all"]
    table = data.read_split(tmp_path, "all")
    assert table.classes == ["cat", "dog"] and table.labels.tolist() == [0, 1, 1]


def test_csv_names_integers_and_absolute_paths(tmp_path):
    write_png(tmp_path / "img" / "a.png", COLOURS["cat"])
    write_png(tmp_path / "img" / "b.png", COLOURS["dog"])
    absolute = write_png(tmp_path / "elsewhere" / "c.png", COLOURS["emu"])
    (tmp_path / "train.csv").write_text(f"path,label\nimg/a.png,cat\nimg/b.png,dog\n{absolute},emu\n")
    (tmp_path / "test.csv").write_text("label,path\n1,img/b.png\n0,img/a.png\n")
    assert data.splits(tmp_path) == ["train", "test"]
    train = data.read_split(tmp_path, "train")
    assert train.classes == ["cat", "dog", "emu"] and train.labels.tolist() == [0, 1, 2]
    assert train.where[0] == f"row 2 of {tmp_path / 'train.csv'}"
    assert_colours_match_labels(train)
    test = data.read_split(tmp_path, "test", classes=train.classes)
    assert test.labels.tolist() == [1, 0]
    assert data.read_split(tmp_path, "test").classes == ["0", "1"]


def hf_dataset(names: list[str], columns: tuple[str, str] = ("image", "label")):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({columns[0]: datasets.Image(), columns[1]: datasets.ClassLabel(names=["cat", "dog", "emu"])})
    rows = {columns[0]: [Image.new("RGB", (8, 8), COLOURS[n]) for n in names],
            columns[1]: [["cat", "dog", "emu"].index(n) for n in names]}
    return datasets.Dataset.from_dict(rows, features=features)


def test_save_to_disk_split_and_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    hf_dataset(["dog", "cat", "dog"]).save_to_disk(str(tmp_path / "one" / "train"))
    table = data.read_split(tmp_path / "one", "train")
    assert table.classes == ["cat", "dog", "emu"] and table.labels.tolist() == [1, 0, 1]
    assert isinstance(table.images[0], bytes) and table.where[2] == f"row 2 of {tmp_path / 'one' / 'train'}"
    assert_colours_match_labels(table)
    dd = datasets.DatasetDict({"train": hf_dataset(["emu"]), "test": hf_dataset(["cat", "emu"], ("img", "labels"))})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert data.splits(tmp_path / "dd") == ["train", "test"]
    test = data.read_split(tmp_path / "dd", "test")
    assert test.labels.tolist() == [0, 2]
    assert_colours_match_labels(test)


def test_parquet_hub_layout_and_plain_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    (tmp_path / "data").mkdir()
    hf_dataset(["cat", "dog"]).to_parquet(str(tmp_path / "data" / "train-00000-of-00002.parquet"))
    hf_dataset(["emu"]).to_parquet(str(tmp_path / "data" / "train-00001-of-00002.parquet"))
    images = pa.array([{"bytes": png_bytes(COLOURS["dog"]), "path": None}, {"bytes": None, "path": "x/e.png"}])
    write_png(tmp_path / "x" / "e.png", COLOURS["emu"])
    pq.write_table(pa.table({"img": images, "labels": [1, 2]}), tmp_path / "test.parquet")
    assert data.splits(tmp_path) == ["train", "test"]
    train = data.read_split(tmp_path, "train")
    assert train.classes == ["cat", "dog", "emu"] and train.labels.tolist() == [0, 1, 2]
    assert train.where[2] == f"row 0 of {tmp_path / 'data' / 'train-00001-of-00002.parquet'}"
    assert_colours_match_labels(train)
    test = data.read_split(tmp_path, "test", classes=train.classes)
    assert test.labels.tolist() == [1, 2] and test.images[1] == tmp_path / "x" / "e.png"
    assert_colours_match_labels(test)
    assert data.read_split(tmp_path, "test").classes == ["0", "1", "2"]


# ---- the torch Dataset --------------------------------------------------------------------------


def test_image_dataset_resizes_normalises_and_collates(tmp_path):
    image_folder(tmp_path, "train", {"cat": 2, "dog": 1})
    table = data.read_split(tmp_path, "train")
    ds = data.ImageDataset(table, image_size=12, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    item = ds[2]
    assert item["label"] == 1 and item["index"] == 2
    x = item["pixel_values"]
    assert x.dtype == torch.float32 and x.shape == (3, 12, 12)
    expected = (torch.tensor(COLOURS["dog"]) / 255.0 - 0.5) / torch.tensor([0.25, 0.5, 1.0])
    assert torch.allclose(x[:, 5, 5], expected, atol=1e-6)
    batch = data.collate([ds[i] for i in range(len(ds))])
    assert batch["pixel_values"].shape == (3, 3, 12, 12)
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [0, 0, 1]
    assert batch["index"].tolist() == [0, 1, 2]
    (tmp_path / "train" / "dog" / "0.png").unlink()  # cached: no second read
    assert torch.equal(ds[2]["pixel_values"], x)
    with pytest.raises(UsageError, match="3 values"):
        data.ImageDataset(table, 12, mean=(0.5,), std=(1, 1, 1))


# ---- bad inputs ---------------------------------------------------------------------------------


def test_split_folder_without_classes_or_images(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError) as exc:
        data.read_split(tmp_path, "train")
    assert one_line(exc) == f"{tmp_path / 'train'}: no classes (no class sub-folders)"
    (tmp_path / "train" / "cat").mkdir()
    with pytest.raises(DataError) as exc:
        data.read_split(tmp_path, "train")
    assert str(tmp_path / "train") in one_line(exc) and "no images" in one_line(exc)
    with pytest.raises(DataError, match=r"no split 'test' \(found: train\)"):
        data.read_split(tmp_path, "test")
    with pytest.raises(DataError, match="dataset folder not found"):
        data.read_split(tmp_path / "nope", "train")


def test_csv_missing_column_file_and_label(tmp_path):
    write_png(tmp_path / "a.png", COLOURS["cat"])
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("file,label\na.png,cat\n")
    with pytest.raises(DataError) as exc:
        data.read_split(tmp_path, "train")
    assert one_line(exc) == f"{csv_path}: missing column 'path' (found: file, label)"
    csv_path.write_text("path,label\na.png,cat\nmissing.png,dog\n")
    with pytest.raises(DataError) as exc:
        data.read_split(tmp_path, "train")
    assert one_line(exc) == f"row 3 of {csv_path}: image {tmp_path / 'missing.png'} not found"
    for empty in ("", "NaN"):
        csv_path.write_text(f"path,label\na.png,cat\na.png,{empty}\n")
        with pytest.raises(DataError) as exc:
            data.read_split(tmp_path, "train")
        assert one_line(exc) == f"row 3 of {csv_path}: empty label"


def test_corrupt_image_names_file_and_row(tmp_path):
    image_folder(tmp_path, "train", {"cat": 1})
    bad = tmp_path / "train" / "cat" / "bad.png"
    bad.write_bytes(png_bytes(COLOURS["cat"])[:30])  # truncated
    table = data.read_split(tmp_path, "train")
    with pytest.raises(DataError) as exc:
        data.ImageDataset(table, 8, (0, 0, 0), (1, 1, 1))[table.where.index(str(bad))]
    assert one_line(exc) == f"{bad}: cannot read image (unknown format or corrupt)"
    (tmp_path / "test.csv").write_text("path,label\ntrain/cat/bad.png,cat\n")
    with pytest.raises(DataError) as exc:
        data.read_split(tmp_path, "test").load(0)
    assert one_line(exc) == f"row 2 of {tmp_path / 'test.csv'}: cannot read image {bad} (unknown format or corrupt)"


def test_hf_missing_columns_name_the_file(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"image": [png_bytes(COLOURS["cat"])], "target": [0]}), path)
    with pytest.raises(DataError) as exc:
        data.read_split(tmp_path, "train")
    assert one_line(exc) == f"{path}: missing label column 'label' or 'labels' (found: image, target)"
    datasets = pytest.importorskip("datasets")
    plain = datasets.Dataset.from_dict({"picture": [png_bytes(COLOURS["cat"])], "label": [0]})  # no Image feature
    plain.save_to_disk(str(tmp_path / "hf" / "train"))
    with pytest.raises(DataError) as exc:
        data.read_split(tmp_path / "hf", "train")
    assert one_line(exc).startswith(f"{tmp_path / 'hf' / 'train'}: missing image column")
    pq.write_table(pa.table({"image": [png_bytes(COLOURS["cat"]), None], "label": [0, None]}), path)
    with pytest.raises(DataError) as exc:
        data.read_split(tmp_path, "train")
    assert one_line(exc) == f"row 1 of {path}: empty image cell"
