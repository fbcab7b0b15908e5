"""mblfe on real data: MovieLens-100k from the recbole 1.2.1 wheel as a view / cart / buy funnel
(spec 4.1, 4.2). The real-data tests skip when recbole's bundled file is absent; the protocol and
error tests run on small synthetic files. MovieLens data are never written into the repository."""

import zipfile

import numpy as np
import pytest

from affectkit.components.ranking import topk_metrics
from affectkit.core.errors import DataError
from affectkit.tasks.mblfe import data, ml100k, train
from affectkit.tasks.mblfe.baselines import popularity_scores

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"

# spec 4.2, numpy prototype, 895 test users, no validation split: (HR@10, NDCG@10)
SPEC_POP = {"buy": (0.0737, 0.0386), "view": (0.0615, 0.0342)}
# One user moves HR@10 by 1/895 = 0.0011. Our evaluator ranks tied popularity counts by the lower
# item column; the prototype evidently by the higher one (flipping the item axis reproduces the
# spec to its 4 decimals, checked below), and the two differ by one user on Pop(buy). TOL allows
# about 4 users: far below the 0.012 standard error of HR@10, far above the tie effect.
TOL = 0.005
ROUND = 0.5e-4 + 1e-9  # the spec's numbers are rounded to 4 decimals


def _write(path, rows, header=HEADER):
    path.write_text(header + "".join("\t".join(str(x) for x in r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def inter():
    p = ml100k.find_ml100k()
    if p is None:
        pytest.skip("recbole's ml-100k.inter not found (pip install --no-deps recbole==1.2.1 to run the real-data check)")
    return p


@pytest.fixture(scope="module")
def strict(inter):
    """The spec's protocol: test = last buy, no validation split."""
    return ml100k.funnel_from_ratings(inter, validation=False)


@pytest.fixture(scope="module")
def with_val(inter):
    return ml100k.funnel_from_ratings(inter, validation=True)


def _targets(ds):
    """(ground truth, mask) of the test split as train.split_targets builds them (without a
    validation split the mask is the training target items alone)."""
    return train.split_targets(ds, "test")


def _pop(ds, behavior, higher_first=False):
    pop = popularity_scores(ds.train[behavior])
    gt, mask = _targets(ds)
    scores = np.tile(pop, (ds.n_users, 1))
    if higher_first:  # flip the item axis: ties then rank the higher item column first
        flip = ds.n_items - 1
        scores = scores[:, ::-1].copy()
        gt = {u: flip - g for u, g in gt.items()}
        mask = {u: flip - m for u, m in mask.items()}
    m = topk_metrics(scores, gt, mask, ks=(10,))
    assert len(m.ids) == len(ds.test)
    return m.mean()


# ---------------------------------------------------------------------------------------------
# the bundled file


def test_find_does_not_import_recbole(inter):
    import subprocess
    import sys

    assert str(inter).endswith("recbole/dataset_example/ml-100k/ml-100k.inter")
    assert ml100k.find_ml100k() == inter
    # located by find_spec, never executed (in a fresh interpreter: other tests import recbole)
    code = ("import sys; from affectkit.tasks.mblfe.ml100k import find_ml100k; p = find_ml100k(); "
            "assert 'recbole' not in sys.modules; print(p)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == str(inter), proc.stderr


def test_counts_match_spec(strict):
    ds = strict
    assert ds.behaviors == ("view", "cart", "buy") and ds.target == "buy" and ds.fmt == "ml100k-funnel"
    assert (ds.n_users, ds.n_items) == (943, 1682)
    before = ds.notes["before_holdout"]
    assert before["view"] == {"rows": 100_000, "users": 943, "items": 1682}
    assert before["cart"] == {"rows": 55_375, "users": 942, "items": 1447}
    assert before["buy"] == {"rows": 21_201, "users": 928, "items": 1172}
    assert ds.notes["duplicates"] == {"view": 0, "cart": 0, "buy": 0}
    # 895 users with >= 2 buys -> 895 test pairs, one per user
    assert len(ds.test) == 895 and len(np.unique(ds.test[:, 0])) == 895 and len(ds.validation) == 0
    # strict: each held-out pair removed from every behavior, exactly one row each
    assert ds.notes["removed"] == {"view": 895, "cart": 895, "buy": 895}
    for b, n in (("view", 100_000), ("cart", 55_375), ("buy", 21_201)):
        assert ds.train[b].nnz + 895 == n
    # the file's ids are kept: users 1..943, items 1..1682
    assert ds.user_ids.tolist() == list(range(1, 944)) and ds.item_ids.tolist() == list(range(1, 1683))


def test_heldout_pairs_absent_from_training(strict, with_val):
    for ds in (strict, with_val):
        s = data.statistics(ds)
        assert s["test_in_train_target"] == 0 and s["validation_in_train_target"] == 0
        assert s["test_seen_in_any_auxiliary"] == 0.0 and s["validation_test_overlap"] == 0
        for split in ("test", "validation"):
            held = ds.raw_pairs(split)
            for b in ds.behaviors:
                assert not held & ds.raw_pairs(b), (split, b)


def test_holdout_is_the_last_buy(inter, with_val):
    """An independent re-derivation from the raw file: per user, buys by (timestamp, item id)."""
    raw = np.loadtxt(inter, skiprows=1, dtype=np.int64)
    buys = raw[raw[:, 2] == 5]
    expect_test, expect_val = set(), set()
    for u in np.unique(buys[:, 0]):
        mine = buys[buys[:, 0] == u]
        mine = mine[np.lexsort((mine[:, 1], mine[:, 3]))]  # by time, then item id; last = latest
        if len(mine) >= 2:
            expect_test.add((int(u), int(mine[-1, 1])))
        if len(mine) >= 3:
            expect_val.add((int(u), int(mine[-2, 1])))
    ds = with_val
    assert ds.raw_pairs("test") == expect_test
    assert ds.raw_pairs("validation") == expect_val
    assert len(ds.validation) == 859  # users with >= 3 buys
    assert ds.notes["removed"] == {b: 895 + 859 for b in ds.behaviors}
    # every user keeps at least one training buy when a validation pair is held out
    assert (ds.train["buy"].getnnz(axis=1)[ds.validation[:, 0]] >= 1).all()
    # split_targets masks the validation item at test time
    gt, mask = train.split_targets(ds, "test")
    for u, i in ds.validation.tolist():
        assert i in mask[u]


@pytest.mark.parametrize("behavior", ["buy", "view"])
def test_popularity_reproduces_spec(strict, behavior):
    hr, ndcg = SPEC_POP[behavior]
    got = _pop(strict, behavior)
    print(f"Pop({behavior}) HR@10 {got['hit@10']:.5f} NDCG@10 {got['ndcg@10']:.5f} (spec {hr} / {ndcg})")
    assert abs(got["hit@10"] - hr) <= TOL and abs(got["ndcg@10"] - ndcg) <= TOL
    # exact (to the spec's rounding) once ties are ranked as the prototype did
    flipped = _pop(strict, behavior, higher_first=True)
    assert abs(flipped["hit@10"] - hr) <= ROUND and abs(flipped["ndcg@10"] - ndcg) <= ROUND
    # the numbers the module docstring reports (regression guard)
    exact = {"buy": (65 / 895, 0.03825), "view": (55 / 895, 0.03399)}[behavior]
    assert got["hit@10"] == pytest.approx(exact[0], abs=1e-9) and got["ndcg@10"] == pytest.approx(exact[1], abs=1e-5)


def test_popularity_with_validation_split(with_val):
    """Holding out the validation buy changes the training counts and the mask: not the spec's protocol."""
    got = _pop(with_val, "buy")
    assert got["hit@10"] == pytest.approx(62 / 895, abs=1e-9) and got["ndcg@10"] == pytest.approx(0.03713, abs=1e-5)
    assert abs(got["hit@10"] - SPEC_POP["buy"][0]) <= TOL


# ---------------------------------------------------------------------------------------------
# protocol on a synthetic file (no MovieLens data needed)


def test_protocol_on_synthetic_file(tmp_path):
    rows = [
        # user 1: buys 10 @t1, 11 @t5, 12 @t5 (tie: larger id 12 is last), a cart and a view
        (1, 10, 5, 1), (1, 11, 5, 5), (1, 12, 5, 5), (1, 13, 4, 9), (1, 14, 2, 9),
        # user 2: two buys -> test only; no validation (needs >= 3)
        (2, 10, 5, 3), (2, 13, 5, 2), (2, 14, 1, 1),
        # user 3: one buy -> nothing held out
        (3, 11, 5, 1), (3, 12, 4, 2),
        # user 7: no buy
        (7, 9, 3, 1),
    ]
    p = _write(tmp_path / "r.inter", rows)
    ds = ml100k.funnel_from_ratings(p)
    assert ds.user_ids.tolist() == [1, 2, 3, 7] and ds.item_ids.tolist() == [9, 10, 11, 12, 13, 14]
    assert ds.raw_pairs("test") == {(1, 12), (2, 10)}
    assert ds.raw_pairs("validation") == {(1, 11)}
    assert ds.raw_pairs("buy") == {(1, 10), (2, 13), (3, 11)}
    assert ds.raw_pairs("cart") == {(1, 10), (1, 13), (2, 13), (3, 11), (3, 12)}
    assert ds.raw_pairs("view") == {(1, 10), (1, 13), (1, 14), (2, 13), (2, 14), (3, 11), (3, 12), (7, 9)}
    no_val = ml100k.funnel_from_ratings(p, validation=False)
    assert len(no_val.validation) == 0 and no_val.raw_pairs("test") == {(1, 12), (2, 10)}
    assert no_val.raw_pairs("buy") == {(1, 10), (1, 11), (2, 13), (3, 11)}


def test_find_sources(tmp_path, monkeypatch):
    rows = [(1, 1, 5, 1), (1, 2, 5, 2)]
    flat = _write(tmp_path / "ml-100k.inter", rows)
    assert ml100k.find_ml100k(flat) == flat
    assert ml100k.find_ml100k(tmp_path) == flat
    assert ml100k.find_ml100k(tmp_path / "nowhere") is None
    wheel = tmp_path / "recbole-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(ml100k.MEMBER, flat.read_text())
    member = ml100k.find_ml100k(wheel)
    assert member is not None
    ds = ml100k.funnel_from_ratings(member)
    assert ds.raw_pairs("test") == {(1, 2)} and ds.raw_pairs("buy") == {(1, 1)}
    empty = tmp_path / "other.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("x.txt", "")
    assert ml100k.find_ml100k(empty) is None
    monkeypatch.setattr(ml100k.importlib.util, "find_spec", lambda name: None)
    assert ml100k.find_ml100k() is None


@pytest.mark.parametrize("text, message", [
    ("", "line 1: empty file"),
    ("user_id:token\titem_id:token\trating:float\n1\t2\t5\n", "line 1: no 'timestamp' column"),
    (HEADER + "1\t2\t5\t10\n1\t3\t5\n", "line 3: 3 tab-separated fields"),
    (HEADER + "1\t2\tfive\t10\n", "line 2: rating must be a number"),
    (HEADER + "1\t2\t5\tnan\n", "line 2: timestamp must be finite"),
    (HEADER + "1\t\t5\t10\n", "line 2: empty user or item id"),
    (HEADER, "no rating rows"),
    (HEADER + "1\t2\t4\t10\n", "no buy"),
])
def test_bad_input(tmp_path, text, message):
    p = tmp_path / "bad.inter"
    p.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        ml100k.funnel_from_ratings(p)
    assert str(p) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ml100k.funnel_from_ratings(tmp_path / "absent.inter")
