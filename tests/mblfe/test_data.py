"""mblfe data readers and the embedded generator: formats, round trips, funnel, errors, warnings."""

import hashlib
import io
import json

import numpy as np
import pytest

from affectkit.core.errors import DataError
from affectkit.core.output import Output, set_output
from affectkit.tasks.mblfe import data, synth


@pytest.fixture
def stderr():
    buf = io.StringIO()
    set_output(Output(stderr=buf))
    return buf


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("mblfe") / "quick"
    summary = synth.make(out, seed=3, quick=True)
    return out, summary


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _write(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


TINY = {
    "view.txt": "1 1\n1 2\n2 2\n2 3\n3 1\n",
    "cart.txt": "1 2\n2 3\n",
    "buy.txt": "1 2\n2 3\n",
    "validation.txt": "3 2\n",
    "test.txt": "1 3\n",
    "count.txt": '{"user": 3, "item": 3}',
}


def test_generator_writes_the_folder_format_and_the_reader_reads_it_back(quick):
    out, summary = quick
    names = {p.name for p in out.iterdir()}
    for b in synth.BEHAVIORS:
        assert {f"{b}.txt", f"{b}_dict.txt"} <= names
    assert {"validation.txt", "test.txt", "validation_dict.txt", "test_dict.txt", "all_dict.txt", "count.txt",
            "truth.npz"} <= names
    assert json.loads((out / "count.txt").read_text()) == {"user": summary["users"], "item": summary["items"]}
    ds = data.read_folder(out)
    assert ds.behaviors == synth.BEHAVIORS and ds.target == "buy"
    assert (ds.n_users, ds.n_items) == (summary["users"], summary["items"])
    assert {b: ds.train[b].nnz for b in ds.behaviors} == summary["interactions"]
    assert (len(ds.validation), len(ds.test)) == (summary["validation_pairs"], summary["test_pairs"])
    assert ds.user_ids[0] == 1 and ds.item_ids[-1] == summary["items"]  # 1-based ids, 0 is padding
    # the dict JSONs say the same as the pair files (string keys, 1-based ids)
    buy_dict = json.loads((out / "buy_dict.txt").read_text())
    assert sum(len(v) for v in buy_dict.values()) == summary["interactions"]["buy"]
    assert all(k.isdigit() for k in buy_dict)
    truth = np.load(out / "truth.npz")
    assert truth["pi"].shape == (summary["users"], 8) and np.allclose(truth["pi"].sum(1), 1, atol=1e-5)
    assert truth["item_factor"].shape == (summary["items"],)


def test_held_out_pairs_are_absent_from_every_behavior(quick):
    ds = data.read_folder(quick[0])
    held = ds.raw_pairs("test") | ds.raw_pairs("validation")
    assert held and not ds.raw_pairs("test") & ds.raw_pairs("validation")
    for b in ds.behaviors:
        assert not held & ds.raw_pairs(b), b
    s = data.statistics(ds)
    assert s["test_seen_in_any_auxiliary"] == 0.0 and s["test_in_train_target"] == 0
    # one test pair per user with >= 2 buys: every test user keeps a training buy
    buy_users = set(ds.pairs("buy")[:, 0].tolist())
    assert set(ds.test[:, 0].tolist()) <= buy_users
    assert len(np.unique(ds.test[:, 0])) == len(ds.test)


def test_the_funnel_holds(quick):
    ds = data.read_folder(quick[0])
    view, cart, buy, collect = (ds.raw_pairs(b) for b in ("view", "cart", "buy", "collect"))
    assert buy <= view and cart <= view and collect <= view
    direct = buy - cart  # direct buys from views (p = 0.01 per view)
    assert 0 < len(direct) < 0.15 * len(buy)
    assert len(view) > len(cart) > len(buy)


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    synth.make(a, 7, True)
    synth.make(b, 7, True)
    synth.make(c, 8, True)
    assert _digest(a) == _digest(b)
    assert _digest(a)["buy.txt"] != _digest(c)["buy.txt"]


def _same(a, b):
    assert a.behaviors == b.behaviors
    for name in (*a.behaviors, "validation", "test"):
        assert a.raw_pairs(name) == b.raw_pairs(name), name


@pytest.mark.parametrize("onehot", [False, True])
def test_atomic_and_csv_readers_give_the_folder_data_set(quick, tmp_path, onehot):
    ds = data.read_folder(quick[0])
    data.write_atomic(ds, tmp_path / "atomic", "synth", onehot=onehot)
    data.write_csv(ds, tmp_path / "csv")
    # no behavior order given: the known funnel (view, collect, cart, buy) is recognised
    _same(ds, data.read_atomic(tmp_path / "atomic"))
    _same(ds, data.read_csv(tmp_path / "csv"))
    _same(ds, data.load(tmp_path / "csv"))


def test_hand_written_atomic_and_csv_match_the_folder(tmp_path):
    folder = data.read_folder(_write(tmp_path / "f", TINY))
    tok = _write(tmp_path / "tok", {
        "d.train.inter": "user_id:token\titem_id:token\tbehavior:token\ttimestamp:float\n"
        + "".join(f"{u}\t{i}\tview\t0\n" for u, i in [(1, 1), (1, 2), (2, 2), (2, 3), (3, 1)])
        + "1\t2\tcart\t1\n2\t3\tcart\t1\n1\t2\tbuy\t2\n2\t3\tbuy\t2\n",
        "d.valid.inter": "user_id:token\titem_id:token\n3\t2\n",
        "d.test.inter": "user_id:token\titem_id:token\n1\t3\n"})
    hot = _write(tmp_path / "hot", {
        "d.train.inter": "user_id:token\titem_id:token\tview:float\tcart:float\tbuy:float\n"
        "1\t1\t1\t0\t0\n1\t2\t1\t1\t1\n2\t2\t1\t0\t0\n2\t3\t1\t1\t1\n3\t1\t1\t0\t0\n",
        "d.valid.inter": "user_id:token\titem_id:token\n3\t2\n",
        "d.test.inter": "user_id:token\titem_id:token\n1\t3\n"})
    csvf = _write(tmp_path / "csv", {
        "train.csv": "user,item,behavior,timestamp\n1,1,view,0\n1,2,view,0\n2,2,view,0\n2,3,view,0\n3,1,view,0\n"
        "1,2,cart,1\n2,3,cart,1\n1,2,buy,2\n2,3,buy,2\n",
        "validation.csv": "user,item\n3,2\n", "test.csv": "user,item\n1,3\n"})
    for other in (data.read_atomic(tok), data.read_atomic(hot), data.read_csv(csvf)):
        _same(folder, other)
        assert other.target == "buy"


def test_unknown_behavior_names_are_ordered_by_count_or_as_told(tmp_path):
    f = _write(tmp_path / "f", {**{k: v for k, v in TINY.items() if k not in ("view.txt", "cart.txt", "buy.txt")},
                                "a.txt": "1 1\n1 2\n2 2\n2 3\n", "b.txt": "1 2\n2 3\n3 3\n", "c.txt": "1 2\n"})
    assert data.read_folder(f).behaviors == ("a", "b", "c")
    assert data.read_folder(f, target="b").behaviors == ("a", "c", "b")
    assert data.read_folder(f, behaviors=["c", "a", "b"]).behaviors == ("c", "a", "b")


MALFORMED = [
    ("non-integer id", {"buy.txt": "1 2\n2 x\n"}, "buy.txt", "line 2"),
    ("single column", {"cart.txt": "1 2\n3\n"}, "cart.txt", "line 2"),
    ("dict with bad keys", {"buy_dict.txt": '{"1": [2],\n "u2": [3]}'}, "buy_dict.txt", "line 2"),
    ("dict with bad values", {"test_dict.txt": '{"1": ["three"]}'}, "test_dict.txt", "line 1"),
    ("dict not JSON", {"validation_dict.txt": '{"3": [2],\n'}, "validation_dict.txt", "line"),
    ("empty target file", {"buy.txt": ""}, "buy.txt", "no interactions"),
    ("item beyond count.txt", {"view.txt": "1 1\n1 2\n2 9\n"}, "view.txt", "line 3"),
    ("user beyond count.txt", {"test.txt": "\n4 1\n"}, "test.txt", "line 2"),
    ("id 0 (padding)", {"cart.txt": "0 2\n"}, "cart.txt", "line 1"),
    ("count.txt bad", {"count.txt": '{"user": 3}'}, "count.txt", "line 1"),
]


@pytest.mark.parametrize("what,override,bad,where", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_folder_raises_data_error_naming_file_and_line(tmp_path, what, override, bad, where):
    f = _write(tmp_path / "f", {**TINY, **override})
    with pytest.raises(DataError) as exc:
        data.read_folder(f, behaviors=["view", "cart", "buy"])
    assert str(exc.value.path).endswith(bad) and where in str(exc.value)


@pytest.mark.parametrize("missing", ["count.txt", "test.txt", "buy.txt", "validation.txt"])
def test_missing_folder_file_raises_data_error(tmp_path, missing):
    f = _write(tmp_path / "f", {k: v for k, v in TINY.items() if k != missing})
    with pytest.raises(DataError) as exc:
        data.read_folder(f, behaviors=["view", "cart", "buy"])
    assert str(exc.value.path).endswith(missing)


def test_malformed_csv_and_atomic_raise_data_error(tmp_path):
    bad = [
        ("wrong.csv", "user,product,behavior\n1,2,buy\n", "line 1"),
        ("short.csv", "user,item,behavior\n1,2,buy\n1,3\n", "line 3"),
    ]
    for name, text, where in bad:
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError) as exc:
            data.read_csv(tmp_path / name)
        assert exc.value.path == tmp_path / name and where in str(exc.value)
    (tmp_path / "x.inter").write_text("user_id:token\titem:token\tbehavior:token\n1\t2\tbuy\n")
    with pytest.raises(DataError, match="line 1: no item_id"):
        data.read_atomic(tmp_path / "x.inter")
    (tmp_path / "y.inter").write_text("user_id:token\titem_id:token\tbuy:float\n1\t2\t0.5\n")
    with pytest.raises(DataError, match="line 2"):
        data.read_atomic(tmp_path / "y.inter")
    with pytest.raises(DataError, match="not found"):
        data.read_csv(tmp_path / "absent.csv")


def test_validation_equal_to_test_and_leaks_are_warned_with_counts(tmp_path, stderr):
    f = _write(tmp_path / "f", {**TINY, "validation.txt": "1 3\n3 2\n", "test.txt": "3 2\n1 3\n1 2\n"})
    ds = data.read_folder(f)
    s = data.statistics(ds)
    assert not s["validation_equals_test"] and s["test_in_train_target"] == 1
    f2 = _write(tmp_path / "g", {**TINY, "validation.txt": "1 3\n3 2\n", "test.txt": "3 2\n1 3\n",
                                 "view.txt": TINY["view.txt"] + "1 3\n", "count.txt": '{"user": 5, "item": 3}'})
    stderr.truncate(0)
    ds = data.read_folder(f2)
    s = data.statistics(ds)
    text = stderr.getvalue()
    assert s["validation_equals_test"] and "validation is identical to test (2 pairs)" in text
    assert s["unused_user_ids"] == 2 and "2 ids" in text  # users 4 and 5 never occur
    assert s["test_seen_in_auxiliary"]["view"] == 0.5 and s["test_seen_in_any_auxiliary"] == 0.5


def test_test_pairs_in_training_target_are_warned(tmp_path, stderr):
    f = _write(tmp_path / "f", {**TINY, "test.txt": "1 2\n1 3\n"})
    data.read_folder(f)
    assert "1 of 2 test pairs are in the training 'buy' file" in stderr.getvalue()


def test_statistics_of_the_generator_match_its_summary(quick):
    s = data.statistics(data.read_folder(quick[0], warn=False))
    assert s["per_behavior"]["buy"]["interactions"] == quick[1]["interactions"]["buy"]
    assert s["validation_equals_test"] is False and s["unused_user_ids"] == 0
