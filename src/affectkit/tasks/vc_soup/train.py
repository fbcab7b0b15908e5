"""The training recipe of ``affectkit train vc-soup``: filter each value dataset, warm up the
shared reference policy (SFT), train one DPO policy per value from it, save them all.

``train_policies`` is what the verb runs; ``select_pairs``, ``build_reference`` and
``train_value_policy`` are its steps, shared with the benchmark (``bench.run_setting``). DPO runs
natively (the in-repo loop, used by the benchmark) or through TRL's DPOTrainer with CPU-safe settings
(optionally with LoRA).
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.vc_soup.baselines import BASELINES, denoise_only, random_subset, unfiltered
from affectkit.tasks.vc_soup.config import Config
from affectkit.tasks.vc_soup.data import load_setting, setting_dir
from affectkit.tasks.vc_soup.filtering import FilterSpec, filter_prefs
from affectkit.tasks.vc_soup.method_dpo import dpo_loss
from affectkit.tasks.vc_soup.model import (
    build_policy,
    build_tokenizer,
    chunked_logprob,
    encode_pairs,
    load_policy,
    save_policy,
    sequence_logprob,
)

METHODS = ("vc", *BASELINES)


def select_pairs(rows: dict[str, list[dict[str, Any]]], cfg: Config, method: str, seed: int, where: Path | None = None) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The training pairs of each value under a filtering method, and what was kept (``where``: the
    directory of the value files, for error messages)."""
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}", "methods: " + ", ".join(METHODS))
    values = tuple(cfg.values)
    spec = FilterSpec(values=values, rewards=dict(cfg.rewards), cost_models=tuple(cfg.cost_models),
                      threshold=None if cfg.keep_ratio > 0 else cfg.threshold,
                      keep_ratio=cfg.keep_ratio if cfg.keep_ratio > 0 else None, keep_all=True)
    out, info = {}, {}
    for v in values:
        source = str(Path(where or "") / f"{v}_train.jsonl")
        scored, stats = filter_prefs(rows[v], spec, source=source)
        kept = [r for r in scored if r["kept"]]
        rng = np.random.default_rng([seed, zlib.crc32(f"{method}/{v}".encode())])
        if method == "vc":
            chosen = kept
        elif method == "unfiltered":
            chosen = unfiltered(scored)
        elif method == "random":
            chosen = random_subset(scored, len(kept), rng)
        else:
            chosen = denoise_only(scored, v, len(kept), rng)
        if not chosen:
            raise DataError(source, f"method {method!r} keeps no pairs of {stats['n_valid']} valid ones",
                            "lower threshold (or raise keep_ratio), or use another method")
        flipped = sum(bool(r.get("label_flipped")) for r in chosen)
        info[v] = {"n_total": len(scored), "n_train": len(chosen), "vc_kept": len(kept), "flipped_in_train": flipped,
                   "n_invalid": stats["n_dropped_invalid"], "invalid_reasons": stats["invalid_reasons"],
                   "consistency_mean_train": float(np.mean([r["consistency"] for r in chosen])) if chosen else math.nan}
        out[v] = chosen
    return out, info


# ---- the reference and the value policies ---------------------------------------------------------


def build_reference(cfg: Config, setting: dict[str, Any], seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """The tokenizer over every word of the setting, and the reference policy every value policy starts
    from: a fresh tiny GPT-2, warmed up by SFT on the setting's ``sft.jsonl`` (when ``sft.steps`` > 0)."""
    words: set[str] = set()
    for rows in setting["rows"].values():
        for r in rows:
            for key in ("prompt", "chosen", "rejected"):
                words.update(str(r.get(key) or "").split())
    for r in setting["sft"]:
        words.update(str(r.get("prompt", "")).split())
        words.update(str(r.get("response", "")).split())
    for e in setting["evals"]:
        words.update(str(e.get("prompt", "")).split())
        for c in e.get("candidates", []):
            words.update(c.split())
    tok = build_tokenizer(sorted(words))
    p = cfg.policy
    ref = build_policy(len(tok), p.n_layer, p.n_head, p.n_embd, p.n_positions, seed=seed)
    info: dict[str, Any] = {"vocab": len(tok), "params": sum(t.numel() for t in ref.parameters())}
    if cfg.sft.steps > 0 and setting["sft"]:
        losses = train_sft(ref, tok, [r["prompt"] for r in setting["sft"]], [r["response"] for r in setting["sft"]],
                           cfg.sft.steps, cfg.sft.lr, cfg.sft.batch_size, seed)
        info["sft_loss_last"] = float(np.mean(losses[-10:]))
    return tok, ref, info


def train_value_policy(cfg: Config, ref: Any, tok: Any, rows: list[dict[str, Any]], seed: int, work_dir: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """One value's policy: DPO from a copy of the reference on ``rows`` (native or TRL trainer)."""
    d = cfg.dpo
    policy = copy.deepcopy(ref)
    if d.trainer == "native":
        info = train_dpo_native(policy, ref, tok, rows, d.steps, d.lr, d.batch_size, d.beta, seed, d.label_smoothing)
        return policy, info
    lora = {"r": d.lora_r, "alpha": d.lora_alpha} if d.lora_r > 0 else None
    info = train_dpo_trl(policy, None if lora else copy.deepcopy(ref), tok, rows, d.steps, d.lr, d.batch_size, d.beta, seed,
                         Path(work_dir or ".") / "trl", lora)
    model = info.pop("model")
    if lora:
        model = model.merge_and_unload()
    return model.eval(), info


def train_policies(cfg: Config, data_dir: Path, out_dir: Path, seed: int = 0, output: Any = None, resume: bool = False) -> dict[str, Any]:
    """Filter each value dataset, warm up the reference, train one DPO policy per value, save all.

    Each policy is saved as soon as it is trained; with ``resume`` the reference and the policies
    already on disk are loaded instead of trained again (a killed run continues with the next value).
    """
    from affectkit.core.runs import atomic_write_json, read_json
    from affectkit.core.seeding import seed_everything

    seed_everything(seed)
    out_dir = Path(out_dir)
    setting = load_setting(setting_dir(data_dir, cfg), cfg.values)
    selected, sel_info = select_pairs(setting["rows"], cfg, cfg.method, seed, where=setting["dir"])
    log = output.log if output is not None else (lambda m: None)
    for v in cfg.values:
        if sel_info[v]["n_invalid"] and output is not None:
            reasons = ", ".join(f"{k}: {n}" for k, n in sel_info[v]["invalid_reasons"].items())
            output.warn(f"{Path(setting['dir']) / f'{v}_train.jsonl'}: skipped {sel_info[v]['n_invalid']} invalid rows ({reasons})")
    ref_dir = out_dir / "reference"
    done_file = out_dir / "policies" / "progress.json"
    done = read_json(done_file) if (resume and done_file.is_file()) else {}
    if resume and "reference" in done and (ref_dir / "model.safetensors").is_file():
        ref, tok = load_policy(ref_dir)
        ref_info = done["reference"]
        log("resume: loaded the reference policy")
    else:
        tok, ref, ref_info = build_reference(cfg, setting, seed)
        save_policy(ref, tok, ref_dir)
        done = {"reference": ref_info}
        atomic_write_json(done_file, done)
    summary: dict[str, Any] = {"method": cfg.method, "reference": ref_info, "values": {}}
    for v in cfg.values:
        vdir = out_dir / "policies" / v
        if resume and v in done and (vdir / "model.safetensors").is_file():
            log(f"resume: the {v} policy is already trained")
            summary["values"][v] = done[v]
            continue
        log(f"training the {v} policy on {len(selected[v])} pairs ({cfg.method})")
        policy, info = train_value_policy(cfg, ref, tok, selected[v], seed, out_dir)
        save_policy(policy, tok, vdir)
        summary["values"][v] = done[v] = {**{k: x for k, x in sel_info[v].items() if k != "invalid_reasons"}, **info}
        atomic_write_json(done_file, done)
    atomic_write_json(out_dir / "policies" / "summary.json", summary)
    return summary


# ---- SFT and DPO loops ----------------------------------------------------------------------------


def _batches(n: int, batch_size: int, steps: int, rng: np.random.Generator):
    order = np.array([], dtype=np.int64)
    for _ in range(steps):
        while order.size < batch_size:
            order = np.concatenate([order, rng.permutation(n)])
        idx, order = order[:batch_size], order[batch_size:]
        yield idx


def train_sft(model: Any, tok: Any, prompts: Sequence[str], responses: Sequence[str], steps: int, lr: float, batch_size: int, seed: int) -> list[float]:
    """Maximum likelihood of the responses given the prompts (the reference model's warm-up)."""
    import torch

    if not prompts:
        raise DataError(None, "no SFT examples")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for idx in _batches(len(prompts), batch_size, steps, rng):
        b = encode_pairs(tok, [prompts[i] for i in idx], [responses[i] for i in idx])
        n_tok = b["response_mask"][:, 1:].sum().clamp(min=1)
        loss = -sequence_logprob(model, b).sum() / n_tok
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def train_dpo_native(policy: Any, ref: Any, tok: Any, rows: Sequence[dict[str, Any]], steps: int, lr: float, batch_size: int, beta: float, seed: int, label_smoothing: float = 0.0) -> dict[str, Any]:
    """DPO on (prompt, chosen, rejected) rows; the reference log-probs are computed once up front."""
    import torch

    if not rows:
        raise DataError(None, "no preference pairs to train on (was everything filtered out?)")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    prompts = [r["prompt"] for r in rows]
    chosen_b = encode_pairs(tok, prompts, [r["chosen"] for r in rows])
    rejected_b = encode_pairs(tok, prompts, [r["rejected"] for r in rows])
    with torch.no_grad():
        ref_c = chunked_logprob(ref, chosen_b)
        ref_r = chunked_logprob(ref, rejected_b)
    policy.train()
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    losses, accs = [], []
    for idx in _batches(len(rows), min(batch_size, len(rows)), steps, rng):
        ix = torch.as_tensor(idx)
        both = {k: torch.cat([chosen_b[k][ix], rejected_b[k][ix]]) for k in chosen_b}
        lp = sequence_logprob(policy, both)
        pc, pr = lp[: len(idx)], lp[len(idx):]
        loss, logits = dpo_loss(pc, pr, ref_c[ix], ref_r[ix], beta, label_smoothing)
        loss = loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        accs.append(float((logits > 0).float().mean()))
    policy.eval()
    k = max(1, len(losses) // 10)
    return {"loss_first": losses[0], "loss_last": float(np.mean(losses[-k:])), "reward_acc_last": float(np.mean(accs[-k:])), "steps": len(losses)}


def train_dpo_trl(policy: Any, ref: Any, tok: Any, rows: Sequence[dict[str, Any]], steps: int, lr: float, batch_size: int, beta: float, seed: int, out_dir: Path, lora: dict[str, Any] | None = None) -> dict[str, Any]:
    """TRL's DPOTrainer with CPU-safe settings (fp32, no gradient checkpointing, no reporting)."""
    try:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer
    except ImportError:
        raise UsageError("trainer 'trl' needs trl", "pip install 'affectkit[rl]', or set trainer: native") from None
    import torch
    from datasets.utils.logging import disable_progress_bar
    from transformers import PrinterCallback, ProgressCallback

    disable_progress_bar()
    # same token sequence as the native trainer: prompt [SEP] response [EOS] (TRL appends the EOS)
    ds = Dataset.from_list([{"prompt": r["prompt"] + " [SEP]", "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])
    args = DPOConfig(
        output_dir=str(out_dir), max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr, beta=beta,
        seed=seed, data_seed=seed, bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True, report_to=[],
        logging_steps=max(1, steps // 10), save_strategy="no", disable_dropout=True, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, max_length=64, dataloader_num_workers=0,
        disable_tqdm=True, log_level="error",
    )
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=int(lora.get("r", 8)), lora_alpha=int(lora.get("alpha", 16)), lora_dropout=float(lora.get("dropout", 0.0)),
                                 target_modules=list(lora.get("targets", ["c_attn", "c_proj"])), bias="none", task_type="CAUSAL_LM", fan_in_fan_out=True)
        ref = None  # TRL uses the base with adapters disabled
    import warnings

    torch.manual_seed(seed)
    with warnings.catch_warnings():  # deprecation notices between TRL and transformers versions
        warnings.simplefilter("ignore", FutureWarning)
        trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)
        for cb in (PrinterCallback, ProgressCallback):  # stdout is for data
            trainer.remove_callback(cb)
        result = trainer.train()
    import contextlib

    with contextlib.suppress(OSError):  # save_strategy "no": TRL leaves its output_dir empty
        Path(out_dir).rmdir()
    hist = [h for h in trainer.state.log_history if "loss" in h]
    model = trainer.model
    return {"model": model, "loss_first": hist[0]["loss"] if hist else math.nan, "loss_last": hist[-1]["loss"] if hist else float(result.training_loss),
            "reward_acc_last": hist[-1].get("rewards/accuracies", math.nan) if hist else math.nan, "steps": int(result.global_step)}
