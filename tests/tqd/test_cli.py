"""tqd from the command line: data score-videos (unreadable videos reported, not fatal), train and evaluate
with the sample metrics, the gradient-similarity diagnostic and plots, and one-line errors for bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from tests.cli.helpers import invoke, json_lines, one_error

COUNTS = {"natural": 6, "golden": 4, "motion": 6, "quality": 6, "low": 0, "heldout": 4, "pairs": 2}
TINY = ["--set", "data.frames=4", "--set", "model.width=8", "--set", "model.depth=1", "--set", "model.emb_dim=16",
        "--set", "train.batch_size=4", "--set", "train.eval_every=3", "--set", "train.checkpoint_every=3",
        "--set", "eval.draws=1", "--set", "eval.samples=4", "--set", "eval.sample_steps=2",
        "--set", "eval.gradsim_draws=1"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    from affectkit.tasks.tqd import synth

    out = tmp_path_factory.mktemp("tqd-cli") / "data"
    synth.make(out, seed=1, quick=True, counts=COUNTS, size=16, frames=8)
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_score_videos_writes_an_open_sora_meta_csv_and_reports_unreadable_videos(pool, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for p in sorted((pool / "clips").glob("*.avi"))[:6]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.avi").write_bytes(b"not a video at all")
    result = invoke("--json", "data", "score-videos", str(folder), "--out", str(tmp_path / "meta.csv"))
    assert result.exit_code == 0, result.stderr
    summary = json_lines(result.stdout)[-1]
    assert summary["n_videos"] == 7 and summary["n_scored"] == 6 and summary["n_failed"] == 1
    assert "broken.avi" in result.stderr  # reported by name, the rest scored
    rows = _rows(tmp_path / "meta.csv")
    assert list(rows[0])[:6] == ["path", "text", "aes", "flow", "vq", "type"]
    broken = next(r for r in rows if r["path"].endswith("broken.avi"))
    assert broken["flow"] == "" and broken["type"] == "" and broken["score_error"]
    assert all(float(r["flow"]) >= 0 and r["type"] in ("golden", "motion", "quality", "low")
               for r in rows if r is not broken)
    assert sum(summary["types"].values()) == 6


def test_score_videos_keeps_a_csv_and_writes_beside_it(pool, tmp_path):
    meta = tmp_path / "meta.csv"
    rows = _rows(pool / "meta.csv")[:3]
    with meta.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "text"])
        w.writeheader()
        w.writerows({"path": str(pool / r["path"]), "text": r["text"]} for r in rows)
    result = invoke("--json", "data", "score-videos", str(meta))
    assert result.exit_code == 0, result.stderr
    scored = _rows(tmp_path / "meta_scored.csv")
    assert [r["text"] for r in scored] == [r["text"] for r in rows] and all(r["vq"] for r in scored)


@pytest.mark.parametrize(("args", "needles"), [
    (["missing-folder"], ["missing-folder", "not found"]),
    (["{pool}/meta.csv", "--method", "raft"], ["--method", "raft"]),
    (["{pool}/meta.csv", "--on-error", "ignore"], ["--on-error"]),
])
def test_score_videos_bad_input_is_one_line(pool, tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    result = invoke("data", "score-videos", *[a.format(pool=pool) for a in args])
    one_error(result.exit_code, result.stderr, *needles)


def test_train_then_evaluate_with_samples_gradsim_and_plots(pool, tmp_path):
    run = tmp_path / "run"
    trained = invoke("--json", "train", "tqd", "--data", str(pool), "--out", str(run), "--max-steps", "6",
                     "--sampler", "tqd-truncated", *TINY)
    assert trained.exit_code == 0, trained.stderr
    result = json_lines(trained.stdout)[-1]
    assert result["step"] == 6 and result["sampler"] == "tqd-truncated"
    assert {"golden", "motion", "quality"} <= set(result["train_types"]) <= {"golden", "motion", "quality", "low"}
    assert (run / "checkpoints" / "best" / "model.safetensors").is_file()
    assert "mode: tqd-truncated" in (run / "config.yaml").read_text()

    plots = tmp_path / "plots"
    evaluated = invoke("--json", "evaluate", "tqd", "--run", str(run), "--gradsim", "--plots", str(plots))
    assert evaluated.exit_code == 0, evaluated.stderr
    out = json_lines(evaluated.stdout)[-1]
    metrics = out["metrics"]
    assert metrics["golden_loss"] == pytest.approx(result["best"]["value"], rel=1e-5)  # same fixed draws
    assert {"sample motion_w1", "sample sharpness_w1", "sample rfvd"} <= set(metrics)
    assert set(out["gradient_similarity"]) == {"degraded", "static"}
    assert all(-1.0 <= metrics[f"gradsim degraded s={s}"] <= 1.0 for s in ("0.05", "0.95"))
    assert {p.name for p in plots.iterdir()} == {"band_losses.png", "samples.png", "gradient_similarity.png"}


def test_balanced_batches_oversample_the_smaller_type(pool):
    from affectkit.core.config import apply_overrides
    from affectkit.tasks.tqd.config import TqdConfig
    from affectkit.tasks.tqd.train import BalancedView, TqdLoop

    cfg = apply_overrides(TqdConfig(), ["data.frames=4", "data.train_types=[golden, motion]", "data.balanced=true"])
    bundle = TqdLoop().build_data(cfg, pool)
    assert isinstance(bundle.train, BalancedView)
    codes = [bundle.train[i]["type"] for i in range(len(bundle.train))]
    assert codes.count(0) == codes.count(1) == max(bundle.info["train_types"].values())


@pytest.mark.parametrize(("args", "needles"), [
    (["--set", "sampler.mode=tqd-magic"], ["sampler.mode", "tqd-magic"]),
    (["--set", "sampler.p_skw=0.5"], ["p_skw"]),
    (["--sampler", "tqd-continuous"], ["tqd-continuous", "flow and vq"]),
    (["--set", "data.meta=nothing.csv"], ["nothing.csv"]),
])
def test_train_bad_config_is_one_line(pool, tmp_path, args, needles):
    result = invoke("train", "tqd", "--data", str(pool), "--out", str(tmp_path / "r"), "--max-steps", "1", *TINY, *args)
    one_error(result.exit_code, result.stderr, *needles)


def test_a_meta_csv_without_paths_is_one_line(pool, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.csv").write_text("video,text\nclips/a.avi,x\n")
    result = invoke("train", "tqd", "--data", str(data), "--out", str(tmp_path / "r"), "--max-steps", "1", *TINY)
    one_error(result.exit_code, result.stderr, "meta.csv", "path")


def test_evaluate_gradsim_without_pairs_is_one_line(pool, tmp_path):
    data = tmp_path / "data"
    (data / "clips").mkdir(parents=True)
    rows = _rows(pool / "meta.csv")
    keep = [r for r in rows if r["subset"] != "pair"]
    for r in keep:
        (data / r["path"]).write_bytes((pool / r["path"]).read_bytes())
    with (data / "meta.csv").open("w", newline="") as f:
        fields = [k for k in rows[0] if k not in ("pair", "variant")]
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(keep)
    run = tmp_path / "run"
    assert invoke("train", "tqd", "--data", str(data), "--out", str(run), "--max-steps", "3", *TINY).exit_code == 0
    result = invoke("evaluate", "tqd", "--run", str(run), "--gradsim", "--samples", "0")
    one_error(result.exit_code, result.stderr, "meta.csv", "pair")
