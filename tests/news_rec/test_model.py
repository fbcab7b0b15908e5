"""news-rec's network on the shared loop: no leakage into the graphs, the variants, the CLI
(train, evaluate a run or a prediction file, predict), and the baselines."""

import numpy as np
import pytest
import torch
from tests.cli.helpers import invoke, json_lines, one_error

from affectkit.core.config import apply_overrides
from affectkit.tasks.news_rec import TASK
from affectkit.tasks.news_rec.baselines import popularity_scores, recency_scores
from affectkit.tasks.news_rec.config import NewsRecConfig
from affectkit.tasks.news_rec.synth import make
from affectkit.tasks.news_rec.train import NewsRecLoop, impression_scores, load


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("news-rec") / "quick"
    make(out, seed=2, quick=True)
    return out


def _cfg(folder, *overrides):
    return TASK.resolve_config(apply_overrides(NewsRecConfig(), ["train.batch_size=256", *overrides]), folder)


def test_no_click_at_or_after_the_boundary_reaches_an_impression(quick):
    cfg = _cfg(quick)
    prep = load(cfg, quick)
    loop = NewsRecLoop()
    bundle = loop.build_data(cfg, quick)
    model = loop.build_model(cfg)
    width = prep.width
    for imps in (prep.train_imps, prep.valid, prep.test):
        for k in np.unique(imps.k):
            adj = model.graphs.global_at(int(k), torch.device("cpu")).coalesce()
            u, n = adj.indices()
            users = u < prep.n_users  # user -> news half
            pairs = set(zip(u[users].tolist(), (n[users] - prep.n_users).tolist(), strict=True))
            late = prep.click_stage >= k  # clicks at or after the boundary k * width
            allowed = set(map(tuple, prep.base_edges.tolist())) | {tuple(e) for e in prep.click_edges[~late].tolist()}
            assert pairs == allowed  # exactly the undated histories and the clicks before the boundary
    # the stage window of an impression ends at its boundary: stages k-T .. k-1 only
    batch = bundle.collate_fn(list(range(64)))
    seq, present = model.stage_sequence(model.news_features(), batch["users"], batch["k"], batch["time"], width)
    for r in range(64):
        k, u = int(batch["k"][r]), int(batch["users"][r])
        for t in range(cfg.model.n_stages):
            s = k - cfg.model.n_stages + t
            assert bool(present[r, t]) == bool(((prep.click_stage == s) & (prep.click_edges[:, 0] == u)).any())


def test_training_samples_put_the_click_first_and_negatives_from_the_same_impression(quick):
    cfg = _cfg(quick)
    loop = NewsRecLoop()
    bundle = loop.build_data(cfg, quick)
    prep = load(cfg, quick)
    torch.manual_seed(0)
    batch = bundle.collate_fn(list(range(200)))
    s = prep.samples[:200]
    assert torch.equal(batch["candidates"][:, 0], torch.from_numpy(s[:, 1]))
    for r in range(200):
        row = s[r, 0]
        unclicked = set(prep.train_imps.candidates[row][prep.train_imps.labels[row] == 0].tolist())
        assert set(batch["candidates"][r, 1:].tolist()) <= unclicked


@pytest.mark.parametrize("variant", ["sein", "sein-no-lstm", "sein-no-sa", "global", "local", "nrms"])
def test_every_variant_trains_and_scores(quick, variant):
    cfg = _cfg(quick, f"model.variant={variant}", "model.news_encoder=bow")
    loop = NewsRecLoop()
    bundle = loop.build_data(cfg, quick)
    model = loop.build_model(cfg)
    spread = list(range(0, len(bundle.train), len(bundle.train) // 32))[:32]  # samples of every day
    loss, logs = loop.train_step(model, bundle.collate_fn(spread), cfg)
    loss.backward()
    assert torch.isfinite(loss) and ("gate_global" in logs) == variant.startswith("sein")
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad), variant
    model.eval()
    out = loop.eval_step(model, bundle.collate_fn(bundle.eval[:16]), cfg)
    assert out["scores"].shape == out["labels"].shape


def test_heuristic_baselines_score_on_the_official_metrics(quick):
    prep = load(_cfg(quick), quick)
    for fn in (popularity_scores, recency_scores):
        m = impression_scores(fn(prep, prep.test), prep.test.labels)
        assert 0.0 <= m["auc"] <= 1.0 and m["skipped"] == 0.0


def test_cli_train_evaluate_predict_and_score(quick, tmp_path):
    run = tmp_path / "run"
    res = invoke("train", "news-rec", "--data", str(quick), "--out", str(run), "--max-steps", "3",
                 "--set", "train.batch_size=256", "--set", "model.news_encoder=bow", "--json")
    assert res.exit_code == 0, res.stderr
    ev = invoke("evaluate", "news-rec", "--run", str(run), "--json")
    assert ev.exit_code == 0, ev.stderr
    metrics = json_lines(ev.stdout)[-1]["metrics"]
    pred = invoke("predict", "news-rec", str(quick / "dev"), "--run", str(run), "--json")
    assert pred.exit_code == 0, pred.stderr
    assert (run / "prediction.txt").exists()
    scored = invoke("evaluate", "news-rec", "--predictions", str(run / "prediction.txt"),
                    "--truth", str(quick / "dev" / "behaviors.tsv"), "--json")
    assert scored.exit_code == 0, scored.stderr
    from_file = json_lines(scored.stdout)[-1]["metrics"]
    # the file holds ranks from the same scores: the same numbers as scoring the run
    for k in ("auc", "mrr", "ndcg@5", "ndcg@10"):
        assert from_file[k] == pytest.approx(metrics[k], abs=1e-9)
    stats = json_lines(invoke("data", "stats", "news-rec", "--data", str(quick), "--json").stdout)[-1]
    assert stats["dev"]["cold_share"] > 0


def test_unlabeled_split_is_refused_for_scoring(quick, tmp_path):
    folder = tmp_path / "mind"
    (folder / "train").mkdir(parents=True)
    (folder / "dev").mkdir()
    for name in ("behaviors.tsv", "news.tsv"):
        (folder / "train" / name).write_text((quick / "train" / name).read_text())
    (folder / "dev" / "news.tsv").write_text((quick / "dev" / "news.tsv").read_text())
    lines = (quick / "dev" / "behaviors.tsv").read_text().splitlines()
    bare = ["\t".join(p[:4] + [" ".join(c.rsplit("-", 1)[0] for c in p[4].split())]) for p in (ln.split("\t") for ln in lines)]
    (folder / "dev" / "behaviors.tsv").write_text("\n".join(bare) + "\n")
    run = tmp_path / "run"
    res = invoke("train", "news-rec", "--data", str(folder), "--out", str(run), "--max-steps", "1",
                 "--set", "train.batch_size=256", "--set", "model.news_encoder=bow")
    assert res.exit_code == 0, res.stderr
    res = invoke("evaluate", "news-rec", "--run", str(run))
    one_error(res.exit_code, res.stderr, "behaviors.tsv", "no labels")


def test_malformed_inputs_are_one_error_line(quick, tmp_path):
    folder = tmp_path / "bad"
    (folder / "train").mkdir(parents=True)
    (folder / "dev").mkdir()
    for split in ("train", "dev"):
        for name in ("behaviors.tsv", "news.tsv"):
            (folder / split / name).write_text((quick / split / name).read_text())
    lines = (folder / "train" / "behaviors.tsv").read_text().splitlines()
    lines[4] = lines[4].replace("-0", "-7", 1)  # a label that is neither 0 nor 1, on line 5
    (folder / "train" / "behaviors.tsv").write_text("\n".join(lines) + "\n")
    res = invoke("train", "news-rec", "--data", str(folder), "--out", str(tmp_path / "r"), "--max-steps", "1")
    one_error(res.exit_code, res.stderr, "behaviors.tsv:5")
    truth = tmp_path / "truth.txt"
    pred = tmp_path / "prediction.txt"
    truth.write_text("1 [1,0]\n2 [0,1]\n")
    pred.write_text("1 [1,2]\n3 [2,1]\n")
    res = invoke("evaluate", "news-rec", "--predictions", str(pred), "--truth", str(truth))
    one_error(res.exit_code, res.stderr, "prediction.txt:2")
