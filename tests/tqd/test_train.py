"""TQD on the shared loop: the configured sampler draws each training clip's noise level by its type,
the held-out golden loss uses fixed per-clip draws, and a short run lowers it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

COUNTS = {"natural": 0, "golden": 4, "motion": 8, "quality": 8, "low": 2, "heldout": 6, "pairs": 0}


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    from affectkit.tasks.tqd import synth

    out = tmp_path_factory.mktemp("tqd-pool")
    synth.make(out, seed=0, quick=True, counts=COUNTS, size=16, frames=8)
    return out


def _cfg(*overrides: str):
    from affectkit.core.config import apply_overrides
    from affectkit.tasks.tqd.config import TqdConfig

    return apply_overrides(TqdConfig(), ["data.frames=8", "model.width=8", "model.depth=1", "model.emb_dim=16",
                                         "train.batch_size=8", "train.max_steps=40", "train.eval_every=20",
                                         "train.lr=0.003", "eval.draws=2", *overrides])


def test_data_splits_types_and_held_out_golden(pool: Path) -> None:
    from affectkit.tasks.tqd.train import tables

    train, test = tables(_cfg("data.train_types=[motion, quality]"), pool)
    assert set(train.types) == {"motion", "quality"} and len(train) == 16
    assert set(test.types) == {"golden"} and len(test) == 6


def test_sampler_routes_types_to_noise_bands(pool: Path) -> None:
    from affectkit.tasks.tqd.train import TqdLoop

    cfg = _cfg("data.train_types=[motion, quality]", "sampler.p_skew=1.0")
    loop = TqdLoop()
    bundle = loop.build_data(cfg, pool)
    model = loop.build_model(cfg)
    batch = bundle.collate_fn([bundle.train[i] for i in range(len(bundle.train))])
    s = loop.sampler.sample(batch["type"], model.generator)
    motion = s[batch["type"] == 1].mean()
    quality = s[batch["type"] == 2].mean()
    assert motion > 0.55 > 0.45 > quality


def test_held_out_draws_depend_on_the_clip_only() -> None:
    from affectkit.tasks.tqd.train import held_out_draws

    a = held_out_draws(3, (3, 8, 16, 16), seed=0, draws=2)
    b = held_out_draws(3, (3, 8, 16, 16), seed=0, draws=2)
    c = held_out_draws(4, (3, 8, 16, 16), seed=0, draws=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    lo = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8])
    assert ((a[0] >= lo) & (a[0] < lo + 0.2)).all()


def test_short_run_lowers_the_held_out_golden_loss(pool: Path) -> None:
    from affectkit.core.device import get_accelerator, reset_accelerator
    from affectkit.core.loop import evaluate_model, fit
    from affectkit.core.output import Output
    from affectkit.tasks.tqd.train import TqdLoop

    reset_accelerator()
    cfg = _cfg()
    loop = TqdLoop()
    bundle = loop.build_data(cfg, pool)
    quiet = Output(quiet=True)
    torch.manual_seed(0)
    before = evaluate_model(loop, loop.build_model(cfg), bundle, cfg, get_accelerator(), quiet)
    fitted = fit(loop, cfg, bundle, get_accelerator(), quiet, seed=0)
    after = fitted.metrics
    assert set(after) == {"golden_loss", "loss 0.0-0.2", "loss 0.2-0.4", "loss 0.4-0.6", "loss 0.6-0.8",
                          "loss 0.8-1.0"}
    assert np.isfinite(after["golden_loss"]) and after["golden_loss"] < 0.8 * before["golden_loss"]
