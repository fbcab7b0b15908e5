"""Could moe-lm train on the shared loop (``core.loop.fit``)? Train the tiny Mixtral for the same
steps twice, once with moe-quant's own trainer (``train.train_lm``) and once through ``fit`` with a
small ``LoopTask`` adapter defined here, and compare seconds per step, the final held-out loss and
the trained weights.

The adapter keeps everything it can equal: the same initial weights (``build_model`` seeds with the
config's seed), the same training windows (the trainer's per-step seeded draws, precomputed as a
dataset of steps x batch windows, so one epoch is exactly the run), AdamW at the same lr and weight
decay, gradient clipping at 1, the same loss (cross-entropy plus the router load-balancing term),
and a 10 % warm-up with cosine decay. What it cannot equal is printed at the end.

    python benchmarks/moe_lm_loop.py --steps 40
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from affectkit.core.config import TrainConfig
from affectkit.core.task import DataBundle, LoopTask, MetricSpec
from affectkit.tasks.moe_quant.config import LMConfig
from affectkit.tasks.moe_quant.data import corpus, heldout_batches, lm_batches
from affectkit.tasks.moe_quant.metrics import eval_loss
from affectkit.tasks.moe_quant.model import build_model, load_float_model
from affectkit.tasks.moe_quant.train import train_lm


@dataclass
class LoopConfig:
    lm: LMConfig = field(default_factory=LMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class Windows(torch.utils.data.Dataset):
    def __init__(self, windows: np.ndarray):
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.windows[i]


def collate(rows: list[np.ndarray]) -> dict:
    return {"input_ids": torch.from_numpy(np.stack(rows))}


def trainer_windows(lm: LMConfig, train: np.ndarray) -> np.ndarray:
    """The windows train_lm draws, step by step, in its order (steps x batch_size of them)."""
    rng = np.random.default_rng(lm.seed + 1000)
    out = []
    for _ in range(lm.steps):
        b = lm_batches(train, lm.seq_len, lm.batch_size, lm.batch_size, seed=int(rng.integers(1 << 31)))[0]
        out.append(b["input_ids"].numpy())
    return np.concatenate(out)


class MoELMLoop(LoopTask):
    name = "moe-lm-loop"
    summary = "moe-lm's tiny Mixtral trained by core.loop.fit (measurement only)"
    Config = LoopConfig
    metrics = (MetricSpec("loss", higher_is_better=False),)

    def __init__(self, windows: np.ndarray):
        self.windows = windows
        self.step_times: list[float] = []

    def build_data(self, cfg, data_dir):
        return DataBundle(train=Windows(self.windows), eval=None, collate_fn=collate)

    def build_model(self, cfg):
        return build_model(cfg.lm)

    def train_step(self, model, batch, cfg):
        return model(input_ids=batch["input_ids"], labels=batch["input_ids"], output_router_logits=True).loss

    def after_step(self, model, cfg, step):
        self.step_times.append(time.perf_counter())


def per_step(times: list[float]) -> float:
    return (times[-1] - times[0]) / max(1, len(times) - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = LMConfig(steps=args.steps, seed=args.seed)
    train, held = corpus(lm.corpus, lm.seed, lm.marker_frac)

    # 1. moe-quant's own trainer
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        rep = train_lm(lm, Path(tmp), progress=lambda s, loss: times.append(time.perf_counter()))
        own = load_float_model(tmp)
    own_held = rep["heldout"]

    # 2. the shared loop, through a LoopTask adapter
    from affectkit.core.device import get_accelerator
    from affectkit.core.loop import fit
    from affectkit.core.output import Output

    task = MoELMLoop(trainer_windows(lm, train))
    tc = TrainConfig(max_steps=lm.steps, batch_size=lm.batch_size, lr=lm.lr, weight_decay=lm.weight_decay,
                     warmup_steps=max(1, lm.steps // 10), schedule="cosine", clip_grad_norm=1.0,
                     eval_every=0, checkpoint_every=0, log_every=10**9)
    cfg = LoopConfig(lm=lm, train=tc)
    result = fit(task, cfg, task.build_data(cfg, Path(".")), get_accelerator("no"), Output(quiet=True), lm.seed)
    loop_model = result.model.eval()
    loop_held = eval_loss(loop_model, heldout_batches(loop_model, held, lm))

    own_sd, loop_sd = own.state_dict(), loop_model.state_dict()
    max_diff = max(float((own_sd[k].float() - loop_sd[k].float()).abs().max()) for k in own_sd)
    res = {
        "steps": lm.steps, "threads": args.threads, "batch": [lm.batch_size, lm.seq_len],
        "seconds_per_step": {"train_lm": per_step(times), "core_loop_fit": per_step(task.step_times)},
        "heldout_loss": {"train_lm": own_held["loss"], "core_loop_fit": loop_held["loss"]},
        "heldout_ppl": {"train_lm": own_held["ppl"], "core_loop_fit": loop_held["ppl"]},
        "max_abs_weight_diff": max_diff,
        "identical_weights": max_diff == 0.0,
    }
    if args.json:
        print(json.dumps(res, indent=2))
        return
    s, h = res["seconds_per_step"], res["heldout_loss"]
    print(f"tiny Mixtral (hidden {lm.hidden_size}, {lm.num_layers} layers x {lm.num_experts} experts), "
          f"{lm.steps} steps of {lm.batch_size} x {lm.seq_len} bytes, {args.threads} thread(s)")
    print(f"seconds/step      train_lm {s['train_lm']:.4f}   core.loop.fit {s['core_loop_fit']:.4f}   "
          f"(fit / train_lm = x{s['core_loop_fit'] / s['train_lm']:.2f})")
    print(f"held-out loss     train_lm {h['train_lm']:.4f}   core.loop.fit {h['core_loop_fit']:.4f}   (nats/byte)")
    print(f"weights           max |diff| {max_diff:.3g}: {'identical' if max_diff == 0 else 'different models'}")
    print("what differs: (1) batching: fit draws each batch from a seeded permutation of a fixed dataset "
          "(rng [seed, epoch]), train_lm draws fresh random windows per step in its own order, so the same "
          "windows land in different batches; (2) schedule: fit warms up linearly, then decays cosine over the "
          "remaining steps, train_lm multiplies warm-up by a cosine over all steps (not expressible in "
          "TrainConfig). Same: initial weights, the windows, loss (with the router aux loss), AdamW, clipping.")


if __name__ == "__main__":
    main()
