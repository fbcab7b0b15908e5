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

from affectkit.components.hf import local_model_dir, quiet_transformers
from affectkit.core import runs as run_files  # the checkpoint file names every task uses
from affectkit.core.cache import materialize, task_cache
from affectkit.core.errors import DataError, UsageError
from affectkit.core.output import get_output
from affectkit.core.runs import RunDir, atomic_write_json, read_json
from affectkit.core.seeding import capture_rng, restore_rng
from affectkit.tasks.moe_quant.config import LMConfig
from affectkit.tasks.moe_quant.data import corpus, corpus_bytes, heldout_batches, lm_batches, switch_batches
from affectkit.tasks.moe_quant.metrics import eval_loss
from affectkit.tasks.moe_quant.model import (
    ROUTER_INIT_FILE,
    TRAIN_REPORT_FILE,
    build_model,
    load_model_dir,
    model_arch,
    snapshot_routers,
)


def check_lm_config(cfg: Any, data_dir: str | Path | None = None) -> None:
    """The usage and data errors of a trainer config (``Config`` or ``LMConfig``) that can be found
    before a model is built: ``init_from`` (a local Mixtral / Switch directory of the same arch),
    top_k against the experts, the attention heads, the corpus (in ``data_dir`` when one is given)
    and its held-out part long enough for one window."""
    if cfg.init_from:
        d = local_model_dir(cfg.init_from, "model directory (init_from)",
                            "set init_from to a directory written by `affectkit train moe-lm` or save_pretrained")
        conf = read_json(d / "config.json")
        arch = model_arch(conf, d / "config.json")
        if arch != cfg.arch:
            raise UsageError(f"init_from {d} is a {arch} model, but arch={cfg.arch}", f"add --set arch={arch}")
        _check_weight_headers(d)
        if int(conf.get("vocab_size", 256)) < 256:
            raise DataError(d / "config.json", f"vocab_size {conf.get('vocab_size')} < 256",
                            "the trainer reads bytes: init_from needs a model with 256 token ids or more")
    elif cfg.arch == "mixtral":
        if cfg.top_k > cfg.num_experts:
            raise UsageError(f"top_k {cfg.top_k} is above num_experts {cfg.num_experts}",
                             "lower top_k or raise num_experts")
        if cfg.hidden_size % cfg.num_heads or (cfg.hidden_size // cfg.num_heads) % 2:
            raise UsageError(f"hidden_size {cfg.hidden_size} must be num_heads {cfg.num_heads} times an even head size",
                             "e.g. hidden_size 64 with num_heads 4")
        if cfg.num_heads % cfg.num_kv_heads:
            raise UsageError(f"num_heads {cfg.num_heads} is not a multiple of num_kv_heads {cfg.num_kv_heads}")
    elif cfg.hidden_size < cfg.num_heads:
        raise UsageError(f"hidden_size {cfg.hidden_size} is below num_heads {cfg.num_heads}")
    data = corpus_bytes(cfg.corpus, data_dir)
    held = len(data) - int(len(data) * 0.9)
    window, option = (cfg.switch_snippet, "switch_snippet") if cfg.arch == "switch" else (cfg.seq_len, "seq_len")
    if held - window - 1 <= 0:
        raise UsageError(f"{option} {window}: longer than the {held} held-out bytes of corpus {cfg.corpus}",
                         f"lower {option} or use a longer corpus")


def _check_weight_headers(model_dir: Path) -> None:
    """Read the header of every safetensors file in ``model_dir``: a truncated or corrupt one is a
    DataError naming it, before any training."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files and not any(model_dir.glob("*.bin")):
        raise DataError(model_dir, "no weights (*.safetensors) in the model directory")
    for f in files:
        try:
            with safe_open(str(f), "pt"):
                pass
        except Exception as exc:
            raise DataError(f, f"cannot read the weights ({type(exc).__name__}: {exc})") from None


def train_lm(cfg: LMConfig, out_dir: str | Path, log=None, progress=None,
             data_dir: str | Path | None = None, run: RunDir | None = None, checkpoint_every: int = 0,
             resume: bool = False) -> dict[str, Any]:
    """Train (or fine-tune, with ``init_from``) a tiny MoE model; save it with its router snapshot
    taken before training (the exact reference for the router-norm change).

    With a ``run`` directory and ``checkpoint_every`` > 0, the model, optimizer, scheduler, the batch
    generator, the torch RNG, the router snapshot and the losses so far are checkpointed (atomically,
    the latest kept) every ``checkpoint_every`` steps and at the end; ``resume`` continues from the
    latest checkpoint and ends with the weights of an uninterrupted run. Checkpointing draws no
    random numbers, so it leaves the trained weights unchanged."""
    import torch
    from safetensors.torch import save_file

    check_lm_config(cfg, data_dir)
    out = Path(out_dir)
    quiet_transformers()
    torch.manual_seed(cfg.seed)
    model = load_model_dir(cfg.init_from, "model directory (init_from)") if cfg.init_from else build_model(cfg)
    router0 = snapshot_routers(model)
    train, held = corpus(cfg.corpus, cfg.seed, cfg.marker_frac, data_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, cfg.steps // 10)) * 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    rng = np.random.default_rng(cfg.seed + 1000)
    losses: list[float] = []
    start = 0
    if resume and run is not None:
        ckpt = run.latest_checkpoint()
        if ckpt is None:
            get_output().warn(f"{run.path}: no checkpoint to resume from; training from step 0")
            run.truncate_metrics(0)
        else:
            start, losses, router0 = _load_checkpoint(ckpt, model, opt, sched, rng)
            run.truncate_metrics(start)
            if log:
                log(f"resuming {run.path} from step {start}")
    model.train()
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
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
        done = step + 1
        if run is not None and checkpoint_every > 0 and (done % checkpoint_every == 0 or done == cfg.steps):
            # the record first: a resumed run truncates the stream to its checkpoint's step
            run.log_metrics({"step": done, "train_loss": float(np.mean(losses[-checkpoint_every:]))})
            _save_checkpoint(run, done, model, opt, sched, rng, router0, losses)
    model.eval()
    held_batches = heldout_batches(model, held, cfg, source=f"corpus {cfg.corpus}")
    metrics = eval_loss(model, held_batches)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_file({k: v for k, v in router0.items()}, str(out / ROUTER_INIT_FILE))
    rep = {"config": asdict(cfg), "train_loss_last50": float(np.mean(losses[-50:])), "heldout": metrics,
           "seconds": time.perf_counter() - t0, "router_snapshot": ROUTER_INIT_FILE}
    atomic_write_json(out / TRAIN_REPORT_FILE, rep)
    if log:
        log(f"trained {cfg.arch} on {cfg.corpus}: held-out loss {metrics['loss']:.4f} in {rep['seconds']:.1f}s")
    return rep


def _save_checkpoint(run: RunDir, step: int, model, opt, sched, rng: np.random.Generator,
                     router0: dict, losses: list[float]) -> None:
    """``checkpoints/step-N/``: written into a staging directory, then moved into place whole."""
    import torch
    from safetensors.torch import save_file

    staging = run.staging_dir(f"step-{step}")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(staging / run_files.MODEL_FILE))
    save_file({k: v.contiguous() for k, v in router0.items()}, str(staging / ROUTER_INIT_FILE))
    torch.save(opt.state_dict(), staging / run_files.OPTIMIZER_FILE)
    torch.save(sched.state_dict(), staging / run_files.SCHEDULER_FILE)
    atomic_write_json(staging / run_files.RNG_FILE, {"batches": rng.bit_generator.state, "torch": capture_rng()})
    atomic_write_json(staging / run_files.STATE_FILE, {"step": step, "losses": losses})
    run.commit_dir(staging, run.step_dir(step))
    run.prune(1)


def _load_checkpoint(ckpt: Path, model, opt, sched, rng: np.random.Generator) -> tuple[int, list[float], dict]:
    import torch
    from safetensors.torch import load_file

    try:
        state = read_json(ckpt / run_files.STATE_FILE)
        rngs = read_json(ckpt / run_files.RNG_FILE)
        weights = load_file(str(ckpt / run_files.MODEL_FILE))
        router0 = load_file(str(ckpt / ROUTER_INIT_FILE))
        opt_state = torch.load(ckpt / run_files.OPTIMIZER_FILE, weights_only=True)
        sched_state = torch.load(ckpt / run_files.SCHEDULER_FILE, weights_only=True)
    except DataError:
        raise
    except Exception as exc:  # a damaged checkpoint: name it
        raise DataError(ckpt, f"cannot read the checkpoint ({type(exc).__name__}: {exc})",
                        "remove it to resume from an earlier one, or start over with --overwrite") from None
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if [k for k in missing if not k.endswith("inv_freq")] or unexpected:
        raise DataError(ckpt / run_files.MODEL_FILE, "weights do not match the model this config builds",
                        "resume with the config the run was started with")
    opt.load_state_dict(opt_state)
    sched.load_state_dict(sched_state)
    rng.bit_generator.state = rngs["batches"]
    restore_rng(rngs["torch"])
    return int(state["step"]), [float(x) for x in state["losses"]], router0


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
