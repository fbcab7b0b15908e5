"""The official MIND scorer: worked values, lockstep errors, round trips, sklearn cross-check."""

import re

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from affectkit.components.ranking import impression_metrics
from affectkit.core.errors import DataError
from affectkit.tasks.news_rec import scoring

# spec 2.6: (labels, scores) -> AUC, MRR, nDCG@5, nDCG@10 with stable ranks
WORKED = [
    ([1, 0, 0], [0.1, 0.9, 0.5], (0.0, 1 / 3, 0.5, 0.5)),
    ([0, 1, 0, 1], [0.4, 0.3, 0.2, 0.1], (0.25, 0.375, 0.650921, 0.650921)),
    ([1, 0, 1, 0, 0, 0], [0.9, 0.8, 0.1, 0.7, 0.6, 0.5], (0.5, 0.583333, 0.613147, 0.831555)),
]


def _files(tmp_path, truth, prediction):
    t, p = tmp_path / "truth.txt", tmp_path / "prediction.txt"
    t.write_text(truth, encoding="utf-8")
    p.write_text(prediction, encoding="utf-8")
    return t, p


@pytest.mark.parametrize("labels, scores, expected", WORKED)
def test_worked_values(tmp_path, labels, scores, expected):
    scoring.write_truth(tmp_path / "truth.txt", ["7"], [labels])
    scoring.write_prediction(tmp_path / "prediction.txt", ["7"], [scores])
    r = scoring.score(tmp_path / "truth.txt", tmp_path / "prediction.txt")
    got = (r["auc"], r["mrr"], r["ndcg@5"], r["ndcg@10"])
    assert got == pytest.approx(expected, abs=1e-6)
    assert r["impressions"] == 1 and r["skipped"] == 0


def test_tie_trap_and_format(tmp_path):
    # y = [0,1,0], s = [.5,.5,.1]: stable ranks put the first candidate ahead: AUC 0.5, MRR 0.5
    scoring.write_prediction(tmp_path / "p.txt", ["1"], [[0.5, 0.5, 0.1]])
    assert (tmp_path / "p.txt").read_text() == "1 [1,2,3]\n"
    scoring.write_truth(tmp_path / "t.txt", ["1"], [[0, 1, 0]])
    r = scoring.score(tmp_path / "t.txt", tmp_path / "p.txt")
    assert r["auc"] == pytest.approx(0.5) and r["mrr"] == pytest.approx(0.5)


def test_round_trip_equals_impression_metrics(tmp_path):
    rng = np.random.default_rng(0)
    ids, labels, scores = [], [], []
    for i in range(200):
        n = int(rng.integers(2, 30))
        y = (rng.random(n) < 0.2).astype(int)
        s = np.round(rng.random(n), 1)  # many ties on purpose
        ids.append(str(i + 1))
        labels.append(y.tolist())
        scores.append(s)
    scoring.write_truth(tmp_path / "truth.txt", ids, labels)
    scoring.write_prediction(tmp_path / "prediction.txt", ids, scores)
    r = scoring.score(tmp_path / "truth.txt", tmp_path / "prediction.txt")
    direct = impression_metrics(labels, scores)
    for name, value in direct.mean().items():
        assert r[name] == pytest.approx(value, abs=1e-12)
    assert r["skipped"] == direct.skipped > 0  # some impressions have no click
    assert r["impressions"] == len(direct.ids)

    # AUC from 1/rank equals sklearn's roc_auc_score on 1/rank, impression by impression
    got_labels, got_scores, _, _ = scoring.read_pairs(tmp_path / "truth.txt", tmp_path / "prediction.txt")
    per = impression_metrics(got_labels, got_scores).values["auc"]
    kept = [i for i, y in enumerate(got_labels) if 0 < y.sum() < len(y)]
    ref = [roc_auc_score(got_labels[i], got_scores[i]) for i in kept]
    np.testing.assert_allclose(per, ref, atol=1e-12)


def test_empty_truth_lines_are_skipped(tmp_path):
    t, p = _files(tmp_path, "1 [1,0]\n2 []\n3 [0,1,0]\n", "1 [1,2]\n2 []\n3 [2,1,3]\n")
    r = scoring.score(t, p)
    assert r["empty"] == 1 and r["impressions"] == 2
    assert r["auc"] == pytest.approx(1.0) and r["mrr"] == pytest.approx(1.0)


def test_degenerate_impressions_are_counted(tmp_path):
    t, p = _files(tmp_path, "1 [1,0]\n2 [0,0]\n3 [1,1]\n", "1 [2,1]\n2 [1,2]\n3 [1,2]\n")
    r = scoring.score(t, p)
    assert r["skipped"] == 2 and r["impressions"] == 1 and r["auc"] == 0.0


@pytest.mark.parametrize("truth, prediction, where, problem", [
    ("1 [1,0]\n2 [0,1]\n", "1 [1,2]\n3 [1,2]\n", 2, "does not match '2'"),
    ("1 [1,0]\n2 [0,1]\n", "1 [1,2]\n", 2, "the prediction ends here"),
    ("1 [1,0]\n", "1 [1,2]\n2 [1,2]\n", 2, "more lines than the truth"),
    ("1 [1,0]\n", "1 [1,2,3]\n", 1, "3 ranks but 2 labels"),
    ("1 [1,0]\n", "1 [1,1]\n", 1, "permutation of 1..2"),
    ("1 [1,0]\n", "1 1,2\n", 1, "expected '<impression id> [rank,...]'"),
])
def test_lockstep_errors(tmp_path, truth, prediction, where, problem):
    t, p = _files(tmp_path, truth, prediction)
    with pytest.raises(DataError, match=re.escape(problem)) as exc:
        scoring.score(t, p)
    assert str(exc.value).startswith(f"{p}:{where}: ") and "\n" not in str(exc.value)


def test_bad_truth_labels(tmp_path):
    t, p = _files(tmp_path, "1 [2,0]\n", "1 [1,2]\n")
    with pytest.raises(DataError, match=f"{t}:1: labels must be 0 or 1"):
        scoring.score(t, p)


def test_truth_from_behaviors(tmp_path):
    beh = tmp_path / "behaviors.tsv"
    beh.write_text("5\tU1\t11/11/2019 9:05:58 AM\t\tN1-0 N2-1 N3-0\n"
                   "6\tU2\t11/11/2019 9:06:00 AM\tN1\tN4-1 N2-0\n", encoding="utf-8")
    scoring.write_prediction(tmp_path / "p.txt", ["5", "6"], [[0.2, 0.9, 0.1], [0.1, 0.8]])
    r = scoring.score(beh, tmp_path / "p.txt")
    assert r["impressions"] == 2 and r["auc"] == pytest.approx(0.5) and r["mrr"] == pytest.approx(0.75)


def test_unlabeled_behaviors_refused(tmp_path):
    beh = tmp_path / "behaviors.tsv"
    beh.write_text("5\tU1\t11/11/2019 9:05:58 AM\t\tN1 N2 N3\n", encoding="utf-8")
    scoring.write_prediction(tmp_path / "p.txt", ["5"], [[0.2, 0.9, 0.1]])
    with pytest.raises(DataError, match="has no labels") as exc:
        scoring.score(beh, tmp_path / "p.txt")
    assert exc.value.hint and exc.value.exit_code == 2
