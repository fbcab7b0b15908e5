"""Adressa raw -> MIND: both modes on a small synthetic one_week fixture."""

import json

import numpy as np
import pytest

from affectkit.core.errors import DataError
from affectkit.tasks.news_rec import adressa, data

DAY0 = 1483228800  # 2017-01-01 00:00 UTC


def _event(user, day, hour, article=None, title=None, category="nyheter|trondheim"):
    e = {"eventId": 1, "userId": f"cx:{user}", "time": int(DAY0 + day * 86400 + hour * 3600), "activeTime": 12,
         "url": f"http://adressa.no/{article}", "city": "trondheim"}
    if article is not None:
        e["id"] = f"{article:040x}"
        e["canonicalUrl"] = f"http://adressa.no/a/{article}"
        e["category1"] = category
        e["publishtime"] = "2017-01-01T06:00:00.000Z"
    if title is not None:
        e["title"] = title
    return e


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """7 day files; 6 users; 40 articles; a front-page event and an untitled event per day."""
    folder = tmp_path_factory.mktemp("adressa") / "one_week"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for day in range(7):
        lines = [_event(0, day, 1), _event(1, day, 2, article=999)]  # skipped: no id / no title
        for user in range(6):
            for _ in range(int(rng.integers(1, 4))):
                art = int(rng.integers(0, 40))
                lines.append(_event(user, day, float(rng.uniform(0, 23)), art, f"Title {art}\twith tab"))
        lines.sort(key=lambda e: e["time"])
        (folder / f"2017010{day + 1}").write_text("".join(json.dumps(e) + "\n" for e in lines), encoding="utf-8")
    return folder


def _read(out, split):
    news = data.read_news(out / split / "news.tsv")
    return news, data.read_behaviors(out / split / "behaviors.tsv", news)


def _clicks_by_user_and_day(raw):
    out = {}
    for day, f in enumerate(sorted(raw.iterdir())):
        for line in f.read_text(encoding="utf-8").splitlines():
            e = json.loads(line)
            if "id" in e and "title" in e:
                out.setdefault(e["userId"], []).append((e["time"], day, e["id"]))
    return out


def test_keep_time_mode(raw, tmp_path):
    s = adressa.convert(raw, tmp_path / "kt")
    assert s["mode"] == "keep_time" and s["skipped"] == {"no_id_or_title": 14, "no_user_or_time": 0}
    raw_ids = dict(line.split("\t") for line in (tmp_path / "kt" / "news_map.tsv").read_text().splitlines())
    user_map = dict(line.split("\t") for line in (tmp_path / "kt" / "user_map.tsv").read_text().splitlines())
    clicks = _clicks_by_user_and_day(raw)
    news, train = _read(tmp_path / "kt", "train")
    _, valid = _read(tmp_path / "kt", "valid")
    _, test = _read(tmp_path / "kt", "test")
    assert train.n_impressions == sum(1 for c in clicks.values() for _, d, _ in c if d == 5)
    assert valid.n_impressions + test.n_impressions == sum(1 for c in clicks.values() for _, d, _ in c if d == 6)
    assert valid.n_impressions == round(0.2 * (valid.n_impressions + test.n_impressions))
    assert news.title[0].startswith("Title ") and "\t" not in news.title[0]
    assert news.category[0] == "nyheter" and news.subcategory[0] == "trondheim" and news.url[0].startswith("http")
    for b, day in ((train, 5), (valid, 6), (test, 6)):
        assert np.isfinite(b.time).all() and np.all(np.diff(b.time) >= 0)
        assert b.impression_ids.tolist() == [str(i + 1) for i in range(b.n_impressions)]
        for i in range(b.n_impressions):
            uid = user_map[b.user_ids[b.user[i]]]
            t = b.time[i]
            assert (t - DAY0) // 86400 == day
            y, cands = b.labels_of(i), b.news_ids[b.candidates_of(i)]
            assert y.sum() == 1 and len(y) <= 21
            pos = raw_ids[cands[y == 1][0]]
            assert (t, day, pos) in clicks[uid]
            every_click = {a for _, _, a in clicks[uid]}
            assert not any(raw_ids[c] in every_click for c in cands[y == 0])  # never-clicked negatives
            hist = [raw_ids[n] for n in b.news_ids[b.history_of(i)]]
            assert hist == [a for tt, _, a in sorted(clicks[uid]) if tt < t]  # earlier clicks, time order
    positions = [int(np.flatnonzero(train.labels_of(i))[0]) for i in range(train.n_impressions)]
    assert len(set(positions)) > 1  # the clicked article is not always first


def test_keep_time_negatives_are_not_from_the_future(raw, tmp_path):
    adressa.convert(raw, tmp_path / "kt")
    raw_ids = dict(line.split("\t") for line in (tmp_path / "kt" / "news_map.tsv").read_text().splitlines())
    first_seen = {}
    for _, events in _clicks_by_user_and_day(raw).items():
        for t, _, a in events:
            first_seen[a] = min(first_seen.get(a, t), t)
    _, train = _read(tmp_path / "kt", "train")
    for i in range(train.n_impressions):
        for n in train.news_ids[train.candidates_of(i)]:
            assert first_seen[raw_ids[n]] <= train.time[i]


def test_glory_mode(raw, tmp_path):
    s = adressa.convert(raw, tmp_path / "gl", keep_time=False, positive_first=True)
    assert s["mode"] == "glory"
    text = (tmp_path / "gl" / "train" / "behaviors.tsv").read_text(encoding="utf-8")
    assert all(line.split("\t")[0] == "null" and line.split("\t")[2] == "null" for line in text.splitlines())
    raw_ids = dict(line.split("\t") for line in (tmp_path / "gl" / "news_map.tsv").read_text().splitlines())
    user_map = dict(line.split("\t") for line in (tmp_path / "gl" / "user_map.tsv").read_text().splitlines())
    clicks = _clicks_by_user_and_day(raw)
    news, train = _read(tmp_path / "gl", "train")
    assert (news.category == "").all() and (news.url == "").all() and (news.title != "").all()
    assert np.isnan(train.time).all()
    _, test = _read(tmp_path / "gl", "test")
    for b, hist_days in ((train, 5), (test, 6)):
        for i in range(b.n_impressions):
            uid = user_map[b.user_ids[b.user[i]]]
            hist = [raw_ids[n] for n in b.news_ids[b.history_of(i)]]
            assert hist == [a for _, d, a in sorted(clicks[uid]) if d < hist_days]
            assert b.labels_of(i)[0] == 1 and b.labels_of(i)[1:].sum() == 0  # positive first, as asked


def test_same_seed_same_output(raw, tmp_path):
    adressa.convert(raw, tmp_path / "a", keep_time=False)
    adressa.convert(raw, tmp_path / "b", keep_time=False)
    for split in adressa.SPLITS:
        a = (tmp_path / "a" / split / "behaviors.tsv").read_bytes()
        assert a == (tmp_path / "b" / split / "behaviors.tsv").read_bytes()


def test_bad_raw_input(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for day in range(3):
        (folder / f"2017010{day + 1}").write_text(json.dumps(_event(1, day, 3, 1, "T")) + "\n", encoding="utf-8")
    (folder / "20170102").write_text(json.dumps(_event(1, 1, 3, 1, "T")) + "\n{broken\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"20170102:2: not a JSON object"):
        adressa.convert(folder, tmp_path / "out")
    with pytest.raises(DataError, match="at least 3 day files"):
        adressa.raw_files(_two_files(tmp_path))


def _two_files(tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    for day in range(2):
        (folder / f"d{day}").write_text("", encoding="utf-8")
    return folder
