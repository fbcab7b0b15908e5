"""Stage partition: no leakage from the future, CSR layout against brute force, masks and gaps."""

import numpy as np
import pytest

from affectkit.core.errors import DataError
from affectkit.tasks.news_rec import stages
from affectkit.tasks.news_rec.stages import DAY

T0 = 1573430400.0  # 2019-11-11 00:00 UTC


@pytest.fixture(scope="module")
def events():
    rng = np.random.default_rng(0)
    n = 5000
    return stages.click_events(rng.integers(0, 40, n), rng.integers(0, 300, n),
                               T0 + np.floor(rng.uniform(0, 14 * DAY, n)), n_users=40, n_news=300)


def test_no_leakage_and_completeness(events):
    rng = np.random.default_rng(1)
    for width, T in ((DAY, 7), (6 * 3600.0, 5), (2 * DAY, 3), (7 * DAY, 2)):
        for t in T0 + rng.uniform(0, 15 * DAY, 30):
            w = stages.stage_window(events, t, width, T)
            assert w.boundary <= t < w.boundary + width
            assert (w.time < w.boundary).all() and (w.end <= w.boundary).all()  # nothing at or after b
            assert np.all(np.diff(w.end) == width) and w.end[-1] == w.boundary
            # completeness: every click in [b - T*width, b) is in the window, in its own stage
            inside = (events.time >= w.boundary - T * width) & (events.time < w.boundary)
            assert len(w.time) == inside.sum()
            s = w.edge_stage()
            assert ((w.time >= w.start[s]) & (w.time < w.end[s])).all()


def test_day_snapshot_rule(events):
    day_d = T0 + 9 * DAY  # impressions on day 9 (local index) see days 2..8 only
    for t in (day_d, day_d + 1, day_d + 12 * 3600, day_d + DAY - 1):
        w = stages.stage_window(events, t, DAY, 7)
        assert w.boundary == day_d
        assert w.start[0] == T0 + 2 * DAY and w.end[-1] == day_d
        assert w.time.max() < day_d and w.time.min() >= T0 + 2 * DAY
        assert np.all(w.gaps(t) >= 0) and w.gaps(t)[-1] == t - day_d
    # a click exactly at the boundary belongs to the next stage
    ev = stages.click_events([0, 0], [1, 2], [day_d - 1, day_d])
    w = stages.stage_window(ev, day_d + 5, DAY, 2)
    assert w.news.tolist() == [1] and w.mask.tolist() == [[False, True]]


def test_csr_and_mask_against_brute_force(events):
    t = T0 + 10.3 * DAY
    w = stages.stage_window(events, t, DAY, 4)
    for s in range(4):
        sel = (events.time >= w.start[s]) & (events.time < w.end[s])
        u, n = w.edges(s)
        assert sorted(zip(u.tolist(), n.tolist(), strict=True)) == sorted(
            zip(events.user[sel].tolist(), events.news[sel].tolist(), strict=True))
        expected = np.zeros(40, bool)
        expected[events.user[sel]] = True
        np.testing.assert_array_equal(w.mask[:, s], expected)
        assert w.matrix(s).sum() == sel.sum() and w.matrix(s).shape == (40, 300)
    assert w.stage.tolist() == list(range(int((t - 0) // DAY) - 4, int(t // DAY)))


def test_windows_and_impression_masks_agree(events):
    rng = np.random.default_rng(2)
    times = T0 + rng.uniform(0, 16 * DAY, 300)
    users = rng.integers(0, 45, 300)  # users 40..44 never click
    windows, which = stages.stage_windows(events, times, DAY, 5)
    assert len(windows) == len(np.unique(np.floor(times / DAY)))
    mask, gaps = stages.impression_stage_masks(events, users, times, DAY, 5)
    assert mask.shape == gaps.shape == (300, 5) and (gaps > 0).all()
    for i in range(300):
        w = windows[which[i]]
        expected = w.mask[users[i]] if users[i] < 40 else np.zeros(5, bool)
        np.testing.assert_array_equal(mask[i], expected)
        np.testing.assert_allclose(gaps[i], w.gaps(times[i]))


def test_shifted_origin_and_null_times(events):
    # a grid on 06:00 UTC: the boundary for 05:00 is the previous day's 06:00
    w = stages.stage_window(events, T0 + 3 * DAY + 5 * 3600, DAY, 2, origin=6 * 3600)
    assert w.boundary == T0 + 2 * DAY + 6 * 3600
    with pytest.raises(DataError, match="no time"):
        stages.click_events([0], [0], [np.nan])
    with pytest.raises(DataError, match="null"):
        stages.stage_window(events, np.nan)


def test_events_from_behaviors():
    from affectkit.tasks.news_rec.data import make_behaviors

    b = make_behaviors(["1", "2"], ["U1", "U2"], [T0 + 100, T0 + 50], [[], ["N1"]],
                       [["N1", "N2"], ["N3", "N1"]], [[0, 1], [1, 1]])
    ev = stages.events_from_behaviors(b)
    assert ev.time.tolist() == [T0 + 50, T0 + 50, T0 + 100]  # sorted by time
    assert b.news_ids[ev.news].tolist() == ["N3", "N1", "N2"] and b.user_ids[ev.user].tolist() == ["U2", "U2", "U1"]
