"""Stage partition of timed clicks, without leakage from the future (spec section 2.3, item 3).

Time is cut into stages of width ``width`` seconds on a fixed grid: stage s covers
``[origin + s*width, origin + (s+1)*width)``. With the default origin 0 (the unix epoch) and a
width that divides a day, the grid falls on UTC midnights, so stage = calendar day for 1-day stages.

For a prediction time t the visible boundary is the last grid point at or before t,
``b = origin + floor((t - origin) / width) * width``. The window is the ``n_stages`` stages that end
at or before b, oldest first: stages k-T .. k-1 where ``b = origin + k*width``. So a click at time
>= b is never visible, and impressions on day D with 1-day stages see days D-T .. D-1 only (the
per-day snapshot rule); the clicks of day D before t are not used either. The window is the same
for every user; a user with no click in a stage gets a False mask bit there (the model's "absent"
vector). Stage end times feed the time-gap embedding (t - end >= 0).

``StageWindow`` holds one window as CSR arrays (stage s owns edges ``offsets[s]:offsets[s+1]``,
edges sorted by time). ``stage_windows`` builds one window per distinct boundary of many
prediction times; ``impression_stage_masks`` gives the (impression, stage) mask and gaps directly,
vectorised, for batching. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from affectkit.core.errors import DataError
from affectkit.tasks.news_rec.data import Behaviors

DAY = 86400.0


@dataclass(frozen=True)
class ClickEvents:
    """Clicks sorted by time (ties keep input order)."""

    user: np.ndarray  # (E,) int64
    news: np.ndarray  # (E,) int64
    time: np.ndarray  # (E,) float64 unix seconds
    n_users: int
    n_news: int

    def __len__(self) -> int:
        return len(self.time)


def click_events(user: np.ndarray, news: np.ndarray, time: np.ndarray,
                 n_users: int | None = None, n_news: int | None = None) -> ClickEvents:
    """Sort clicks by time; NaN times are refused (stages need real timestamps)."""
    user, news = np.asarray(user, np.int64), np.asarray(news, np.int64)
    time = np.asarray(time, np.float64)
    if not len(user) == len(news) == len(time):
        raise ValueError(f"user, news and time differ in length ({len(user)}, {len(news)}, {len(time)})")
    if np.isnan(time).any():
        raise DataError(None, f"{int(np.isnan(time).sum())} clicks have no time ('null'): stages need real timestamps",
                        hint="convert Adressa with keep_time=True (the default)")
    order = np.argsort(time, kind="stable")
    nu = int(user.max(initial=-1)) + 1 if n_users is None else n_users
    nn = int(news.max(initial=-1)) + 1 if n_news is None else n_news
    return ClickEvents(user[order], news[order], time[order], nu, nn)


def events_from_behaviors(b: Behaviors) -> ClickEvents:
    """The clicked candidates of a labeled ``data.Behaviors``, each at its impression's time."""
    imp, news = b.clicks()
    return click_events(b.user[imp], news, b.time[imp], b.n_users, b.n_news)


def boundary_index(t: np.ndarray | float, width: float, origin: float = 0.0) -> np.ndarray:
    """k with ``origin + k*width`` the last grid point at or before t."""
    if width <= 0:
        raise ValueError(f"the stage width must be positive, got {width}")
    t = np.asarray(t, np.float64)
    if np.isnan(t).any():
        raise DataError(None, "a prediction time is 'null': stages need real timestamps")
    return np.floor((t - origin) / width).astype(np.int64)


@dataclass(frozen=True)
class StageWindow:
    """The ``n_stages`` stages visible at one boundary, oldest first, as CSR edge lists."""

    boundary: float  # clicks at or after this time are not included
    stage: np.ndarray  # (T,) int64 absolute stage numbers
    start: np.ndarray  # (T,) float64 stage start times
    end: np.ndarray  # (T,) float64 stage end times (<= boundary)
    offsets: np.ndarray  # (T + 1,) int64: stage s owns edges offsets[s]:offsets[s+1]
    user: np.ndarray  # (E,) int64
    news: np.ndarray  # (E,) int64
    time: np.ndarray  # (E,) float64
    mask: np.ndarray  # (n_users, T) bool: the user clicked in the stage
    n_news: int

    @property
    def n_stages(self) -> int:
        return len(self.stage)

    def edges(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """(user, news) of stage s (0 = oldest)."""
        sl = slice(self.offsets[s], self.offsets[s + 1])
        return self.user[sl], self.news[sl]

    def edge_stage(self) -> np.ndarray:
        """(E,) the stage (0..T-1) of each edge."""
        return np.repeat(np.arange(self.n_stages), np.diff(self.offsets))

    def matrix(self, s: int) -> sp.csr_matrix:
        """(n_users, n_news) click counts of stage s."""
        u, n = self.edges(s)
        return sp.csr_matrix((np.ones(len(u), np.float32), (u, n)), shape=(self.mask.shape[0], self.n_news))

    def gaps(self, now: float | np.ndarray) -> np.ndarray:
        """now - stage end, per stage (for a scalar ``now``) or (len(now), T) for an array."""
        now = np.asarray(now, np.float64)
        return now[..., None] - self.end if now.ndim else float(now) - self.end


def stage_window(events: ClickEvents, t: float, width: float = DAY, n_stages: int = 7,
                 origin: float = 0.0) -> StageWindow:
    """The stages visible at prediction time t (see the module docstring)."""
    if n_stages < 1:
        raise ValueError(f"n_stages must be >= 1, got {n_stages}")
    k = int(boundary_index(t, width, origin))
    stage = np.arange(k - n_stages, k, dtype=np.int64)
    grid = origin + np.arange(k - n_stages, k + 1, dtype=np.float64) * width
    cuts = np.searchsorted(events.time, grid, side="left")  # edge positions of each grid point
    lo, hi = int(cuts[0]), int(cuts[-1])
    offsets = (cuts - lo).astype(np.int64)
    user, news, time = events.user[lo:hi], events.news[lo:hi], events.time[lo:hi]
    mask = np.zeros((events.n_users, n_stages), bool)
    mask[user, np.repeat(np.arange(n_stages), np.diff(offsets))] = True
    return StageWindow(float(grid[-1]), stage, grid[:-1], grid[1:], offsets, user, news, time, mask, events.n_news)


def stage_windows(events: ClickEvents, times: np.ndarray, width: float = DAY, n_stages: int = 7,
                  origin: float = 0.0) -> tuple[list[StageWindow], np.ndarray]:
    """One window per distinct boundary of ``times`` (ascending) and, per time, its window's index."""
    ks, inverse = np.unique(boundary_index(times, width, origin), return_inverse=True)
    windows = [stage_window(events, origin + float(k) * width, width, n_stages, origin) for k in ks]
    return windows, inverse.reshape(-1)


def impression_stage_masks(events: ClickEvents, users: np.ndarray, times: np.ndarray, width: float = DAY,
                           n_stages: int = 7, origin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """For each (user, prediction time): the (n, T) mask of the visible stages in which the user
    clicked (oldest first), and the (n, T) gaps ``time - stage end`` in seconds."""
    users = np.asarray(users, np.int64)
    times = np.asarray(times, np.float64)
    k = boundary_index(times, width, origin)
    stage = k[:, None] + np.arange(-n_stages, 0)[None, :]  # (n, T) absolute stage numbers
    end = origin + (stage + 1).astype(np.float64) * width
    if len(events) == 0:
        return np.zeros(stage.shape, bool), times[:, None] - end
    ev_stage = np.floor((events.time - origin) / width).astype(np.int64)
    lo = min(int(ev_stage.min()), int(stage.min(initial=0)))
    span = max(int(ev_stage.max()), int(stage.max(initial=0))) - lo + 1
    present = np.unique(events.user * span + (ev_stage - lo))  # sorted (user, stage) keys
    query = users[:, None] * span + (stage - lo)
    pos = np.minimum(np.searchsorted(present, query), len(present) - 1)
    return present[pos] == query, times[:, None] - end
