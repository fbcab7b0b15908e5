"""The tiny models' training recipe (``affectkit train moe-lm``) and the embedded-model cache.

AdamW with a 10 % linear warm-up times a cosine decay, gradients clipped at 1, one fresh seeded
batch of random windows per step, the router load-balancing loss on; the router weights are
snapshotted before the first step (the exact reference of the router-norm change). ``trained_model``
caches a model per trainer config under ``$AFFECTKIT_CACHE/moe-quant`` (bench and ``quantize``
without ``--model`` use it).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.components.hf import quiet_transformers
from affectkit.core.cache import materialize, task_cache
from affectkit.core.runs import atomic_write_json
from affectkit.tasks.moe_quant.config import LMConfig
from affectkit.tasks.moe_quant.data import corpus, heldout_batches, lm_batches, switch_batches
from affectkit.tasks.moe_quant.metrics import eval_loss
from affectkit.tasks.moe_quant.model import (
    ROUTER_INIT_FILE,
    TRAIN_REPORT_FILE,
    arch_of,
    build_model,
    load_float_model,
    snapshot_routers,
)


def train_lm(cfg: LMConfig, out_dir: str | Path, log=None, progress=None,
             data_dir: str | Path | None = None) -> dict[str, Any]:
    """Train (or fine-tune, with ``init_from``) a tiny MoE model; save it with its router snapshot
    taken before training (the exact reference for the router-norm change)."""
    import torch
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    quiet_transformers()
    torch.manual_seed(cfg.seed)
    model = load_float_model(cfg.init_from) if cfg.init_from else build_model(cfg)
    if cfg.init_from and arch_of(model) != cfg.arch:
        raise ValueError(f"init_from model is {arch_of(model)}, but arch={cfg.arch}")
    router0 = snapshot_routers(model)
    train, held = corpus(cfg.corpus, cfg.seed, cfg.marker_frac, data_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, cfg.steps // 10)) * 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    rng = np.random.default_rng(cfg.seed + 1000)
    model.train()
    losses = []
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        bseed = int(rng.integers(1 << 31))
        if cfg.arch == "switch":
            b = switch_batches(train, cfg.switch_snippet, cfg.batch_size, cfg.batch_size, seed=bseed)[0]
            loss = model(input_ids=b["input_ids"], labels=b["labels"], output_router_logits=True).loss
        else:
            b = lm_batches(train, cfg.seq_len, cfg.batch_size, cfg.batch_size, seed=bseed)[0]
            loss = model(input_ids=b["input_ids"], labels=b["input_ids"], output_router_logits=True).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress:
            progress(step, losses[-1])
    model.eval()
    held_batches = heldout_batches(model, held, cfg)
    metrics = eval_loss(model, held_batches)
    model.save_pretrained(out)
    save_file({k: v for k, v in router0.items()}, str(out / ROUTER_INIT_FILE))
    rep = {"config": asdict(cfg), "train_loss_last50": float(np.mean(losses[-50:])), "heldout": metrics,
           "seconds": time.perf_counter() - t0, "router_snapshot": ROUTER_INIT_FILE}
    atomic_write_json(out / TRAIN_REPORT_FILE, rep)
    if log:
        log(f"trained {cfg.arch} on {cfg.corpus}: held-out loss {metrics['loss']:.4f} in {rep['seconds']:.1f}s")
    return rep


def trained_model(cfg: LMConfig, log=None) -> Path:
    """A model trained with ``cfg``, cached by the config's hash under the task's cache directory
    (``$AFFECTKIT_CACHE/moe-quant/ARCH-HASH``; trained on first use, materialized whole)."""
    path = task_cache("moe-quant") / f"{cfg.arch}-{cfg.cache_key()}"
    if (path / TRAIN_REPORT_FILE).exists():
        return path
    materialize(path, lambda staging: train_lm(cfg, staging, log=log))
    return path


def embedded_model(arch: str, log=None, **overrides) -> Path:
    """The embedded tiny model for ``arch`` (default trainer settings), trained on first use and cached."""
    cfg = LMConfig(arch=arch, **overrides)
    if arch == "switch" and "steps" not in overrides:
        cfg.steps = 400
    return trained_model(cfg, log)
