"""The embedded benchmark of news-rec: seeded news impressions with drifting interests (spec 4.4).

Generative story (defaults in ``SynthConfig``; day d starts at ``START + d * 86400``, UTC):

1. K = 12 topics. Each user has a long-term preference theta_u ~ Dirichlet(0.5) over topics and a
   current topic c_u, drawn uniformly on day 0 and redrawn uniformly each later day with
   probability ``drift`` (0.25): the stage-wise interest evolution a local model should track.
2. News: 150 per day for 14 days, each with a uniform topic, a quality q ~ N(0, 1) and a publish
   time in the first 8 hours of its day. An article is alive while its age is under 3 days and
   has freshness f = exp(-age / 1 day).
3. Each user sees 3 impressions a day at uniform times between 08:00 and 22:00. An impression holds
   25 distinct alive articles drawn with probability proportional to f, in random order.
4. Click logit = log(theta_u[topic] + 1e-3) + 3 * 1[topic = c_u] + 0.7 * (q + log f); the clicks
   are 1 + min(Poisson(0.5), 3) candidates drawn without replacement with probability proportional
   to exp(logit) (Gumbel top-k).

Files (MIND format, ``data.write_*``): ``train/`` holds the impressions of days 0-12 and the news
published by day 12, ``dev/`` the impressions of day 13 (the test day) and all news. Impression
ids count from 1 in each split, rows are in time order, times are real (whole seconds). The history
of an impression on day D is the user's clicks on days before D, oldest first (a per-day snapshot,
so no impression reveals another impression's clicks of the same day). news.tsv: category and
subcategory = topic name, title = words drawn mostly from the topic's own vocabulary (a text
encoder has signal), empty abstract and url, entity columns ``[]``. ``truth.npz`` holds theta
(U, K), current_topic (U, days), news_topic, quality, publish_time (per news row N1, N2, ...),
topic names and the user/news id order; ``README.json`` the summary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.runs import atomic_save, atomic_write_json
from affectkit.tasks.news_rec.data import (
    Behaviors,
    NewsTable,
    make_behaviors,
    news_table,
    write_behaviors,
    write_news,
)

DATA_VERSION = 1  # bump when the generator's output changes (caches key the embedded data by it)
DAY = 86400.0
START = 1572566400.0  # 2019-11-01 00:00:00 UTC, near MIND's collection weeks
TOPICS = ("sports", "politics", "finance", "health", "travel", "music", "movies", "science", "food",
          "autos", "weather", "lifestyle")


@dataclass(frozen=True)
class SynthConfig:
    users: int = 1000
    topics: int = 12
    days: int = 14
    test_day: int = 13  # train on days < test_day, test on this day
    news_per_day: int = 150
    alive_days: float = 3.0
    freshness_days: float = 1.0
    drift: float = 0.25
    dirichlet: float = 0.5
    impressions_per_day: int = 3
    candidates: int = 25
    w_current: float = 3.0
    w_quality: float = 0.7
    extra_clicks_mean: float = 0.5
    extra_clicks_max: int = 3
    topic_vocabulary: int = 30  # words per topic
    shared_vocabulary: int = 60  # topic-free words
    title_words: int = 8
    topic_word_share: float = 0.6  # chance that a title word comes from the topic's vocabulary


SIZES = {"quick": SynthConfig(users=200), "full": SynthConfig()}


@dataclass
class SynthData:
    train: Behaviors
    dev: Behaviors
    news_train: NewsTable
    news_all: NewsTable
    truth: dict[str, np.ndarray]
    config: SynthConfig


def topic_names(k: int) -> list[str]:
    return [TOPICS[i] if i < len(TOPICS) else f"topic{i}" for i in range(k)]


def _words(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    """n new pronounceable pseudo-words (consonant-vowel syllables)."""
    cons, vows = "bdfgklmnprstvz", "aeiou"
    out: list[str] = []
    while len(out) < n:
        w = "".join(cons[rng.integers(len(cons))] + vows[rng.integers(len(vows))] for _ in range(rng.integers(2, 4)))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


def _titles(rng: np.random.Generator, cfg: SynthConfig, news_topic: np.ndarray) -> list[str]:
    taken: set[str] = set()
    topic_vocab = [_words(rng, cfg.topic_vocabulary, taken) for _ in range(cfg.topics)]
    shared = _words(rng, cfg.shared_vocabulary, taken)
    titles = []
    for k in news_topic.tolist():
        from_topic = rng.random(cfg.title_words) < cfg.topic_word_share
        words = [topic_vocab[k][rng.integers(cfg.topic_vocabulary)] if t else shared[rng.integers(len(shared))]
                 for t in from_topic]
        titles.append(" ".join(words).capitalize())
    return titles


def _topk_gumbel(rng: np.random.Generator, logits: np.ndarray, k: int) -> np.ndarray:
    """Per row, k column indices drawn without replacement with probability ∝ exp(logits)."""
    keys = logits + rng.gumbel(size=logits.shape)
    return np.argsort(-keys, axis=1, kind="stable")[:, :k]


def _day(rng: np.random.Generator, cfg: SynthConfig, d: int, theta: np.ndarray, current: np.ndarray,
         news_topic: np.ndarray, quality: np.ndarray, publish: np.ndarray) -> dict[str, np.ndarray]:
    """The impressions of day d: user, time, candidates (n, C) and click mask (n, C)."""
    U, per = cfg.users, cfg.impressions_per_day
    user = np.repeat(np.arange(U), per)
    t = START + d * DAY + np.floor(rng.uniform(8 * 3600, 22 * 3600, size=len(user)))
    window = np.flatnonzero((publish < t.max()) & (publish > t.min() - cfg.alive_days * DAY))
    age_all = (t[:, None] - publish[None, window]) / DAY  # (n, news that may be alive today)
    alive = (age_all > 0) & (age_all < cfg.alive_days)
    log_f = np.where(alive, -age_all / cfg.freshness_days, -np.inf)
    pick = _topk_gumbel(rng, log_f, cfg.candidates)
    cand = window[pick]
    log_f = np.take_along_axis(log_f, pick, axis=1)
    shuffle = rng.permuted(np.tile(np.arange(cfg.candidates), (len(user), 1)), axis=1)  # random order
    cand, lf = np.take_along_axis(cand, shuffle, axis=1), np.take_along_axis(log_f, shuffle, axis=1)
    if not np.isfinite(lf).all():
        raise RuntimeError(f"day {d}: fewer than {cfg.candidates} alive news")
    topic = news_topic[cand]
    logit = (np.log(theta[user[:, None], topic] + 1e-3) + cfg.w_current * (topic == current[user][:, None])
             + cfg.w_quality * (quality[cand] + lf))
    n_clicks = 1 + np.minimum(rng.poisson(cfg.extra_clicks_mean, size=len(user)), cfg.extra_clicks_max)
    picked = _topk_gumbel(rng, logit, cfg.extra_clicks_max + 1)
    clicked = np.zeros(cand.shape, bool)
    rows = np.repeat(np.arange(len(user)), n_clicks)
    cols = picked[rows, np.concatenate([np.arange(m) for m in n_clicks])]
    clicked[rows, cols] = True
    order = np.argsort(t, kind="stable")
    return {"user": user[order], "time": t[order], "cand": cand[order], "clicked": clicked[order]}


def _behaviors(days: list[dict[str, np.ndarray]], histories: list[list[list[int]]], news_ids: list[str]) -> Behaviors:
    """MIND rows of consecutive days; ``histories[j][u]`` is user u's history on the j-th of them."""
    ids = np.array(news_ids, dtype=object)
    imp_users, times, hists, cands, labels = [], [], [], [], []
    for day, hist in zip(days, histories, strict=True):
        for u, t, c, y in zip(day["user"].tolist(), day["time"].tolist(), day["cand"], day["clicked"], strict=True):
            imp_users.append(f"U{u + 1}")
            times.append(t)
            hists.append(ids[hist[u]].tolist())
            cands.append(ids[c].tolist())
            labels.append(y.astype(int).tolist())
    return make_behaviors([str(i + 1) for i in range(len(times))], imp_users, times, hists, cands, labels,
                          news_ids=news_ids)


def generate(cfg: SynthConfig, seed: int) -> SynthData:
    """The data set in memory (see the module docstring)."""
    rng = np.random.default_rng(seed)
    U, K, D = cfg.users, cfg.topics, cfg.days
    n_news = D * cfg.news_per_day
    theta = rng.dirichlet(np.full(K, cfg.dirichlet), size=U)
    news_day = np.repeat(np.arange(D), cfg.news_per_day)
    news_topic = rng.integers(0, K, size=n_news)
    quality = rng.normal(size=n_news)
    publish = START + news_day * DAY + np.floor(rng.uniform(0, 8 * 3600, size=n_news))
    titles = _titles(rng, cfg, news_topic)

    current = np.empty((U, D), np.int64)
    current[:, 0] = rng.integers(0, K, size=U)
    days, histories = [], []
    clicks_so_far: list[list[int]] = [[] for _ in range(U)]
    for d in range(D):
        if d > 0:
            redraw = rng.random(U) < cfg.drift
            current[:, d] = np.where(redraw, rng.integers(0, K, size=U), current[:, d - 1])
        histories.append([list(h) for h in clicks_so_far])  # snapshot: clicks of days < d
        day = _day(rng, cfg, d, theta, current[:, d], news_topic, quality, publish)
        days.append(day)
        for u, c, y in zip(day["user"].tolist(), day["cand"], day["clicked"], strict=True):
            clicks_so_far[u].extend(c[y].tolist())

    news_ids = [f"N{k + 1}" for k in range(n_news)]
    names = np.array(topic_names(K), dtype=object)[news_topic].tolist()
    empty = [""] * n_news
    news_all = news_table([news_ids, names, names, titles, empty, empty, ["[]"] * n_news, ["[]"] * n_news])
    news_train = news_all.select(np.flatnonzero(news_day < cfg.test_day))
    train = _behaviors(days[: cfg.test_day], histories[: cfg.test_day], news_ids)
    dev = _behaviors(days[cfg.test_day : cfg.test_day + 1], histories[cfg.test_day : cfg.test_day + 1], news_ids)
    truth = {"theta": theta.astype(np.float32), "current_topic": current, "news_topic": news_topic.astype(np.int64),
             "quality": quality.astype(np.float32), "publish_time": publish, "topics": np.array(topic_names(K)),
             "news_ids": np.array(news_ids), "user_ids": np.array([f"U{u + 1}" for u in range(U)])}
    return SynthData(train, dev, news_train, news_all, truth, cfg)


def write(data: SynthData, out: Path) -> None:
    """Write ``train/``, ``dev/`` and ``truth.npz`` under ``out``."""
    out = Path(out)
    write_behaviors(out / "train" / "behaviors.tsv", data.train)
    write_news(out / "train" / "news.tsv", data.news_train)
    write_behaviors(out / "dev" / "behaviors.tsv", data.dev)
    write_news(out / "dev" / "news.tsv", data.news_all)

    def save_truth(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **data.truth)

    atomic_save(out / "truth.npz", save_truth)


def make(out: Path, seed: int, quick: bool, drift: float | None = None) -> dict[str, Any]:
    """Write the embedded benchmark to ``out``; returns its summary (counts, config, ground-truth file)."""
    cfg = SIZES["quick" if quick else "full"]
    if drift is not None:
        cfg = replace(cfg, drift=drift)
    data = generate(cfg, seed)
    write(data, Path(out))
    summary = {
        "data_version": DATA_VERSION, "seed": seed, "quick": quick, "config": asdict(cfg),
        "users": cfg.users, "news": len(data.news_all), "topics": list(topic_names(cfg.topics)),
        "impressions": {"train": data.train.n_impressions, "dev": data.dev.n_impressions},
        "clicks": {"train": int(data.train.labels.sum()), "dev": int(data.dev.labels.sum())},
        "splits": {"train": f"days 0-{cfg.test_day - 1}", "dev": f"day {cfg.test_day}"},
        "truth": "truth.npz",
    }
    atomic_write_json(Path(out) / "README.json", {
        "what": "affectkit news-rec embedded benchmark: MIND format with drifting interests; truth.npz holds "
                "theta, the daily current topic, news topic, quality and publish time", **summary})
    return summary
