"""The loop hooks of task ``mblfe``: the data set as the shared loop sees it, the release's sampler,
full-ranking evaluation, and the epoch-based schedule.

Sampling (spec 1.5): one epoch visits every user once (the dataset's length is the number of
users; the loop drops the last incomplete batch of each shuffled epoch). For each behavior a user
has, one positive is drawn uniformly from the user's items of that behavior and ``neg_count``
negatives uniformly from the items the user never touched in any training behavior (the release's
``all_dict``); a behavior the user lacks is marked absent and left out of the losses. The user id
is the dataset index (the release reads it from the first behavior's row, so a user without that
behavior became the padding id 0).

Evaluation (spec 1.7): every user with a ground-truth item in the split is ranked against all items;
masked are the user's training target items and the items of the other held-out split. Only the
training matrices are propagated: validation and test pairs never enter a graph.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from affectkit.core.errors import DataError, UsageError
from affectkit.core.task import DataBundle
from affectkit.tasks.mblfe.data import MultiBehaviorData, group_by_user, load, warn_issues
from affectkit.tasks.mblfe.model import Graph

KS = (10, 20, 50, 80)
_LOADED: dict[tuple, MultiBehaviorData] = {}


def load_data(cfg: Any, data_dir: Path, warn: bool = True) -> MultiBehaviorData:
    """The data set of ``data_dir`` in the config's funnel order (read once per process)."""
    path = str(Path(data_dir).resolve())
    key = (path, tuple(cfg.data.behaviors), cfg.data.target)
    if key not in _LOADED:
        if any(k[0] != path for k in _LOADED):
            _LOADED.clear()
        ds = load(data_dir, behaviors=cfg.data.behaviors or None, target=cfg.data.target or None, warn=False)
        if ds.n_users == 0 or ds.n_items == 0 or ds.train[ds.target].nnz == 0:
            raise DataError(ds.source or data_dir, f"the target behavior {ds.target!r} has no training interactions")
        if warn:
            warn_issues(ds)
        _LOADED[key] = _LOADED[(path, ds.behaviors, ds.target)] = ds  # also under the order it resolved to
    return _LOADED[key]


def graph_of(ds: MultiBehaviorData) -> Graph:
    return Graph(ds.n_users, ds.n_items, ds.behaviors, tuple(ds.train[b].tocsr() for b in ds.behaviors))


def resolve(cfg: Any, data_dir: Path) -> Any:
    """The funnel read from the data, and the epoch schedule in optimizer steps."""
    from affectkit.core.loop import epoch_schedule

    ds = load_data(cfg, data_dir)
    tc = epoch_schedule(cfg.train, ds.n_users, cfg.schedule.epochs, cfg.schedule.patience, ds.source or data_dir, "users")
    data = replace(cfg.data, behaviors=list(ds.behaviors), target=ds.target)
    return replace(cfg, data=data, train=tc)


# ---------------------------------------------------------------------------------------------
# training samples


class Sampler:
    """Draws the batch of a list of user ids (module docstring); randomness from torch's global RNG,
    so a checkpoint's RNG state resumes the same stream."""

    def __init__(self, ds: MultiBehaviorData, neg_count: int):
        self.n_items, self.neg_count = ds.n_items, neg_count
        self.csr = [ds.train[b].tocsr() for b in ds.behaviors]
        touched = ds.union().tocoo()
        self.touched = np.unique(touched.row.astype(np.int64) * ds.n_items + touched.col)
        self.n_touched = np.asarray(ds.union().getnnz(axis=1))

    def __call__(self, users: list[int]) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        u = np.asarray(users, dtype=np.int64)
        n_b = len(self.csr)
        pos = np.zeros((len(u), n_b), np.int64)
        has = np.zeros((len(u), n_b), bool)
        for b, m in enumerate(self.csr):
            lo, n = m.indptr[u], np.diff(m.indptr)[u]
            has[:, b] = n > 0
            pick = lo + np.floor(rng.random(len(u)) * np.maximum(n, 1)).astype(np.int64)
            pos[:, b] = np.where(has[:, b], m.indices[np.minimum(pick, max(0, len(m.indices) - 1))], 0)
        neg = self.negatives(u, (len(u), n_b, self.neg_count), rng)
        return {"users": torch.from_numpy(u), "pos": torch.from_numpy(pos), "neg": torch.from_numpy(neg),
                "has": torch.from_numpy(has)}

    def negatives(self, u: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Uniform items the user never touched (rejection sampling; a user who touched every item
        keeps its draws)."""
        neg = rng.integers(0, self.n_items, size=shape)
        owner = np.broadcast_to(u.reshape(-1, *([1] * (len(shape) - 1))), shape)
        full = self.n_touched[owner] >= self.n_items
        for _ in range(100):
            keys = owner * self.n_items + neg
            pos = np.searchsorted(self.touched, keys)
            bad = (self.touched[np.minimum(pos, len(self.touched) - 1)] == keys) & ~full
            if not bad.any():
                break
            neg[bad] = rng.integers(0, self.n_items, size=int(bad.sum()))
        return neg


# ---------------------------------------------------------------------------------------------
# evaluation rows


def split_targets(ds: MultiBehaviorData, split: str) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """(ground truth, masked items) per user of ``split``: masked are the training target items and
    the other held-out split's items."""
    gt = group_by_user(getattr(ds, split))
    other = group_by_user(getattr(ds, "test" if split == "validation" else "validation"))
    target = ds.train[ds.target].tocsr()
    mask = {u: np.union1d(target.indices[target.indptr[u] : target.indptr[u + 1]], other.get(u, np.empty(0, np.int64)))
            for u in gt}
    return gt, mask


@dataclass(frozen=True)
class EvalRow:
    user: int
    gt: np.ndarray
    mask: np.ndarray


def _padded(arrays: list[np.ndarray]) -> torch.Tensor:
    width = max([len(a) for a in arrays] + [1])
    out = np.full((len(arrays), width), -1, np.int64)
    for r, a in enumerate(arrays):
        out[r, : len(a)] = a
    return torch.from_numpy(out)


def _rows(padded: torch.Tensor, n_items: int) -> sp.csr_matrix:
    """Batch row -> its items, from -1-padded ids."""
    p = padded.cpu().numpy()
    rows, cols = np.nonzero(p >= 0)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, p[rows, cols])), shape=(p.shape[0], n_items))


class Collate:
    """Training batches (lists of user ids) through the sampler; evaluation rows padded with -1."""

    def __init__(self, sampler: Sampler):
        self.sampler = sampler

    def __call__(self, items: list[Any]) -> dict[str, torch.Tensor]:
        if items and isinstance(items[0], EvalRow):
            return {"users": torch.tensor([r.user for r in items], dtype=torch.long),
                    "gt": _padded([r.gt for r in items]), "mask": _padded([r.mask for r in items])}
        return self.sampler([int(i) for i in items])


def build_data(cfg: Any, data_dir: Path) -> DataBundle:
    ds = load_data(cfg, data_dir, warn=False)
    split = cfg.data.eval_split
    if len(getattr(ds, split)) == 0:
        other = "test" if split == "validation" else "validation"
        if len(getattr(ds, other)) == 0:
            raise DataError(ds.source or data_dir, "no validation or test pairs: nothing to evaluate")
        from affectkit.core.output import get_output

        get_output().warn(f"{ds.source or data_dir}: no {split} pairs; scoring the {other} split instead")
        split = other
    gt, mask = split_targets(ds, split)
    rows = [EvalRow(u, gt[u], mask[u]) for u in sorted(gt)]
    return DataBundle(train=list(range(ds.n_users)), eval=rows, collate_fn=Collate(Sampler(ds, cfg.loss.neg_count)),
                      info={"split": split, "users": ds.n_users, "items": ds.n_items, "behaviors": list(ds.behaviors)})


def build_model(cfg: Any, data_dir: Path | None = None) -> torch.nn.Module:
    from affectkit.tasks.mblfe.baselines import build_recommender

    if not _LOADED:
        raise UsageError("mblfe: the data set must be loaded before the model is built (build_data first)")
    ds = next(iter(_LOADED.values())) if data_dir is None else load_data(cfg, data_dir, warn=False)
    if tuple(ds.behaviors) != tuple(cfg.data.behaviors or ds.behaviors):
        raise UsageError(f"mblfe: the loaded data's behaviors {list(ds.behaviors)} are not the config's {cfg.data.behaviors}")
    return build_recommender(graph_of(ds), cfg)


def eval_step(model: Any, batch: dict[str, torch.Tensor], cfg: Any) -> dict[str, torch.Tensor]:
    from affectkit.components.ranking import topk_metrics

    net = getattr(model, "module", model)
    scores = net.score_users(batch["users"]).float()
    n_items = scores.shape[1]
    res = topk_metrics(scores, _rows(batch["gt"], n_items), _rows(batch["mask"], n_items), ks=KS, batch_size=len(scores))
    return {k: torch.from_numpy(v) for k, v in res.values.items() if k.split("@")[0] in ("hit", "ndcg")}


def evaluate(outputs: dict[str, np.ndarray], cfg: Any) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in sorted(outputs.items(), key=lambda kv: (int(kv[0].split("@")[1]), kv[0]))}
