"""MIND reader/writer: parsing, exact round trips, unlabeled and null-time files, errors, statistics."""

import numpy as np
import pytest

from affectkit.core.errors import DataError
from affectkit.tasks.news_rec import data

NEWS = (
    "N1\tsports\tfootball\tA match\tSome abstract\thttps://x/1\t[]\t[]\n"
    'N2\tnews\tpolitics\tAn election "quoted"\t\thttps://x/2\t[{"Label": "E", "WikidataId": "Q1"}]\t\n'
    "N3\tsports\ttennis\tA serve\t\t\t\t\n"
    "N4\tfinance\tmarkets\tStocks\t\t\t[]\t[]\n"
)
BEHAVIORS = (
    "1\tU1\t11/11/2019 9:05:58 AM\tN1 N2\tN3-1 N4-0\n"
    "2\tU2\t11/12/2019 12:00:01 PM\t\tN1-0 N2-0 N3-1\n"
    "3\tU1\t11/12/2019 12:30:00 AM\tN1 N2\tN4-1 N3-0\n"
)


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def mind(tmp_path):
    return _write(tmp_path, "news.tsv", NEWS), _write(tmp_path, "behaviors.tsv", BEHAVIORS)


def test_parse_layout(mind):
    news_path, beh_path = mind
    news = data.read_news(news_path)
    b = data.read_behaviors(beh_path, news)
    assert len(news) == 4 and news.index["N3"] == 2
    assert news.entities(1) == [{"Label": "E", "WikidataId": "Q1"}] and news.entities(2, "abstract") == []
    assert b.n_impressions == 3 and b.n_users == 2 and b.labeled
    assert b.news_ids.tolist() == ["N1", "N2", "N3", "N4"]  # the news table's order
    assert b.user.tolist() == [0, 1, 0]
    assert b.candidates_of(1).tolist() == [0, 1, 2] and b.labels_of(1).tolist() == [0, 0, 1]
    assert b.history_of(0).tolist() == [0, 1] and b.history_of(1).tolist() == []
    assert len(b.hist_offsets) - 1 == 2  # U1's history is stored once
    assert b.time[0] == 1573463158.0  # 2019-11-11 09:05:58 UTC
    assert b.time[1] - b.time[0] == 86400 + 2 * 3600 + 54 * 60 + 3  # 9:05:58 AM -> 12:00:01 PM next day
    assert data.format_time(b.time[2]) == "11/12/2019 12:30:00 AM"  # 12 AM is midnight
    imp, news_idx = b.clicks()
    assert imp.tolist() == [0, 1, 2] and news_idx.tolist() == [2, 2, 3]
    assert [y.tolist() for y in b.per_impression(b.labels)] == [[1, 0], [0, 0, 1], [1, 0]]


def test_round_trip_exact(mind, tmp_path):
    news_path, beh_path = mind
    news = data.read_news(news_path)
    b = data.read_behaviors(beh_path, news)
    data.write_news(tmp_path / "out" / "news.tsv", news)
    data.write_behaviors(tmp_path / "out" / "behaviors.tsv", b)
    assert (tmp_path / "out" / "news.tsv").read_text(encoding="utf-8") == NEWS
    assert (tmp_path / "out" / "behaviors.tsv").read_text(encoding="utf-8") == BEHAVIORS
    # without a news table the index map follows first appearance (candidates, then history)
    b2 = data.read_behaviors(beh_path)
    assert b2.news_ids.tolist() == ["N3", "N4", "N1", "N2"] and data.behaviors_text(b2) == BEHAVIORS


def test_unlabeled_null_time_and_padded_time(tmp_path):
    text = ("null\tU7\tnull\tN1\tN2 N3\n"
            "5\tU8\t01/02/2020 03:04:05 PM\t\tN1\n")
    b = data.read_behaviors(_write(tmp_path, "behaviors.tsv", text))
    assert b.labels is None and not b.labeled
    assert np.isnan(b.time[0]) and b.time[1] == 1577977445.0
    assert b.labels_of(0) is None and b.clicks()[0].size == 0
    assert data.behaviors_text(b) == text  # "null" and the zero-padded time come back verbatim


def test_unknown_history_news_is_noted(mind, tmp_path):
    news = data.read_news(mind[0])
    b = data.read_behaviors(_write(tmp_path, "b.tsv", "1\tU1\t11/11/2019 9:05:58 AM\tN9 N1\tN3-1 N4-0\n"), news)
    assert b.notes["unknown_history_news"] == 1 and b.news_ids[-1] == "N9"


@pytest.mark.parametrize("line, problem", [
    ("1\tU1\t11/11/2019 9:05:58 AM\tN1\n", "expected 5 tab-separated columns"),
    ("1\tU1\t11/11/2019 9:05:58 AM\tN1\tN3-2 N4-0\n", "expected NewsID-0 or NewsID-1"),
    ("1\tU1\t11/11/2019 9:05:58 AM\tN1\tN3-x\n", "expected NewsID-0 or NewsID-1"),
    ("1\tU1\t11/11/2019 9:05:58 AM\tN1\tN3-1 N4\n", "mixes labeled"),
    ("1\tU1\t2019-11-11 09:05:58\tN1\tN3-1\n", "is not 'M/D/YYYY h:mm:ss AM/PM'"),
    ("1\tU1\t13/11/2019 9:05:58 AM\tN1\tN3-1\n", "month must be"),
    ("1\tU1\t11/11/2019 13:05:58 AM\tN1\tN3-1\n", "hour must be 1..12"),
    ("1\tU1\t11/11/2019 9:05:58 AM\tN1\tN77-1\n", "candidate news id 'N77' is not in"),
    ("1\tU1\t11/11/2019 9:05:58 AM\tN1\t\n", "impressions column is empty"),
])
def test_bad_behaviors_lines(mind, tmp_path, line, problem):
    news = data.read_news(mind[0])
    path = _write(tmp_path, "bad.tsv", BEHAVIORS + line)
    with pytest.raises(DataError) as exc:
        data.read_behaviors(path, news)
    msg = str(exc.value)
    assert msg.startswith(f"{path}:4: ") and problem in msg and "\n" not in msg
    assert exc.value.exit_code == 2


@pytest.mark.parametrize("line, problem", [
    ("N5\tsports\tfootball\tTitle\n", "expected 8 tab-separated columns"),
    ("N1\tsports\tfootball\tTitle\t\t\t[]\t[]\n", "already on line 1"),
    ("N5\tsports\tfootball\tTitle\t\t\tnot json\t[]\n", "must be empty or a JSON list"),
])
def test_bad_news_lines(tmp_path, line, problem):
    path = _write(tmp_path, "news.tsv", NEWS + line)
    with pytest.raises(DataError, match=problem) as exc:
        data.read_news(path)
    assert str(exc.value).startswith(f"{path}:5: ")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        data.read_behaviors(tmp_path / "nope.tsv")


def test_statistics_and_cold_share(mind, tmp_path):
    news = data.read_news(mind[0])
    train = data.read_behaviors(mind[1], news)
    dev_text = "1\tU3\t11/15/2019 8:00:00 AM\tN1\tN3-1 N4-0 N4-1\n"
    dev = data.read_behaviors(_write(tmp_path, "dev.tsv", dev_text), news)
    s = data.statistics(train, news)
    assert s["impressions"] == 3 and s["users"] == 2 and s["news"] == 4 and s["clicks"] == 3
    assert s["labeled"] and s["categories"] == 3 and s["subcategories"] == 4
    assert s["candidates_per_impression"] == pytest.approx(7 / 3)
    assert s["time"]["span_days"] == pytest.approx((train.time.max() - train.time.min()) / 86400)
    assert s["cold_share"] is None and s["impressions_without_click"] == 0
    d = data.statistics(dev, news, train)
    # train clicks: N3, N4; train histories: N1, N2 -> nothing in dev is cold
    assert d["cold_share"] == 0.0
    train_small = data.read_behaviors(_write(tmp_path, "t.tsv", "1\tU1\t11/11/2019 9:05:58 AM\tN1\tN3-1 N4-0\n"))
    d2 = data.statistics(dev, news, train_small)  # N4 was only shown, never clicked: cold
    assert d2["cold_share"] == pytest.approx(2 / 3) and d2["cold_news_share"] == pytest.approx(1 / 2)
    assert d2["impressions_all_clicked"] == 0


def test_merge_and_select_news(mind):
    news = data.read_news(mind[0])
    merged = data.merge_news(news.select(np.array([2, 0])), news)
    assert merged.ids.tolist() == ["N3", "N1", "N2", "N4"]
    assert merged.title[1] == "A match"


def test_time_helpers():
    for text in ("1/1/2020 12:00:00 AM", "12/31/2019 11:59:59 PM", "2/29/2020 12:00:00 PM"):
        assert data.format_time(data.parse_time(text)) == text
    assert data.format_time(float("nan")) == "null"
