"""The TQD training-data reader (data.py): meta CSV validation, type assignment, ClipDataset and collate."""

from __future__ import annotations

import csv
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.tqd import data, scoring, synth
from affectkit.tasks.tqd.method_sampler import TYPE_CODES

cv2 = pytest.importorskip("cv2")

COUNTS = {"natural": 4, "golden": 2, "motion": 2, "quality": 2, "low": 2, "heldout": 2, "pairs": 1}
N = 17  # 4 + 4 * 2 + 2 + 3 * 1


def rows_of(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(csv_path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return csv_path


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny benchmark pool (17 clips of 16 frames at 32x32) and its truth."""
    out = tmp_path_factory.mktemp("tqd_data_pool")
    truth = synth.make(out, seed=3, quick=True, counts=COUNTS)
    return out, truth


@pytest.fixture
def scored(pool, tmp_path) -> Path:
    """A copy of the pool's meta CSV (next to the clips) with flow = speed, vq = 1 - degradation."""
    out, _ = pool
    rows = rows_of(out / "meta.csv")
    for r in rows:
        r["flow"] = r["speed"]
        r["vq"] = f"{1 - float(r['degradation']):.6g}"
    return write_rows(out / f"scored_{tmp_path.name}.csv", rows)


# ---- read_meta ------------------------------------------------------------------------------------


def test_read_meta_round_trip(pool):
    out, truth = pool
    rows = rows_of(out / "meta.csv")
    table = data.read_meta(out / "meta.csv")
    assert len(table) == N == truth["n_clips"]
    assert table.root == out.absolute() and table.meta == out / "meta.csv"
    assert table.type_source == "column" and "type column" in table.notes[0]
    assert table.types == [r["type"] for r in rows]
    assert table.split == [r["split"] for r in rows]
    assert table.rows == list(range(1, N + 1))
    for p, r in zip(table.paths, rows, strict=True):
        assert p.is_absolute() and p.is_file() and p == (out / r["path"]).absolute()
    assert np.isnan(table.flow).all() and np.isnan(table.vq).all()  # benchmark leaves scores to the scorer
    assert table.flow.dtype == np.float64 and table.flow.shape == (N,)
    assert set(table.columns) == set(synth.META_COLUMNS) - {"path", "type", "flow", "vq", "split"}
    assert table.columns["text"] == [r["text"] for r in rows] and table.columns["aes"] == [""] * N
    assert table.columns["subset"][0] == "natural"
    # type counts agree with the generator's truth
    counts = table.type_counts()
    assert list(counts) == list(data.TYPES)
    assert counts == {t: truth["counts"]["train"][t] + truth["counts"]["test"][t] for t in data.TYPES}
    assert table.codes().tolist() == [TYPE_CODES[t] for t in table.types]


def test_select_by_split_and_type(pool):
    out, truth = pool
    table = data.read_meta(out / "meta.csv")
    test = table.select(split="test")
    assert len(test) == COUNTS["heldout"] + 3 * COUNTS["pairs"] and set(test.split) == {"test"}
    assert test.rows == [i + 1 for i, s in enumerate(table.split) if s == "test"]
    assert test.columns["subset"] == [s for s, sp in zip(table.columns["subset"], table.split, strict=True)
                                      if sp == "test"]
    both = table.select(split=["train", "test"])
    assert len(both) == N
    mv = table.select(split="train", types=["M", "quality"])
    assert set(mv.types) <= {"motion", "quality"}
    assert len(mv) == truth["counts"]["train"]["motion"] + truth["counts"]["train"]["quality"]
    assert table.select(types=0).types == ["golden"] * table.type_counts()["golden"]
    assert len(table.select(types=np.int64(3))) == table.type_counts()["low"]
    with pytest.raises(UsageError, match="no row has split 'val'"):
        table.select(split="val")
    with pytest.raises(UsageError, match="unknown data type"):
        table.select(types="gold")


def test_paths_relative_to_the_csv_or_absolute(pool, tmp_path):
    out, _ = pool
    rows = rows_of(out / "meta.csv")[:3]
    sub = tmp_path / "lists" / "deep"
    sub.mkdir(parents=True)
    rows[0]["path"] = str((out / rows[0]["path"]).absolute())  # absolute
    rows[1]["path"] = os.path.relpath(out / rows[1]["path"], sub)  # relative to the CSV's own folder
    rows[2]["path"] = str((out / rows[2]["path"]).absolute())
    table = data.read_meta(write_rows(sub / "meta.csv", rows))
    assert table.root == sub.absolute()
    assert [p.resolve() for p in table.paths] == [(out / r["path"]).resolve() for r in rows_of(out / "meta.csv")[:3]]
    # no split column: every row is train
    table = data.read_meta(write_rows(sub / "nosplit.csv", rows, ["path", "type"]))
    assert table.split == ["train"] * 3 and set(table.columns) == set()


def test_type_letters_are_normalised(pool):
    out, _ = pool
    rows = rows_of(out / "meta.csv")[:6]
    for r, letter in zip(rows, ["G", "m", " V ", "l", "Golden", "LOW"], strict=True):
        r["type"] = letter
    table = data.read_meta(write_rows(out / "letters.csv", rows))
    assert table.types == ["golden", "motion", "quality", "low", "golden", "low"]
    assert [data.normalise_type(x) for x in ("g", "Q", "", "quality")] == ["golden", None, "", "quality"]


# ---- errors: file, row and column named -------------------------------------------------------------


def _edit(rows: list[dict[str, str]], row: int, **cells: str) -> list[dict[str, str]]:
    """Set cells of the 1-based data row ``row``."""
    rows[row - 1].update(cells)
    return rows


CASES = {
    "empty path": (lambda rs: _edit(rs, 3, path=""), "row 3, column 'path': empty path"),
    "missing video": (lambda rs: _edit(rs, 2, path="clips/nope.avi"), "row 2, column 'path': video not found"),
    "unknown type": (lambda rs: _edit(rs, 4, type="gold"), "row 4, column 'type': unknown type 'gold'"),
    "non-numeric flow": (lambda rs: _edit(rs, 2, flow="fast"), "row 2, column 'flow': not a number ('fast')"),
    "duplicate path": (lambda rs: _edit(rs, 6, path="./" + rs[0]["path"]),
                       "row 6, column 'path': duplicate of row 1"),
    "partial type": (lambda rs: _edit(rs, 5, type=""), "row 5, column 'type': empty, while other rows have"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_rows_name_the_file_row_and_column(pool, tmp_path, case):
    out, _ = pool
    edit, expected = CASES[case]
    bad = write_rows(out / f"bad_{tmp_path.name}.csv", edit(rows_of(out / "meta.csv")))
    with pytest.raises(DataError) as err:
        data.read_meta(bad)
    assert err.value.message.startswith(f"{bad}: ") and expected in err.value.message
    assert err.value.exit_code == 2


@pytest.mark.parametrize("column,value,problem", [("flow", "nan", "NaN"), ("vq", "", "empty"),
                                                  ("flow", "inf", "not finite ('inf')")])
def test_scores_needed_to_assign_types_must_be_finite(pool, scored, column, value, problem):
    out, _ = pool
    rows = rows_of(scored)
    for r in rows:
        r["type"] = ""
    rows[6][column] = value
    bad = write_rows(scored, rows)
    with pytest.raises(DataError) as err:
        data.read_meta(bad)
    msg = err.value.message
    assert msg.startswith(f"{bad}: row 7, column '{column}': {problem}") and "assign types" in msg


def test_file_level_errors(pool, tmp_path):
    out, _ = pool
    with pytest.raises(DataError, match="meta CSV not found"):
        data.read_meta(tmp_path / "absent.csv")
    nopath = write_rows(tmp_path / "nopath.csv", [{"video": "a.avi", "type": "golden"}])
    with pytest.raises(DataError, match=r"nopath.csv: no 'path' column \(columns: video, type\)"):
        data.read_meta(nopath)
    header_only = tmp_path / "header.csv"
    header_only.write_text("path,type\n\n")
    with pytest.raises(DataError, match="no data rows"):
        data.read_meta(header_only)
    wide = out / "wide.csv"
    first = rows_of(out / "meta.csv")[0]
    wide.write_text(f"path,type\n{first['path']},golden\n{first['path']},golden,extra\n")
    with pytest.raises(DataError, match="row 2: 3 cells but the header has 2 columns"):
        data.read_meta(wide)


def test_no_types_and_no_scores_points_to_the_scorer(pool):
    out, _ = pool
    rows = rows_of(out / "meta.csv")
    bare = write_rows(out / "bare.csv", rows, ["path", "text", "split"])
    with pytest.raises(DataError) as err:
        data.read_meta(bare)
    assert "no type column and no flow / vq scores" in err.value.message
    assert "affectkit data score-videos" in err.value.hint
    for r in rows:
        r["type"], r["flow"] = "", "1.5"
    only_flow = write_rows(out / "only_flow.csv", rows)
    with pytest.raises(DataError, match="the type column is empty and only flow has values"):
        data.read_meta(only_flow)
    # without need_types the table is untyped
    table = data.read_meta(bare, need_types=False)
    assert table.type_source == "none" and table.types == [""] * N
    assert table.codes().tolist() == [data.UNTYPED] * N and table.type_counts()["untyped"] == N


def test_need_scores(pool, scored):
    out, _ = pool
    assert np.isfinite(data.read_meta(scored, need_scores=True).flow).all()
    with pytest.raises(DataError, match=r"row 1, column 'flow': empty, but a finite score is needed \(need_scores"):
        data.read_meta(out / "meta.csv", need_scores=True)


# ---- types assigned from the scores -----------------------------------------------------------------


def test_types_assigned_from_flow_and_vq_when_type_is_empty(pool, scored):
    out, _ = pool
    rows = rows_of(scored)
    flow = [float(r["flow"]) for r in rows]
    vq = [float(r["vq"]) for r in rows]
    for r in rows:
        r["type"] = ""
    empty = write_rows(scored.with_name("empty_" + scored.name), rows)
    table = data.read_meta(empty)
    assert table.type_source == "scores"
    assert "assign_types" in table.notes[0] and "the type column is empty" in table.notes[0]
    assert table.types == scoring.assign_types(flow, vq)
    np.testing.assert_allclose(table.flow, flow)
    # no type column at all, other percentiles
    cols = [c for c in rows[0] if c != "type"]
    absent = write_rows(empty.with_name("absent_" + empty.name), rows, cols)
    table = data.read_meta(absent, motion_pct=60, quality_pct=80, low_pct=40)
    assert table.types == scoring.assign_types(flow, vq, 60, 80, 40)
    assert "P60" in table.notes[0] and "absent" in table.notes[0]
    assert sum(table.type_counts().values()) == N
    with pytest.raises(UsageError, match="low_pct"):
        data.read_meta(absent, low_pct=90)
    # a filled type column wins over the scores
    assert data.read_meta(scored).type_source == "column"
    assert data.read_meta(scored).types == [r["type"] for r in rows_of(out / "meta.csv")]


# ---- ClipDataset and collate ----------------------------------------------------------------------


def test_clip_dataset_shapes_ranges_and_codes(pool):
    out, _ = pool
    table = data.read_meta(out / "meta.csv")
    ds = data.ClipDataset(table, frames=16)
    assert len(ds) == N and ds.shape == (3, 16, 32, 32)
    for i in (0, 5, N - 1):
        item = ds[i]
        clip = item["clip"]
        assert clip.dtype == torch.float32 and tuple(clip.shape) == (3, 16, 32, 32)
        assert clip.min() >= -1 and clip.max() <= 1
        assert item["type"] == TYPE_CODES[table.types[i]] and item["index"] == i
        assert math.isnan(item["flow"]) and math.isnan(item["vq"])
        raw = synth.load_clip(table.paths[i])  # [T, H, W, C] uint8 -> [C, T, H, W] in [-1, 1]
        ref = torch.from_numpy(raw).permute(3, 0, 1, 2).float() / 127.5 - 1
        torch.testing.assert_close(clip, ref)
    assert ds[-1]["index"] == N - 1
    with pytest.raises(IndexError):
        ds[N]
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False, collate_fn=data.collate)
    batch = next(iter(loader))
    assert tuple(batch["clip"].shape) == (4, 3, 16, 32, 32) and batch["clip"].dtype == torch.float32
    assert batch["type"].dtype == torch.long and batch["type"].tolist() == [TYPE_CODES[t] for t in table.types[:4]]
    assert batch["index"].tolist() == [0, 1, 2, 3] and batch["flow"].dtype == torch.float32
    with pytest.raises(UsageError):
        data.collate([])


def test_scores_reach_the_items(scored):
    table = data.read_meta(scored)
    ds = data.ClipDataset(table, frames=4, cache=False)
    item = ds[3]
    assert item["flow"] == pytest.approx(table.flow[3]) and item["vq"] == pytest.approx(table.vq[3])
    batch = data.collate([ds[0], ds[1]])
    np.testing.assert_allclose(batch["vq"].numpy(), table.vq[:2], rtol=1e-6)


def test_untyped_items_get_code_minus_one(pool):
    out, _ = pool
    bare = write_rows(out / "untyped.csv", rows_of(out / "meta.csv")[:2], ["path"])
    ds = data.ClipDataset(data.read_meta(bare, need_types=False), frames=2)
    assert ds[1]["type"] == data.UNTYPED


def test_short_clips_are_looped_and_long_ones_cropped(pool):
    out, _ = pool
    table = data.read_meta(out / "meta.csv").take([2])
    raw = synth.load_clip(table.paths[0])
    looped = data.ClipDataset(table, frames=40)[0]["clip"]
    assert tuple(looped.shape) == (3, 40, 32, 32)
    torch.testing.assert_close(looped[:, 16:32], looped[:, :16])
    torch.testing.assert_close(looped[:, 32:40], looped[:, :8])
    start = data.ClipDataset(table, frames=8)[0]["clip"]
    center = data.ClipDataset(table, frames=8, crop="center")[0]["clip"]
    ref = torch.from_numpy(raw).permute(3, 0, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(start, ref[:, :8])
    torch.testing.assert_close(center, ref[:, 4:12])
    assert np.array_equal(data.fit_clip(raw[:3], 7), raw[[0, 1, 2, 0, 1, 2, 0]])
    with pytest.raises(UsageError, match="temporal crop"):
        data.ClipDataset(table, crop="random")
    with pytest.raises(UsageError, match="frames must be a positive integer"):
        data.ClipDataset(table, frames=0)


def test_resize_short_side_and_centre_crop(pool):
    out, _ = pool
    table = data.read_meta(out / "meta.csv")
    small = data.ClipDataset(table.take([0, 1]), frames=4, size=16)
    assert small.shape == (3, 4, 16, 16) and tuple(small[1]["clip"].shape) == (3, 4, 16, 16)
    raw = synth.load_clip(table.paths[0])[:4]
    ref = np.stack([cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA) for f in raw])
    got = ((small[0]["clip"].permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert np.array_equal(got, ref)
    big = data.ClipDataset(table.take([0]), frames=2, size=48)[0]["clip"]
    assert tuple(big.shape) == (3, 2, 48, 48) and big.min() >= -1 and big.max() <= 1
    # a wide clip: short side to the size, then the centre square
    wide = np.zeros((2, 20, 40, 3), np.uint8)
    wide[:, :, 15:25] = 255  # a bright centre band, 10 px wide
    fitted = data.fit_clip(wide, 2, size=10)
    assert fitted.shape == (2, 10, 10, 3)
    assert fitted[:, :, 3:7].min() == 255 and fitted[:, :, 0].max() == 0 and fitted[:, :, -1].max() == 0
    tall = data.fit_clip(np.zeros((1, 30, 12, 1), np.uint8), 3, size=6)
    assert tall.shape == (3, 6, 6, 1)


def test_clips_of_different_sizes_need_a_size(pool, tmp_path):
    out, _ = pool
    other = tmp_path / "other"
    synth.make(other, seed=4, quick=True, counts={k: 0 for k in COUNTS} | {"golden": 1}, size=24, frames=6)
    rows = [{"path": str(out / rows_of(out / "meta.csv")[0]["path"]), "type": "golden"},
            {"path": str(other / rows_of(other / "meta.csv")[0]["path"]), "type": "G"}]
    table = data.read_meta(write_rows(tmp_path / "mixed.csv", rows))
    ds = data.ClipDataset(table, frames=6)
    assert ds.shape == (3, 6, 32, 32) and tuple(ds[0]["clip"].shape) == (3, 6, 32, 32)
    with pytest.raises(DataError) as err:
        ds[1]
    assert err.value.message.startswith(str(table.paths[1])) and "24x24" in err.value.message
    assert "row 2 of" in err.value.message and "size=" in err.value.hint
    fixed = data.ClipDataset(table, frames=16, size=16)
    batch = data.collate([fixed[0], fixed[1]])  # the 6-frame clip is looped to 16
    assert tuple(batch["clip"].shape) == (2, 3, 16, 16, 16)


def test_cache_hit_returns_equal_tensors(pool):
    out, _ = pool
    table = data.read_meta(out / "meta.csv").take([0, 1, 2])
    ds = data.ClipDataset(table, frames=16, size=16)
    first = ds[1]["clip"]
    first.add_(5.0)  # a caller writing into its tensor must not touch the cache
    second, third = ds[1]["clip"], ds[1]["clip"]
    assert (ds.misses, ds.hits) == (1, 2)
    torch.testing.assert_close(second, third)
    torch.testing.assert_close(second, first - 5.0)
    assert ds.cache_bytes == 16 * 16 * 16 * 3
    ds.clear_cache()
    assert ds.cache_bytes == 0
    nocache = data.ClipDataset(table, frames=16, size=16, cache=False)
    torch.testing.assert_close(nocache[1]["clip"], second)
    nocache[1]
    assert (nocache.misses, nocache.hits, nocache.cache_bytes) == (2, 0, 0)


def test_unreadable_clip_is_a_data_error_naming_it(pool, tmp_path):
    out, _ = pool
    copy = tmp_path / "pool"
    shutil.copytree(out / "clips", copy / "clips")
    shutil.copy(out / "meta.csv", copy / "meta.csv")
    table = data.read_meta(copy / "meta.csv")
    victim = table.paths[3]
    blob = victim.read_bytes()
    victim.write_bytes(blob[: len(blob) // 2])  # truncated
    ds = data.ClipDataset(table, frames=16)
    assert tuple(ds[2]["clip"].shape) == (3, 16, 32, 32)
    with pytest.raises(DataError) as err:
        ds[3]
    msg = err.value.message
    assert msg.startswith(f"{victim}: ") and "truncated video" in msg and "row 4 of" in msg
    assert "does not skip" in err.value.hint
    empty = table.paths[0]
    empty.write_bytes(b"")  # the first clip: already caught when the dataset probes its frame size
    with pytest.raises(DataError, match=str(empty.name)) as err:
        data.ClipDataset(table, frames=16)
    assert "row 1 of" in err.value.message
    with pytest.raises(DataError, match="cannot open video"):
        data.ClipDataset(table, frames=16, size=16)[0]
