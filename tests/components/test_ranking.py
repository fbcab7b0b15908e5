"""Full-ranking top-K metrics and the official MIND impression metrics, against hand computations,
scikit-learn and (when installed) RecBole."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import roc_auc_score

from affectkit.components.ranking import impression_metrics, stable_ranks, topk_metrics

L3, L5 = 1 / math.log2(3), 1 / math.log2(5)  # discounts of ranks 2 and 4

# 4 users x 6 items; user 2 has no ground truth and is not evaluated.
SCORES = np.array(
    [
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
        [0.3, 0.9, 0.1, 0.2, 0.8, 0.0],
    ]
)
GT = {0: [1, 4], 1: [0, 2, 3], 2: [], 3: [4, 5]}
MASK = {0: [0], 1: [5, 4]}
# By hand, K = 1, 3, 5:
# user 0: item 0 masked; ranking 1,2,3,4,5; hits at ranks 1 and 4 (|G| = 2)
# user 1: items 5, 4 masked; ranking 3,2,1,0 (only 4 items left); hits at ranks 1, 2, 4 (|G| = 3)
# user 3: ranking 1,4,0,3,2,5; hits at ranks 2 and 6 (|G| = 2)
EXPECTED = {
    "hit@1": [1, 1, 0],
    "hit@3": [1, 1, 1],
    "hit@5": [1, 1, 1],
    "recall@1": [1 / 2, 1 / 3, 0],
    "recall@3": [1 / 2, 2 / 3, 1 / 2],
    "recall@5": [2 / 2, 3 / 3, 1 / 2],
    "ndcg@1": [1, 1, 0],
    "ndcg@3": [1 / (1 + L3), (1 + L3) / (1 + L3 + 0.5), L3 / (1 + L3)],
    "ndcg@5": [(1 + L5) / (1 + L3), (1 + L3 + L5) / (1 + L3 + 0.5), L3 / (1 + L3)],
    "mrr@1": [1, 1, 0],
    "mrr@3": [1, 1, 1 / 2],
    "mrr@5": [1, 1, 1 / 2],
}


def test_topk_by_hand_with_several_ground_truth_items():
    res = topk_metrics(SCORES, GT, MASK, ks=(1, 3, 5))
    assert res.ids.tolist() == [0, 1, 3]
    assert set(res.values) == set(EXPECTED)
    for name, want in EXPECTED.items():
        assert res.values[name] == pytest.approx(want), name
    assert res.mean()["ndcg@3"] == pytest.approx((0.613147 + 0.765361 + 0.386853) / 3, abs=1e-6)
    assert res.mean()["hit@1"] == pytest.approx(2 / 3)


def test_ties_rank_by_lower_item_index():
    flat = np.zeros((1, 6))
    assert topk_metrics(flat, {0: [1]}, {0: [0]}, ks=(1,)).values["hit@1"].tolist() == [1.0]
    assert topk_metrics(flat, {0: [5]}, None, ks=(5, 6)).values["mrr@6"] == pytest.approx([1 / 6])
    boundary = np.array([[0.0, 1.0, 1.0, 1.0, 0.0]])  # three items tie for the top 2
    assert topk_metrics(boundary, {0: [2]}, None, ks=(2,)).values["mrr@2"] == pytest.approx([0.5])
    assert topk_metrics(boundary, {0: [3]}, None, ks=(2,)).values["hit@2"].tolist() == [0.0]


def _random_case(n_users=37, n_items=50, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
    gt = sp.csr_matrix(rng.random((n_users, n_items)) < 0.06)
    mask = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2) & ~gt.toarray())
    return scores, gt, mask


def test_masked_items_are_never_ranked():
    scores, _, _ = _random_case(n_users=20, n_items=30)
    best = np.argsort(-scores, axis=1)[:, :25]  # mask each user's 25 best items, leaving 5
    mask = {u: best[u] for u in range(20)}
    only_masked = topk_metrics(scores, {u: best[u, :3] for u in range(20)}, mask, ks=(1, 10, 80))
    assert all(v.sum() == 0 for v in only_masked.values.values())
    # with one unmasked ground-truth item as well: it is hit at every K >= 5, and recall counts |G| = 4
    worst = np.argsort(-scores, axis=1)[:, -1]
    gt = {u: [*best[u, :3], worst[u]] for u in range(20)}
    res = topk_metrics(scores, gt, mask, ks=(5, 80))
    assert res.values["hit@5"].tolist() == [1.0] * 20
    assert res.values["recall@80"] == pytest.approx([0.25] * 20)
    assert res.values["mrr@5"] == pytest.approx([0.2] * 20)


def test_batching_and_input_forms_give_the_same_result():
    scores, gt, mask = _random_case()
    one = topk_metrics(scores, gt, mask, batch_size=10_000)
    calls = []

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        calls.append(len(users))
        return torch.from_numpy(scores)[users]

    batched = topk_metrics(score_fn, gt, mask, batch_size=7)
    as_dicts = topk_metrics(
        torch.from_numpy(scores),
        {u: gt[u].indices for u in range(37)},
        {u: mask[u].indices for u in range(37)},
        batch_size=5,
    )
    assert max(calls) == 7 and sum(calls) == len(one.ids)
    assert one.ids.tolist() == batched.ids.tolist() == as_dicts.ids.tolist()
    for name in one.values:
        np.testing.assert_allclose(one.values[name], batched.values[name])
        np.testing.assert_allclose(one.values[name], as_dicts.values[name])
    assert one.mean()["ndcg@10"] > 0


def test_topk_matches_recbole_full_sort(monkeypatch):
    # RecBole 1.2.1 still uses np.float, which numpy 2 removed: the alias it meant, for this test only
    monkeypatch.setattr(np, "float", float, raising=False)
    pytest.importorskip(
        "recbole", reason="recbole is not installed (make install adds it); parity with its full-sort evaluator is skipped"
    )
    from recbole.evaluator.metrics import NDCG, Hit, Recall

    scores, gt, mask = _random_case()
    ks = [10, 20]
    ours = topk_metrics(scores, gt, mask, ks=ks).mean()
    users = np.flatnonzero(np.diff(gt.indptr))
    masked = np.where(mask.toarray(), -np.inf, scores)[users]
    top = np.argsort(-masked, axis=1, kind="stable")[:, : max(ks)]
    pos_index = np.take_along_axis(gt.toarray()[users], top, axis=1)
    pos_len = gt.toarray()[users].sum(1)
    config = {"topk": ks, "metric_decimal_place": 6}
    hit = Hit(config).metric_info(pos_index)
    ndcg = NDCG(config).metric_info(pos_index, pos_len)
    recall = Recall(config).metric_info(pos_index, pos_len)
    for k in ks:
        assert ours[f"hit@{k}"] == pytest.approx(hit[:, k - 1].mean(), abs=1e-6)
        assert ours[f"ndcg@{k}"] == pytest.approx(ndcg[:, k - 1].mean(), abs=1e-6)
        assert ours[f"recall@{k}"] == pytest.approx(recall[:, k - 1].mean(), abs=1e-6)


# ---------------------------------------------------------------- MIND


def test_mind_worked_values_from_the_spec():
    labels = [[1, 0, 0], [0, 1, 0, 1], [1, 0, 1, 0, 0, 0]]
    scores = [[0.1, 0.9, 0.5], [0.4, 0.3, 0.2, 0.1], [0.9, 0.8, 0.1, 0.7, 0.6, 0.5]]
    res = impression_metrics(labels, scores)
    assert res.values["auc"] == pytest.approx([0.0, 0.25, 0.5])
    assert res.values["mrr"] == pytest.approx([1 / 3, 0.375, 0.583333], abs=1e-6)
    assert res.values["ndcg@5"] == pytest.approx([0.5, 0.650921, 0.613147], abs=1e-6)
    assert res.values["ndcg@10"] == pytest.approx([0.5, 0.650921, 0.831555], abs=1e-6)
    assert res.mean()["auc"] == pytest.approx(0.25) and res.skipped == 0


def test_mind_mrr_and_ndcg_by_hand():
    # clicks at ranks 2 and 3 of 7 (sorted order: c3, c0, c5, ...): MRR = (1/2 + 1/3) / 2;
    # DCG@5 = 1/log2(3) + 1/log2(4), ideal = 1 + 1/log2(3); nDCG@10 the same as all 7 fit
    y = [0, 1, 0, 0, 0, 1, 0]
    s = [0.3, 0.8, 0.1, 0.9, 0.2, 0.7, 0.0]
    res = impression_metrics([y], [s])
    assert res.values["mrr"] == pytest.approx([(1 / 2 + 1 / 3) / 2])
    ndcg = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert res.values["ndcg@5"] == pytest.approx([ndcg])
    assert res.values["ndcg@10"] == pytest.approx([ndcg])
    assert res.values["auc"] == pytest.approx([(4 + 4) / 10])  # each click beats 4 of the 5 non-clicks


def test_mind_ties_use_stable_ranks():
    assert stable_ranks([0.5, 0.5, 0.1]).tolist() == [1, 2, 3]
    assert stable_ranks([0.1, 0.9, 0.9, 0.3]).tolist() == [4, 1, 2, 3]
    res = impression_metrics([[0, 1, 0]], [[0.5, 0.5, 0.1]])
    assert res.values["auc"] == pytest.approx([0.5]) and res.values["mrr"] == pytest.approx([0.5])


def _mind_reference(y, s, k):
    """The spec's formulas, one impression at a time, from stable ranks."""
    ys = np.asarray(y)[np.argsort(stable_ranks(s))]
    disc = 1 / np.log2(np.arange(2, len(ys) + 2))
    dcg = ((2.0**ys - 1) * disc)[:k].sum()
    ideal = ((2.0 ** np.sort(ys)[::-1] - 1) * disc)[:k].sum()
    return (ys / np.arange(1, len(ys) + 1)).sum() / ys.sum(), dcg / ideal


def test_mind_auc_equals_sklearn_per_impression():
    rng = np.random.default_rng(1)
    labels = [(rng.random(n) < 0.3).astype(int) for n in rng.integers(1, 40, size=300)]
    scores = [np.round(rng.random(len(y)), 1) for y in labels]  # many ties
    kept = [i for i, y in enumerate(labels) if 0 < y.sum() < len(y)]
    res = impression_metrics(labels, scores)
    assert res.ids.tolist() == kept and res.skipped == 300 - len(kept)
    auc = [roc_auc_score(labels[i], 1.0 / stable_ranks(scores[i])) for i in kept]
    np.testing.assert_allclose(res.values["auc"], auc)
    ref = np.array([_mind_reference(labels[i], scores[i], 5) for i in kept])
    np.testing.assert_allclose(res.values["mrr"], ref[:, 0])
    np.testing.assert_allclose(res.values["ndcg@5"], ref[:, 1])


def test_mind_all_zero_or_all_one_impressions_are_skipped_and_counted():
    res = impression_metrics([[0, 0], [1, 0], [1, 1, 1], []], [[0.1, 0.2], [0.3, 0.4], [1, 2, 3], []])
    assert res.ids.tolist() == [1] and res.skipped == 3
    assert res.values["auc"] == pytest.approx([0.0])
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        impression_metrics([[0, 1]], [[0.1, 0.2, 0.3]])
