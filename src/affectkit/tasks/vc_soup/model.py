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


def _load_model(path: Path) -> Any:
    """The causal LM saved at ``path``; a missing config, unreadable weights or weights that do not
    fill the architecture exactly (missing, unexpected or mis-shaped tensors) are a DataError naming
    the directory, never a model with freshly initialised parts."""
    from safetensors import SafetensorError, safe_open
    from transformers import AutoModelForCausalLM

    from affectkit.components.hf import local_model_dir
    from affectkit.core.errors import DataError

    quiet_transformers()
    path = local_model_dir(path, "policy directory", "pass the --out of `affectkit train vc-soup` (or a save_pretrained directory)")
    weights = path / "model.safetensors"
    if weights.is_file():
        try:
            with safe_open(str(weights), "pt") as fh:
                fh.keys()
        except (SafetensorError, OSError) as exc:
            raise DataError(weights, f"cannot read safetensors ({exc})") from None
    try:
        model, info = AutoModelForCausalLM.from_pretrained(str(path), output_loading_info=True)
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(path, f"cannot load the policy ({exc.__class__.__name__}: {msg[:300]})") from None
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind) or ())
        if keys:
            raise DataError(path, f"the weights do not fit config.json: {len(keys)} {kind.replace('_', ' ')} (e.g. {keys[0]!r})",
                            "model.safetensors and config.json must come from one save_pretrained")
    return model.eval()


def load_policy(path: Path) -> tuple[Any, Any]:
    """A saved policy (in eval mode) and its tokenizer."""
    from transformers import AutoTokenizer

    from affectkit.core.errors import DataError

    model = _load_model(path)
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(path, f"cannot load the tokenizer ({exc.__class__.__name__})") from None
    return model, tok


def policy_state(path: Path) -> dict[str, Any]:
    """The weights of a saved policy."""
    return _load_model(path).state_dict()
