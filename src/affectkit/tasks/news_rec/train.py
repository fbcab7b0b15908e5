"""The shared loop's hooks for news-rec (``LOOP``), used by the task's recipe in ``__init__``.

Training samples follow MIND practice: one per click of a training impression, with ``npratio``
unclicked candidates of the same impression drawn uniformly (with replacement when the impression
has fewer), the clicked one in column 0, and softmax cross-entropy over the 1 + npratio scores.
Evaluation scores every candidate of an impression; the metrics are the official MIND ones
(``components.ranking.impression_metrics``: stable ranks, every click counts in MRR).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectkit.core.errors import UsageError
from affectkit.core.task import DataBundle, LoopTask
from affectkit.tasks.news_rec.config import METRICS
from affectkit.tasks.news_rec.prepare import Impressions, Prepared, prepare

_PREPARED: dict[tuple, Prepared] = {}


def load(cfg: Any, data_dir: Path) -> Prepared:
    d, m = cfg.data, cfg.model
    key = (str(Path(data_dir).resolve()), d.train_dir, d.eval_dir, d.valid_dir, d.his_size, d.title_size, d.valid_hours, m.stage_hours)
    if key not in _PREPARED:
        _PREPARED.clear()
        _PREPARED[key] = prepare(cfg, Path(data_dir))
    return _PREPARED[key]


def resolve(cfg: Any, data_dir: Path) -> Any:
    """The epoch schedule in optimizer steps (one epoch: every training click once)."""
    from affectkit.core.loop import epoch_schedule

    prep = load(cfg, data_dir)
    tc = epoch_schedule(cfg.train, len(prep.samples), cfg.schedule.epochs, cfg.schedule.patience, data_dir,
                        "training clicks")
    return replace(cfg, train=tc)


@dataclass(frozen=True)
class EvalRow:
    user: int
    k: int
    time: float
    candidates: np.ndarray
    labels: np.ndarray
    history: np.ndarray


def eval_rows(imps: Impressions) -> list[EvalRow]:
    return [EvalRow(int(imps.user[i]), int(imps.k[i]), float(imps.time[i]), imps.candidates[i], imps.labels[i],
                    imps.history[i]) for i in range(len(imps))]


class Collate:
    """Training samples (ints) -> sampled candidate lists; evaluation rows -> padded tensors."""

    def __init__(self, prep: Prepared, npratio: int):
        self.prep, self.npratio = prep, npratio

    def __call__(self, items: list[Any]) -> dict[str, torch.Tensor]:
        if items and isinstance(items[0], EvalRow):
            return {"users": torch.tensor([r.user for r in items]), "k": torch.tensor([r.k for r in items]),
                    "time": torch.tensor([r.time for r in items], dtype=torch.float64),
                    "candidates": torch.from_numpy(np.stack([r.candidates for r in items])),
                    "labels": torch.from_numpy(np.stack([r.labels for r in items])),
                    "history": torch.from_numpy(np.stack([r.history for r in items]))}
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        imps = self.prep.train_imps
        s = self.prep.samples[np.asarray(items, np.int64)]
        rows = s[:, 0]
        unclicked = imps.labels[rows] == 0  # (B, C)
        n_neg = unclicked.sum(1)
        # the j-th unclicked candidate of each row, j uniform (rows without any: the clicked one again)
        j = np.floor(rng.random((len(rows), self.npratio)) * np.maximum(n_neg, 1)[:, None]).astype(np.int64)
        order = np.argsort(~unclicked, axis=1, kind="stable")  # unclicked columns first
        cols = np.take_along_axis(order, j, axis=1)
        neg = np.where(n_neg[:, None] > 0, np.take_along_axis(imps.candidates[rows], cols, axis=1), s[:, 1:2])
        return {"users": torch.from_numpy(imps.user[rows]), "k": torch.from_numpy(imps.k[rows]),
                "time": torch.from_numpy(imps.time[rows]),
                "candidates": torch.from_numpy(np.concatenate([s[:, 1:2], neg], axis=1)),
                "history": torch.from_numpy(imps.history[rows])}


class NewsRecLoop(LoopTask):
    """The loop hooks; not registered (the task is ``tasks.news_rec:TASK``)."""

    name = "news-rec"
    summary = "news-rec loop hooks"
    metrics = METRICS

    def __init__(self, split: str = "valid"):
        self.split = split

    def build_data(self, cfg: Any, data_dir: Path) -> DataBundle:
        prep = load(cfg, data_dir)
        imps = prep.test if self.split == "test" else prep.valid
        return DataBundle(train=list(range(len(prep.samples))), eval=eval_rows(imps),
                          collate_fn=Collate(prep, cfg.data.npratio), info=prep.info)

    def build_model(self, cfg: Any) -> torch.nn.Module:
        from affectkit.tasks.news_rec.model import NewsRecommender

        if not _PREPARED:
            raise UsageError("news-rec: the data must be prepared before the model is built (build_data first)")
        return NewsRecommender(next(iter(_PREPARED.values())), cfg)

    def train_step(self, model: Any, batch: Any, cfg: Any) -> Any:
        return model(batch, cfg.model.stage_hours * 3600.0)

    def eval_step(self, model: Any, batch: Any, cfg: Any) -> dict[str, torch.Tensor]:
        net = getattr(model, "module", model)
        scores = net.score(batch, cfg.model.stage_hours * 3600.0)
        out = {"scores": scores.float(), "labels": batch["labels"]}
        if net.last_gate is not None:
            out["gate_global"] = net.last_gate.float()
        return out

    def evaluate(self, outputs: dict[str, np.ndarray], cfg: Any) -> dict[str, float]:
        metrics = impression_scores(outputs["scores"], outputs["labels"])
        if "gate_global" in outputs:
            metrics["gate_global"] = float(np.mean(outputs["gate_global"]))
        return metrics


def impression_scores(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Official MIND metrics of padded (n, C) scores and labels (-1 = padding)."""
    from affectkit.components.ranking import impression_metrics

    keep = labels >= 0
    res = impression_metrics([y[k] for y, k in zip(labels, keep, strict=True)],
                             [s[k] for s, k in zip(scores, keep, strict=True)])
    return {**res.mean(), "skipped": float(res.skipped)}
