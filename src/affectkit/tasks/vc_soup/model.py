"""Tiny GPT-2 policies, the DPO loss (Rafailov et al. 2023), and training: native (used by the tests
and the benchmark) or TRL's DPOTrainer with CPU-safe settings (optionally with LoRA).

DPO: L = -log sigmoid(beta * [(log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))]);
at initialisation (pi = ref) every margin is 0 and L = ln 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError

SPECIALS = ("[PAD]", "[UNK]", "[SEP]", "[EOS]")


def dpo_loss(policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any, beta: float = 0.1, label_smoothing: float = 0.0) -> tuple[Any, Any]:
    """Sigmoid DPO loss per pair (with optional conservative label smoothing) and the implicit reward margin."""
    import torch.nn.functional as F

    logits = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    loss = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return loss, logits


def build_tokenizer(words: Sequence[str]) -> Any:
    """A word-level fast tokenizer over ``words`` (whitespace split), with [PAD]/[UNK]/[SEP]/[EOS]."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*SPECIALS, *sorted(set(words))])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", sep_token="[SEP]", eos_token="[EOS]")


def build_policy(vocab_size: int, n_layer: int = 2, n_head: int = 2, n_embd: int = 64, n_positions: int = 64, seed: int = 0) -> Any:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg)
    return model.eval()


def encode_pairs(tok: Any, prompts: Sequence[str], responses: Sequence[str], max_len: int = 64) -> dict[str, Any]:
    """input_ids (prompt [SEP] response [EOS]), attention mask, and a mask of the response tokens."""
    import torch

    sep, eos, pad = tok.sep_token_id, tok.eos_token_id, tok.pad_token_id
    seqs, resp_starts = [], []
    for p, r in zip(prompts, responses, strict=True):
        pi = tok.encode(p, add_special_tokens=False)
        ri = tok.encode(r, add_special_tokens=False)
        ids = ([*pi, sep, *ri, eos])[:max_len]
        seqs.append(ids)
        resp_starts.append(min(len(pi) + 1, len(ids)))
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    attn = torch.zeros((len(seqs), n), dtype=torch.long)
    resp = torch.zeros((len(seqs), n), dtype=torch.bool)
    for i, (s, st) in enumerate(zip(seqs, resp_starts, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        resp[i, st : len(s)] = True
    return {"input_ids": ids, "attention_mask": attn, "response_mask": resp}


def sequence_logprob(model: Any, batch: dict[str, Any]) -> Any:
    """Sum of log pi(token) over the response tokens (including [EOS]) of each sequence."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    targets = batch["input_ids"][:, 1:]
    lp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (lp * batch["response_mask"][:, 1:]).sum(-1)


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
        ref_c = _chunked_logprob(ref, chosen_b)
        ref_r = _chunked_logprob(ref, rejected_b)
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


def _chunked_logprob(model: Any, batch: dict[str, Any], chunk: int = 512) -> Any:
    import torch

    out = []
    n = batch["input_ids"].shape[0]
    with torch.no_grad():
        for i in range(0, n, chunk):
            out.append(sequence_logprob(model, {k: v[i : i + chunk] for k, v in batch.items()}))
    return torch.cat(out) if out else torch.zeros(0)


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


def candidate_distribution(model: Any, tok: Any, prompt: str, candidates: Sequence[str]) -> np.ndarray:
    """The policy's distribution over a finite candidate set: softmax of log pi(y | x)."""
    import torch

    b = encode_pairs(tok, [prompt] * len(candidates), list(candidates))
    lp = _chunked_logprob(model, b)
    return torch.softmax(lp.double(), 0).numpy()
