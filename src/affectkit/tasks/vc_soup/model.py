"""The policies: tiny GPT-2 language models over a word-level tokenizer, their response
log-probabilities, and saving/loading them as transformers directories."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.components.hf import quiet_transformers

SPECIALS = ("[PAD]", "[UNK]", "[SEP]", "[EOS]")


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


def chunked_logprob(model: Any, batch: dict[str, Any], chunk: int = 512) -> Any:
    """``sequence_logprob`` without gradients, ``chunk`` sequences at a time."""
    import torch

    out = []
    n = batch["input_ids"].shape[0]
    with torch.no_grad():
        for i in range(0, n, chunk):
            out.append(sequence_logprob(model, {k: v[i : i + chunk] for k, v in batch.items()}))
    return torch.cat(out) if out else torch.zeros(0)


def candidate_distribution(model: Any, tok: Any, prompt: str, candidates: Sequence[str]) -> np.ndarray:
    """The policy's distribution over a finite candidate set: softmax of log pi(y | x)."""
    import torch

    b = encode_pairs(tok, [prompt] * len(candidates), list(candidates))
    lp = chunked_logprob(model, b)
    return torch.softmax(lp.double(), 0).numpy()


def save_policy(model: Any, tok: Any, path: Path) -> None:
    quiet_transformers()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    tok.save_pretrained(str(path))


def load_policy(path: Path) -> tuple[Any, Any]:
    """A saved policy (in eval mode) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    return AutoModelForCausalLM.from_pretrained(str(path)).eval(), AutoTokenizer.from_pretrained(str(path))


def policy_state(path: Path) -> dict[str, Any]:
    """The weights of a saved policy."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path)).state_dict()
