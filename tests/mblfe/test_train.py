"""mblfe on the shared loop: the sampler, evaluation masks, no held-out pair in any graph, the epoch
schedule, and the CLI (train, evaluate --split, data stats, malformed input)."""

import numpy as np
import pytest
import torch
from tests.cli.helpers import invoke, json_lines, one_error
from tests.mblfe.test_data import TINY, _write

from affectkit.core.config import apply_overrides
from affectkit.tasks.mblfe import TASK
from affectkit.tasks.mblfe import train as mt
from affectkit.tasks.mblfe.config import MBLFEConfig
from affectkit.tasks.mblfe.synth import make


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("mblfe-train") / "quick"
    make(out, seed=5, quick=True)
    return out


def _resolved(folder, *overrides):
    return TASK.resolve_config(apply_overrides(MBLFEConfig(), ["train.batch_size=32", *overrides]), folder)


def test_resolve_sets_the_epoch_schedule_and_the_funnel(quick):
    cfg = _resolved(quick, "schedule.epochs=3", "schedule.patience=2")
    per_epoch = 300 // 32
    assert cfg.train.max_steps == 3 * per_epoch and cfg.train.eval_every == per_epoch
    assert cfg.train.early_stop_patience == 2 and cfg.data.behaviors == ["view", "collect", "cart", "buy"]
    capped = _resolved(quick, "schedule.epochs=3", "train.max_steps=4")
    assert capped.train.max_steps == 4


def test_sampler_draws_positives_of_the_behavior_and_never_touched_negatives(quick):
    cfg = _resolved(quick)
    ds = mt.load_data(cfg, quick)
    sampler = mt.Sampler(ds, neg_count=4)
    torch.manual_seed(0)
    users = list(range(ds.n_users))
    batch = sampler(users)
    touched = ds.union().toarray() > 0
    for b, name in enumerate(ds.behaviors):
        m = ds.train[name].toarray() > 0
        has = batch["has"][:, b].numpy()
        np.testing.assert_array_equal(has, m.any(1))
        rows = np.flatnonzero(has)
        assert m[rows, batch["pos"][rows, b].numpy()].all()
    neg = batch["neg"].numpy()
    assert not touched[np.array(users)[:, None, None], neg].any()
    assert neg.shape == (ds.n_users, 4, 4)


def test_sampling_follows_the_torch_rng(quick):
    sampler = mt.Sampler(mt.load_data(_resolved(quick), quick), 4)
    torch.manual_seed(3)
    a = sampler([0, 1, 2])
    torch.manual_seed(3)
    b = sampler([0, 1, 2])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_no_held_out_pair_enters_any_graph(quick):
    cfg = _resolved(quick)
    TASK.build_data(cfg, quick)
    model = TASK.build_model(cfg)
    ds = mt.load_data(cfg, quick)
    held = np.concatenate([ds.validation, ds.test])
    for b in range(len(ds.behaviors)):
        adj = model.adjacency(b).to_dense().numpy()
        assert (adj[held[:, 0], ds.n_users + held[:, 1]] == 0).all()
        assert (adj[ds.n_users + held[:, 1], held[:, 0]] == 0).all()


def test_evaluation_masks_training_targets_and_the_other_split(quick):
    ds = mt.load_data(_resolved(quick), quick)
    gt, mask = mt.split_targets(ds, "test")
    val = ds.as_dict("validation")
    target = ds.train["buy"].tocsr()
    for u in list(gt)[:50]:
        want = set(target.indices[target.indptr[u] : target.indptr[u + 1]]) | set(val.get(u, []))
        assert set(mask[u].tolist()) == want
        assert not set(gt[u]) & want


def test_eval_step_never_ranks_masked_items_and_matches_a_hand_computation():
    class Fixed(torch.nn.Module):
        def score_users(self, users):
            return torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]] * len(users))

    batch = mt.Collate(None)([mt.EvalRow(0, np.array([2, 4]), np.array([0])),
                              mt.EvalRow(1, np.array([0]), np.array([0, 1]))])
    out = mt.eval_step(Fixed(), batch, None)
    # user 0: ranking 1, 2, 3, 4 (item 0 masked): hits at ranks 2 and 4 of 4
    dcg = 1 / np.log2(3) + 1 / np.log2(5)
    np.testing.assert_allclose(out["ndcg@10"].numpy(), [dcg / (1 + 1 / np.log2(3)), 0.0])
    np.testing.assert_allclose(out["hit@10"].numpy(), [1.0, 0.0])  # user 1's only item is masked


def test_cli_train_evaluate_and_stats(quick, tmp_path):
    run = tmp_path / "run"
    res = invoke("train", "mblfe", "--data", str(quick), "--out", str(run), "--set", "train.batch_size=64",
                 "--set", "schedule.epochs=2", "--json")
    assert res.exit_code == 0, res.stderr
    result = json_lines(res.stdout)[-1]
    assert result["step"] == 2 * (300 // 64) and 0 <= result["metrics"]["hit@10"] <= 1
    assert (run / "checkpoints" / "best" / "model.safetensors").exists()
    val = json_lines(invoke("evaluate", "mblfe", "--run", str(run), "--json").stdout)[-1]["metrics"]
    test = json_lines(invoke("evaluate", "mblfe", "--run", str(run), "--split", "test", "--json").stdout)[-1]["metrics"]
    assert val["hit@10"] == pytest.approx(result["best"]["value"], abs=1e-6)  # the best checkpoint, re-scored
    assert set(test) == {f"{m}@{k}" for m in ("hit", "ndcg") for k in (10, 20, 50, 80)} and test != val
    stats = json_lines(invoke("data", "stats", "mblfe", "--data", str(quick), "--json").stdout)[-1]
    assert stats["users"] == 300 and stats["target"] == "buy" and stats["test_seen_in_any_auxiliary"] == 0.0


@pytest.mark.parametrize("override,bad,where", [
    ({"buy.txt": "1 2\n2 x\n"}, "buy.txt", "line 2"),
    ({"buy_dict.txt": '{"1": [2],\n "u2": [3]}'}, "buy_dict.txt", "line 2"),
    ({"buy.txt": ""}, "buy.txt", "no interactions"),
    ({"view.txt": "1 1\n1 2\n2 9\n"}, "view.txt", "line 3"),
], ids=["non-integer id", "dict with bad keys", "empty target file", "id beyond count.txt"])
def test_malformed_input_is_one_error_line_naming_file_and_line(tmp_path, override, bad, where):
    folder = _write(tmp_path / "d", {**TINY, **override})
    for args in (["train", "mblfe", "--data", str(folder), "--out", str(tmp_path / "run"), "--set", "train.batch_size=1"],
                 ["data", "stats", "mblfe", "--data", str(folder)]):
        res = invoke(*args)
        one_error(res.exit_code, res.stderr, bad, where)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_batch_larger_than_the_users_is_a_usage_error(quick, tmp_path):
    res = invoke("train", "mblfe", "--data", str(quick), "--out", str(tmp_path / "r"), "--set", "train.batch_size=4096")
    one_error(res.exit_code, res.stderr, "batch_size=4096", "300 users")


def test_stats_for_a_task_without_them_is_a_usage_error(quick):
    res = invoke("data", "stats", "vc-soup", "--data", str(quick))
    one_error(res.exit_code, res.stderr, "vc-soup", "no dataset statistics")

