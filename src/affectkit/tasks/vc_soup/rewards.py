"""Reward backends for scoring preference pairs: one name, one callable over (prompt, response) pairs.

Backend specs (the right-hand side of ``--reward VALUE=SPEC``):

- ``precomputed``            scores already in the row: ``rewards_chosen[VALUE]`` / ``rewards_rejected[VALUE]``
- ``precomputed:COL_C,COL_R`` scores in two flat columns (e.g. the reference code's ``reward1_chosen,reward1_reject``)
- ``vader``                  VADER compound polarity of the response, in [-1, 1]
- ``minilm-relevance``       cosine of MiniLM embeddings of prompt and response
- ``brevity[:TARGET]``       -|n_words - TARGET| / TARGET clipped to [-1, 0] (TARGET default 30)
- ``profanity``              minus the number of profane words (small in-repo list)
- ``hf-seqcls:PATH``         a local AutoModelForSequenceClassification; the score is logits[..., 0]
- ``python:MODULE:FUNCTION`` ``FUNCTION(prompts, responses) -> list[float]``

Scores are computed in batches and cached by a hash of (backend, input text) within a run, and in a
JSONL file when a cache path is given.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.components.hf import local_model_dir
from affectkit.core.errors import DataError, UsageError

BACKENDS = ("precomputed", "vader", "minilm-relevance", "brevity", "profanity", "hf-seqcls", "python")

# A deliberately small list: enough for the offline benchmark and for tests. Users with real needs
# pass a classifier through hf-seqcls or python:.
PROFANE = frozenset(
    ["damn", "damned", "dammit", "hell", "crap", "crappy", "shit", "shitty", "bullshit", "piss", "pissed", "bastard", "bitch", "asshole", "fuck", "fucking", "fucked", "idiot", "idiotic", "stupid", "moron", "dumb", "jerk", "sucks", "suck"]
)
_WORD = re.compile(r"[A-Za-z']+")


def _hash(*parts: str) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


class Scorer:
    """A batched scorer over (prompt, response) pairs with a text-hash cache."""

    def __init__(self, spec: str, fn: Callable[[Sequence[str], Sequence[str]], Sequence[float]], uses_prompt: bool, template: str = "{prompt}{response}"):
        self.spec = spec
        self.fn = fn
        self.uses_prompt = uses_prompt
        self.template = template
        self.cache: dict[str, float] = {}

    def key(self, prompt: str, response: str) -> str:
        return _hash(self.spec, self.template, prompt if self.uses_prompt else "", response)

    def __call__(self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 256) -> np.ndarray:
        keys = [self.key(p, r) for p, r in zip(prompts, responses, strict=True)]
        todo: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in self.cache and k not in todo:
                todo[k] = i
        idx = list(todo.values())
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            scores = list(self.fn([prompts[i] for i in chunk], [responses[i] for i in chunk]))
            if len(scores) != len(chunk):
                raise DataError(None, f"reward backend {self.spec!r} returned {len(scores)} scores for {len(chunk)} texts")
            for i, s in zip(chunk, scores, strict=True):
                self.cache[keys[i]] = float(s)
        return np.array([self.cache[k] for k in keys], dtype=np.float64)

    def load_cache(self, path: Path) -> None:
        if not path.exists():
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("score"), (int, float)):
                self.cache[str(rec.get("key"))] = float(rec["score"])

    def save_cache(self, path: Path) -> None:
        from affectkit.core.runs import atomic_write_text

        lines = [json.dumps({"key": k, "score": v}) for k, v in sorted(self.cache.items())]
        atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


# ---- backends ---------------------------------------------------------------------------------


def vader_fn(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    from affectkit.components.sentiment import vader_compound

    return vader_compound(responses)


def minilm_relevance_fn(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    from affectkit.components.text_encoders import get_encoder

    enc = get_encoder()
    ep = enc.encode_cached(list(prompts))
    er = enc.encode_cached(list(responses))
    return [float(x) for x in (ep * er).sum(axis=1)]


def brevity_fn(target: int) -> Callable[[Sequence[str], Sequence[str]], list[float]]:
    def fn(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        out = []
        for r in responses:
            n = len(r.split())
            out.append(max(-1.0, min(0.0, -abs(n - target) / target)))
        return out

    return fn


def profanity_fn(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    return [-float(sum(1 for w in _WORD.findall(r.lower()) if w in PROFANE)) for r in responses]


def hf_seqcls_fn(path: str, template: str, device: str = "cpu", max_length: int = 512) -> Callable[[Sequence[str], Sequence[str]], list[float]]:
    p = Path(path)
    if not p.exists():
        raise DataError(p, "reward model path not found", "hf-seqcls takes a local directory saved with save_pretrained")
    local_model_dir(p, "model directory", "hf-seqcls takes a local directory saved with save_pretrained")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(p))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    model = AutoModelForSequenceClassification.from_pretrained(str(p)).to(device).eval()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id

    def fn(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        texts = [render(template, pr, r) for pr, r in zip(prompts, responses, strict=True)]
        with torch.inference_mode():
            enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
            logits = model(**enc).logits
        return [float(x) for x in logits[:, 0].float().cpu()]

    return fn


def python_fn(target: str) -> Callable[[Sequence[str], Sequence[str]], Sequence[float]]:
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"python backend {target!r}: expected python:MODULE:FUNCTION")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"python backend: cannot import {module_name!r} ({exc})", "is the module on PYTHONPATH?") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UsageError(f"python backend: {module_name} has no function {attr!r}")
    return fn


def render(template: str, prompt: str, response: str) -> str:
    if template == "response-only":
        return response
    return template.replace("{prompt}", prompt).replace("{response}", response)


def make_scorer(spec: str, template: str = "{prompt}{response}", device: str = "cpu") -> Scorer | None:
    """A Scorer for ``spec``; None for ``precomputed`` (read from the rows instead)."""
    name, _, arg = spec.partition(":")
    if name == "precomputed":
        return None
    if name == "vader":
        return Scorer(spec, vader_fn, uses_prompt=False)
    if name == "minilm-relevance":
        return Scorer(spec, minilm_relevance_fn, uses_prompt=True)
    if name == "brevity":
        try:
            target = int(arg) if arg else 30
        except ValueError:
            raise UsageError(f"brevity target must be an integer, got {arg!r}") from None
        if target <= 0:
            raise UsageError(f"brevity target must be positive, got {target}")
        return Scorer(spec, brevity_fn(target), uses_prompt=False)
    if name == "profanity":
        return Scorer(spec, profanity_fn, uses_prompt=False)
    if name == "hf-seqcls":
        if not arg:
            raise UsageError("hf-seqcls needs a path: hf-seqcls:PATH")
        return Scorer(spec, hf_seqcls_fn(arg, template, device), uses_prompt=template != "response-only", template=template)
    if name == "python":
        return Scorer(spec, python_fn(arg), uses_prompt=True)
    import difflib

    close = difflib.get_close_matches(name, BACKENDS, n=1, cutoff=0.5)
    hint = (f"did you mean {close[0]!r}? " if close else "") + "backends: " + ", ".join(BACKENDS)
    raise UsageError(f"unknown reward backend {spec!r}", hint)


def parse_number(value: Any) -> float | None:
    """A float from a JSON value, or None when it is not numeric. NaN/inf come back as float."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def is_finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
