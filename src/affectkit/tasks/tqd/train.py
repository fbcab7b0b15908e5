"""TQD training on the shared loop: clips of the meta CSV's train split (optionally only some types),
the noise level of each sample drawn by the configured sampler from its type (or its motion and
quality scores), the rectified-flow loss; evaluation is the held-out GOLDEN flow loss per noise band
on fixed draws (the same for every run and every evaluation), which selects the best step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError
from affectkit.core.seeding import attach_generator, keep_generator_state
from affectkit.core.task import DataBundle, LoopTask, MetricSpec
from affectkit.tasks.tqd.config import BAND_KEYS, METRICS

BANDS = tuple((float(k.split("-")[0]), float(k.split("-")[1])) for k in BAND_KEYS)


def build_sampler(cfg: Any, train_table: Any = None) -> Any:
    """The configured timestep sampler; tqd-continuous is fitted on the training clips' scores."""
    from affectkit.tasks.tqd.method_sampler import TimestepSampler

    sc = cfg.sampler
    sampler = TimestepSampler(mode=sc.mode, base=sc.base if sc.mode.startswith("tqd-") else None, mu0=sc.mu0,
                              logit_std=sc.logit_std, mode_scale=sc.mode_scale, delta=sc.delta, p_skew=sc.p_skew,
                              beta_motion=tuple(sc.beta_motion), beta_quality=tuple(sc.beta_quality),
                              tau_m=sc.tau_m, tau_v=sc.tau_v, clip=sc.clip)
    if sc.mode == "tqd-continuous":
        if train_table is None or not np.isfinite(train_table.flow).any() or not np.isfinite(train_table.vq).any():
            raise DataError(None, "sampler.mode=tqd-continuous needs flow and vq scores in the meta CSV",
                            "score the clips first (tasks/tqd/scoring.score_videos)")
        sampler.fit_continuous(train_table.flow, train_table.vq)
    return sampler


def tables(cfg: Any, data_dir: Path) -> tuple[Any, Any]:
    """(train rows, held-out golden rows) of the meta CSV."""
    from affectkit.tasks.tqd.data import read_meta

    table = read_meta(data_dir / cfg.data.meta)
    train = table.select(split="train", types=cfg.data.train_types or None)
    if not len(train):
        raise DataError(data_dir / cfg.data.meta, f"no train-split clip of type {cfg.data.train_types or 'any'}")
    test = table.select(split="test", types=["golden"])
    if cfg.data.eval_subset and "subset" in test.columns:
        keep = [i for i, v in enumerate(test.columns["subset"]) if v == cfg.data.eval_subset]
        test = test.take(keep)
    return train, test


def process_rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def held_out_draws(index: int, shape: tuple[int, ...], seed: int, draws: int) -> tuple[Any, Any]:
    """Fixed (s [draws, bands], eps [draws, bands, *shape]) of held-out clip ``index``: seeded by the
    clip alone, so every run, batch size and process count sees the same draws."""
    import torch

    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(index))
    lo = torch.tensor([b[0] for b in BANDS])
    hi = torch.tensor([b[1] for b in BANDS])
    s = lo + (hi - lo) * torch.rand(draws, len(BANDS), generator=gen)
    eps = torch.randn(draws, len(BANDS), *shape, generator=gen)
    return s, eps


class BalancedView:
    """The train clips with each type present repeated (seeded draws) up to the largest type's count: a
    shuffled epoch then gives every type an equal share of each batch in expectation."""

    def __init__(self, dataset: Any, seed: int = 0):
        codes = dataset.table.codes()
        rng = np.random.default_rng([int(seed), 7])
        pools = [np.flatnonzero(codes == c) for c in np.unique(codes)]
        largest = max(len(p) for p in pools)
        self.order = np.concatenate([np.concatenate([p, rng.choice(p, largest - len(p))]) for p in pools])
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[int(self.order[index])]


class TqdLoop(LoopTask):
    """The shared loop's view of TQD training."""

    name = "tqd"
    summary = "TQD training"
    metrics: tuple[MetricSpec, ...] = METRICS

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def build_data(self, cfg: Any, data_dir: Path) -> DataBundle:
        from affectkit.tasks.tqd.data import ClipDataset, collate

        train, test = tables(cfg, data_dir)
        size = cfg.data.size or None
        self.sampler = build_sampler(cfg, train)
        ev = ClipDataset(test, frames=cfg.data.frames, size=size) if len(test) else None
        data = ClipDataset(train, frames=cfg.data.frames, size=size)
        return DataBundle(train=BalancedView(data) if cfg.data.balanced else data, eval=ev, collate_fn=collate,
                          info={"train_clips": len(train), "eval_clips": len(test),
                                "train_types": {k: v for k, v in train.type_counts().items() if v}})

    def build_model(self, cfg: Any) -> Any:
        from affectkit.tasks.tqd.model import build_model

        m = cfg.model
        model = build_model(m.kind, channels=3, width=m.width, depth=m.depth, emb_dim=m.emb_dim)
        # the noise levels and noise of training come from the model's own generator: seeded by the run's
        # seed and the process rank (each rank draws its own), checkpointed with the weights
        attach_generator(model, self.seed * 7919 + 104_729 * process_rank())
        return model

    def train_step(self, model: Any, batch: dict[str, Any], cfg: Any) -> Any:
        from affectkit.tasks.tqd.method_flow import flow_training_loss

        inner = getattr(model, "module", model)
        if cfg.sampler.mode == "tqd-continuous":
            s = self.sampler.sample(None, inner.generator, motion=batch["flow"].cpu(), quality=batch["vq"].cpu())
        else:
            s = self.sampler.sample(batch["type"].cpu(), inner.generator)
        loss = flow_training_loss(model, batch["clip"], s, inner.generator)
        return loss, {"mean_s": float(s.mean())}

    def after_step(self, model: Any, cfg: Any, step: int) -> None:
        keep_generator_state(model)

    def eval_step(self, model: Any, batch: dict[str, Any], cfg: Any) -> dict[str, Any]:
        """Per held-out clip and band, the flow loss averaged over the clip's fixed draws."""
        import torch

        from affectkit.tasks.tqd.method_flow import flow_loss

        x0 = batch["clip"]
        draws = [held_out_draws(int(i), tuple(x0.shape[1:]), cfg.eval.seed, cfg.eval.draws) for i in batch["index"]]
        s = torch.stack([d[0] for d in draws]).to(x0.device)      # [B, draws, bands]
        eps = torch.stack([d[1] for d in draws]).to(x0.device)    # [B, draws, bands, C, T, H, W]
        losses = torch.zeros(x0.shape[0], len(BANDS), device=x0.device)
        for k in range(cfg.eval.draws):
            for b in range(len(BANDS)):
                losses[:, b] += flow_loss(model, x0, s[:, k, b], eps[:, k, b]) / cfg.eval.draws
        return {"band_loss": losses}

    def evaluate(self, outputs: dict[str, np.ndarray], cfg: Any) -> dict[str, float]:
        bands = outputs["band_loss"].mean(axis=0)
        out = {f"loss {key}": float(v) for key, v in zip(BAND_KEYS, bands, strict=True)}
        out["golden_loss"] = float(bands.mean())
        return out
