"""Readers: corpora as byte-level token streams, and the windows a model is trained, calibrated and
evaluated on.

A corpus is ``pydoc`` or ``stdlib`` (read from ``DATA_DIR/NAME.txt`` when ``affectkit data make
moe-quant`` wrote it there, else the embedded bytes of synth.py) or the path of a UTF-8 text file
(DataError when it is missing, not UTF-8, or too short). Every corpus is split by position: the last
10 % is held out; the rare-marker stream of synth.py is optionally mixed into both parts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from affectkit.core.errors import DataError
from affectkit.tasks.moe_quant.config import LMConfig
from affectkit.tasks.moe_quant.model import arch_of
from affectkit.tasks.moe_quant.synth import mix_markers, pydoc_bytes, stdlib_bytes

EMBEDDED_CORPORA = ("pydoc", "stdlib")


def data_dir_corpus(name: str, data_dir: str | Path) -> Path:
    """``DATA_DIR/NAME.txt``, the file a data directory must hold for corpus ``pydoc`` or ``stdlib``;
    a DataError naming the directory and the file when it is not there."""
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(d, "data directory not found")
    p = d / f"{name}.txt"
    if not p.is_file():
        raise DataError(d, f"no {name}.txt in the data directory (corpus {name!r} is read from it)",
                        "write it with `affectkit data make moe-lm --out DIR`, drop --data to use the embedded "
                        "corpus, or set corpus to the path of a UTF-8 text file")
    return p


def corpus_bytes(name: str, data_dir: str | Path | None = None) -> bytes:
    """The raw bytes of a corpus: ``pydoc``, ``stdlib`` (read from ``data_dir/NAME.txt`` when a data
    directory is given, as ``affectkit data make moe-quant`` writes it: a DataError when it lacks the
    file; else the embedded bytes), or a path to a UTF-8 text file."""
    if data_dir is not None and name in EMBEDDED_CORPORA:
        return data_dir_corpus(name, data_dir).read_bytes()
    if name == "pydoc":
        return pydoc_bytes()
    if name == "stdlib":
        return stdlib_bytes()
    p = Path(name)
    if not p.is_file():
        raise DataError(p, "corpus not found", "use pydoc, stdlib or the path of a UTF-8 text file")
    data = p.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(p, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if len(data) < 4096:
        raise DataError(p, f"only {len(data)} bytes of text; at least 4096 are needed")
    return data


def corpus(name: str, seed: int = 0, marker_frac: float = 0.0,
           data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, heldout) uint8 token streams of a corpus (see :func:`corpus_bytes`), optionally
    interleaved in 512-byte chunks with the marker stream at ``marker_frac`` of the bytes."""
    data = corpus_bytes(name, data_dir)
    arr = np.frombuffer(data, dtype=np.uint8)
    cut = int(len(arr) * 0.9)
    train, held = arr[:cut], arr[cut:]
    if marker_frac > 0:
        train = mix_markers(train, marker_frac, seed)
        held = mix_markers(held, marker_frac, seed + 1)
    return train.copy(), held.copy()


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "spiece.model")


def has_tokenizer(model_dir: Path | None) -> bool:
    return model_dir is not None and any((Path(model_dir) / f).exists() for f in ("tokenizer.json", "tokenizer.model", "spiece.model"))


def streams(model, model_dir: Path | None, name: str, seed: int, marker: float):
    """(train, heldout) token streams: the model's own tokenizer when its directory has one (real
    checkpoints), else bytes (the embedded byte-level models; needs vocab_size >= 256)."""
    if has_tokenizer(model_dir):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(model_dir))
        ids = np.asarray(tok(corpus_bytes(name).decode("utf-8", errors="replace"))["input_ids"], dtype=np.int64)
        cut = int(len(ids) * 0.9)
        return ids[:cut], ids[cut:]
    vocab = int(getattr(model.config, "vocab_size", 256))
    if vocab < 256:
        raise DataError(model_dir or "model", f"vocab_size {vocab} < 256 and no tokenizer files in the model directory",
                        "byte-level calibration needs 256 token ids; add the model's tokenizer files")
    return corpus(name, seed, marker)


def lm_batches(stream: np.ndarray, seq_len: int, n: int, batch_size: int, seed: int | None = None) -> list[dict]:
    """``n`` windows of ``seq_len`` tokens: random (seeded) when ``seed`` is given, else
    consecutive non-overlapping windows from the start (held-out evaluation)."""
    import torch

    L = len(stream) - seq_len - 1
    if L <= 0:
        raise ValueError(f"stream of {len(stream)} tokens is shorter than seq_len {seq_len}")
    if seed is None:
        starts = np.arange(0, L, seq_len)[:n]
    else:
        starts = np.random.default_rng(seed).integers(0, L, size=n)
    windows = np.stack([stream[s:s + seq_len] for s in starts]).astype(np.int64)
    out = []
    for i in range(0, len(windows), batch_size):
        ids = torch.from_numpy(windows[i:i + batch_size])
        out.append({"input_ids": ids})
    return out


def switch_batches(stream: np.ndarray, snippet: int, n: int, batch_size: int, seed: int | None = None) -> list[dict]:
    """Seq2seq pairs: the encoder reads a snippet, the decoder must write it reversed."""
    import torch

    L = len(stream) - snippet - 1
    if L <= 0:
        raise ValueError(f"stream of {len(stream)} tokens is shorter than the snippet {snippet}")
    starts = np.arange(0, L, snippet)[:n] if seed is None else np.random.default_rng(seed).integers(0, L, size=n)
    src = np.stack([stream[s:s + snippet] for s in starts]).astype(np.int64)
    src = np.where(src < 2, 2, src)  # 0 is pad/decoder start, 1 is eos: keep them out of the text
    tgt = src[:, ::-1].copy()
    out = []
    for i in range(0, len(src), batch_size):
        out.append({"input_ids": torch.from_numpy(src[i:i + batch_size]),
                    "labels": torch.from_numpy(tgt[i:i + batch_size])})
    return out


def heldout_batches(model, held: np.ndarray, cfg: LMConfig | None = None, n: int = 64,
                    source: str = "the held-out split") -> list[dict]:
    if arch_of(model) == "switch":
        snip = cfg.switch_snippet if cfg else 32
        require_windows(held, snip, "switch_snippet", source)
        return switch_batches(held, snip, n, 16)
    seq = cfg.seq_len if cfg else 128
    require_windows(held, seq, "seq_len", source)
    return lm_batches(held, seq, n, 16)


def require_windows(stream: np.ndarray, window: int, option: str, source: str | Path) -> None:
    """A UsageError naming ``option`` when ``stream`` cannot hold one window of ``window`` tokens
    (plus the shifted target)."""
    from affectkit.core.errors import UsageError

    if len(stream) - window - 1 <= 0:
        raise UsageError(f"{option} {window}: longer than the {len(stream)} tokens of {source}",
                         f"lower {option} or use a longer corpus")
