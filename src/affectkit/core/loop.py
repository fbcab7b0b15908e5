"""The shared training loop (Accelerate): prepare, backward, accumulation, clipping, periodic
evaluation, checkpoints with optimizer and RNG state, best-checkpoint tracking, early stop, resume.

Batches are global: ``train.batch_size`` samples per micro-step, split across processes, so a run
on N processes follows the same sample order as a single-process run. The sample order is a pure
function of (seed, epoch), so a resumed run continues exactly where the checkpoint left off.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import RunFailure, UsageError
from affectkit.core.output import Output
from affectkit.core.runs import (
    BEST,
    MODEL_FILE,
    OPTIMIZER_FILE,
    RNG_FILE,
    SCHEDULER_FILE,
    STATE_FILE,
    RunDir,
    atomic_write_json,
)
from affectkit.core.seeding import capture_rng, restore_rng, seed_everything, torch_generator
from affectkit.core.task import DataBundle, MetricSpec, primary_metric


@dataclass
class FitResult:
    step: int
    metrics: dict[str, float]
    best: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False
    model: Any = None


class EpochBatches:
    """This process's share of global batches: a seeded permutation per epoch, cut into global
    batches, each split into ``nproc`` contiguous chunks; optionally starting mid-epoch."""

    def __init__(
        self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0, rank: int = 0, nproc: int = 1
    ):
        self.n, self.batch_size, self.seed, self.epoch, self.start = n, batch_size, seed, epoch, start
        self.rank, self.nproc = rank, nproc

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist()
        share = self.batch_size // self.nproc
        for b in range(self.start, self.n // self.batch_size):
            lo = b * self.batch_size + self.rank * share
            yield order[lo : lo + share]

    def __len__(self) -> int:
        return max(0, self.n // self.batch_size - self.start)


def batches_per_epoch(n: int, batch_size: int) -> int:
    return n // batch_size


def epoch_schedule(tc: Any, n: int, epochs: int, patience: int, where: Any, what: str) -> Any:
    """``tc`` (a TrainConfig) for a task that counts in epochs of ``n`` samples (``what``): at most
    ``epochs`` epochs (a smaller ``max_steps`` still caps them), evaluation and checkpoints once per
    epoch unless set, early stop after ``patience`` epochs without improvement."""
    from dataclasses import replace

    per_epoch = batches_per_epoch(n, tc.batch_size)
    if per_epoch == 0:
        raise UsageError(f"{where}: train.batch_size={tc.batch_size} is larger than the {n} {what}",
                         f"lower it: --set train.batch_size={max(1, n // 4)}")
    return replace(tc, max_steps=min(tc.max_steps, epochs * per_epoch), eval_every=tc.eval_every or per_epoch,
                   checkpoint_every=tc.checkpoint_every or per_epoch, early_stop_patience=patience)


def make_optimizer(model: Any, cfg: Any, task: Any) -> Any:
    import torch

    custom = task.configure_optimizer(model, cfg)
    if custom is not None:
        return custom
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


class LrFactor:
    """The learning-rate multiplier of a step: linear warm-up, then the schedule of ``train.schedule``.
    Its attributes are plain numbers, so LambdaLR's state dict carries them (a resumed run keeps the
    plateau level it had reached)."""

    def __init__(self, tc: Any):
        self.warmup, self.schedule, self.max_steps = tc.warmup_steps, tc.schedule, tc.max_steps
        self.milestones, self.gamma = list(tc.milestones), tc.gamma
        self.patience = getattr(tc, "plateau_patience", 0)
        self.level, self.bad = 0, 0

    def __call__(self, step: int) -> float:
        if self.warmup > 0 and step < self.warmup:
            return (step + 1) / self.warmup
        if self.schedule == "multistep":
            return self.gamma ** sum(step >= m for m in self.milestones)
        if self.schedule == "cosine":
            span = max(1, self.max_steps - self.warmup)
            progress = min(1.0, (step - self.warmup) / span)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.schedule == "plateau":
            return self.gamma**self.level
        return 1.0

    def observe(self, improved: bool) -> None:
        """One evaluation (plateau only): after more than ``plateau_patience`` evaluations in a row
        without improvement, multiply the lr by ``gamma`` (torch's ReduceLROnPlateau, cooldown 0)."""
        if self.schedule != "plateau":
            return
        self.bad = 0 if improved else self.bad + 1
        if self.bad > self.patience:
            self.level, self.bad = self.level + 1, 0


def make_scheduler(optimizer: Any, tc: Any) -> Any:
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, LrFactor(tc))


def _loader(dataset: Any, batch_sampler: Any, collate_fn: Any, num_workers: int, seed: int = 0) -> Any:
    """A DataLoader with its own generator, so creating one never draws from the global RNG
    (a resumed run creates its loader mid-epoch)."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate_fn, num_workers=num_workers,
                      generator=torch_generator(seed))


def evaluate_model(task: Any, model: Any, bundle: DataBundle, cfg: Any, accelerator: Any, output: Output) -> dict[str, float]:
    """Run ``task.eval_step`` over the eval set, gather across processes, compute metrics."""
    import torch

    if bundle.eval is None:
        return {}
    from accelerate.utils import send_to_device

    nproc, rank = accelerator.num_processes, accelerator.process_index
    batch_size = cfg.train.batch_size
    n = len(bundle.eval)
    # Each global batch is padded (repeating its last index) to a multiple of nproc, split into
    # contiguous chunks, and the gathered result is cut back to the real batch: the global order.
    batches = []
    for lo in range(0, n, batch_size):
        idx = list(range(lo, min(lo + batch_size, n)))
        real = len(idx)
        idx += [idx[-1]] * (-real % nproc)
        share = len(idx) // nproc
        batches.append((idx[rank * share : (rank + 1) * share], real))
    loader = _loader(bundle.eval, [b for b, _ in batches], bundle.collate_fn, 0)
    collected: dict[str, list[np.ndarray]] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch, (_, real) in output.track(zip(loader, batches, strict=True), "evaluating", total=len(batches)):
            batch = send_to_device(batch, accelerator.device)
            with accelerator.autocast():
                outs = task.eval_step(model, batch, cfg)
            for key, value in outs.items():
                gathered = accelerator.gather(value.contiguous()) if nproc > 1 else value
                gathered = gathered[:real].detach().cpu()
                collected.setdefault(key, []).append(
                    gathered.float().numpy() if gathered.is_floating_point() else gathered.numpy()
                )
    if was_training:
        model.train()
    merged = {k: np.concatenate(v, axis=0) for k, v in collected.items()}
    return {k: float(v) for k, v in task.evaluate(merged, cfg).items()}


def _improved(value: float, best: float | None, spec: MetricSpec) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if spec.higher_is_better else value < best


def fit(
    task: Any,
    cfg: Any,
    bundle: DataBundle,
    accelerator: Any,
    output: Output,
    seed: int,
    run: RunDir | None = None,
    resume: bool = False,
) -> FitResult:
    """Train ``task.build_model(cfg)`` on ``bundle`` with ``cfg.train`` settings."""
    import torch
    from accelerate.utils import send_to_device
    from safetensors.torch import load_model, save_model

    tc = cfg.train
    nproc = accelerator.num_processes
    if tc.batch_size % nproc:
        raise UsageError(f"train.batch_size={tc.batch_size} is not divisible by {nproc} processes")
    n_train = len(bundle.train)
    per_epoch = batches_per_epoch(n_train, tc.batch_size)
    if per_epoch == 0:
        raise UsageError(
            f"train.batch_size={tc.batch_size} is larger than the training set ({n_train} samples)",
            "lower --set train.batch_size",
        )

    seed_everything(seed)
    model = task.build_model(cfg)
    if accelerator.process_index:
        # the same weights everywhere (DDP also broadcasts them), but each rank its own dropout stream
        torch.manual_seed(seed + 7919 * accelerator.process_index)
    optimizer = make_optimizer(model, cfg, task)
    scheduler = make_scheduler(optimizer, tc)
    spec = primary_metric(task)

    step = 0
    best_value: float | None = None
    best_step: int | None = None
    bad_evals = 0
    last_metrics: dict[str, float] = {}

    if resume and run is not None and (ckpt := run.latest_checkpoint()) is not None:
        load_model(model, str(ckpt / MODEL_FILE), device="cpu")
        optimizer.load_state_dict(torch.load(ckpt / OPTIMIZER_FILE, weights_only=True))
        scheduler.load_state_dict(torch.load(ckpt / SCHEDULER_FILE, weights_only=True))
        state = json.loads((ckpt / STATE_FILE).read_text())
        step = state["step"]
        best_value, best_step, bad_evals = state.get("best_value"), state.get("best_step"), state.get("bad_evals", 0)
        rng = json.loads((ckpt / RNG_FILE).read_text())
        restore_rng(rng["ranks"][accelerator.process_index] if accelerator.process_index < len(rng["ranks"]) else rng["ranks"][0])
        run.truncate_metrics(step)
        output.log(f"resuming {run.path} from step {step}")
    elif resume and run is not None:
        output.log(f"no checkpoint in {run.path}; starting from step 0")
        run.truncate_metrics(0)

    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    def save_checkpoint(at_step: int) -> None:
        if run is None:
            return
        rng_all = accelerator_gather_object(accelerator, capture_rng())
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            staging = run.staging_dir(f"step-{at_step}")
            save_model(accelerator.unwrap_model(model), str(staging / MODEL_FILE))
            torch.save(optimizer.state_dict(), staging / OPTIMIZER_FILE)
            torch.save(scheduler.state_dict(), staging / SCHEDULER_FILE)
            (staging / RNG_FILE).write_text(json.dumps({"ranks": rng_all}))
            atomic_write_json(
                staging / STATE_FILE,
                {"step": at_step, "best_value": best_value, "best_step": best_step, "bad_evals": bad_evals},
            )
            run.commit_dir(staging, run.step_dir(at_step))
            run.prune(tc.keep_checkpoints)
        accelerator.wait_for_everyone()

    def save_best(at_step: int, metrics: dict[str, float]) -> None:
        if run is None or not accelerator.is_main_process:
            return
        staging = run.staging_dir(BEST)
        save_model(accelerator.unwrap_model(model), str(staging / MODEL_FILE))
        atomic_write_json(staging / STATE_FILE, {"step": at_step, "metric": spec.name, "value": metrics.get(spec.name), "metrics": metrics})
        run.commit_dir(staging, run.checkpoints / BEST)

    stopped_early = False
    t0 = time.perf_counter()
    micro = tc.grad_accum
    total = tc.max_steps
    with output.progress(f"training {task.name}", total=total) as bar:
        bar.update(completed=step)
        while step < total and not stopped_early:
            # micro-batches consumed so far decide the epoch and the position in it
            consumed = step * micro
            epoch, offset = divmod(consumed, per_epoch)
            batches = EpochBatches(
                n_train, tc.batch_size, seed, epoch, start=offset, rank=accelerator.process_index, nproc=nproc
            )
            loader = _loader(bundle.train, batches, bundle.collate_fn, tc.num_workers, seed + epoch)
            accum: list[Any] = []
            for batch in loader:
                accum.append(send_to_device(batch, accelerator.device))
                if len(accum) < micro:
                    continue
                task.before_step(accelerator.unwrap_model(model), cfg, step, step * micro // per_epoch)
                loss_sum = 0.0
                extras: dict[str, float] = {}
                for i, mb in enumerate(accum):
                    sync = i == len(accum) - 1
                    ctx = accelerator.no_sync(model) if (not sync and nproc > 1) else nullcontext()
                    with ctx, accelerator.autocast():
                        out = task.train_step(model, mb, cfg)
                        loss, logs = (out if isinstance(out, tuple) else (out, {}))
                        accelerator.backward(loss / micro)
                    loss_sum += float(loss.detach()) / micro
                    for k, v in logs.items():
                        extras[k] = extras.get(k, 0.0) + float(v) / micro
                accum = []
                if not math.isfinite(loss_sum):
                    raise RunFailure(f"loss became {loss_sum} at step {step + 1}", "lower train.lr or check the data")
                if tc.clip_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), tc.clip_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                task.after_step(accelerator.unwrap_model(model), cfg, step + 1)
                step += 1
                mean_loss = float(accelerator.reduce(torch.tensor(loss_sum, device=accelerator.device), "mean"))
                if run is not None and (step % tc.log_every == 0 or step == total):
                    record = {"step": step, "split": "train", "loss": mean_loss, "lr": scheduler.get_last_lr()[0]}
                    record.update({k: v for k, v in extras.items()})
                    run.log_metrics(record)
                if step % tc.log_every == 0:
                    output.event("step", step=step, loss=mean_loss)
                bar.advance(status=f"loss {mean_loss:.4f}")

                at_end = step == total
                if bundle.eval is not None and ((tc.eval_every and step % tc.eval_every == 0) or at_end):
                    last_metrics = evaluate_model(task, model, bundle, cfg, accelerator, output)
                    if run is not None:
                        run.log_metrics({"step": step, "split": "eval", **last_metrics})
                    output.event("eval", step=step, metrics=last_metrics)
                    spec = next((m for m in task.metrics if m.name in last_metrics), spec)
                    value = last_metrics.get(spec.name)
                    improved = _improved(value, best_value, spec)
                    scheduler.lr_lambdas[0].observe(improved)
                    if improved:
                        best_value, best_step, bad_evals = value, step, 0
                        save_best(step, last_metrics)
                    else:
                        bad_evals += 1
                        if tc.early_stop_patience and bad_evals >= tc.early_stop_patience:
                            stopped_early = True
                if (tc.checkpoint_every and step % tc.checkpoint_every == 0) or at_end or stopped_early:
                    save_checkpoint(step)
                if at_end or stopped_early:
                    break
    elapsed = time.perf_counter() - t0
    output.info(f"trained {step} steps in {elapsed:.1f}s")
    best = {"step": best_step, "metric": spec.name, "value": best_value}
    return FitResult(step=step, metrics=last_metrics, best=best, stopped_early=stopped_early, model=accelerator.unwrap_model(model))


def accelerator_gather_object(accelerator: Any, obj: Any) -> list[Any]:
    if accelerator.num_processes == 1:
        return [obj]
    from accelerate.utils import gather_object

    return gather_object([obj])


def load_weights(model: Any, path: Path) -> Any:
    from safetensors.torch import load_model

    load_model(model, str(path), device="cpu")
    return model
