"""Embedded tiny MoE models: corpora that ship with CPython, a byte-level tokenizer, a trainer for a
tiny Mixtral (causal LM) or Switch (seq2seq: reverse a corpus snippet), and their evaluation.

Corpora: ``pydoc`` (``pydoc_data.topics``: the interpreter's help topics, English prose, about
465 k bytes), ``stdlib`` (the standard library's own ``*.py`` sources, sorted by file name, code), and
an optional synthetic ``marker`` stream mixed in: a rare control byte (0x01..0x08, absent from both
corpora) decides the fixed phrase that follows it, so some experts can specialise on rare but
decisive inputs. Every corpus is split by position: the last ``heldout_frac`` is held out.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROUTER_INIT_FILE = "router_init.safetensors"
TRAIN_REPORT_FILE = "train_report.json"
MARKERS = list(range(1, 9))
MARKER_PHRASES = [b" alpha one", b" beta two", b" gamma three", b" delta four",
                  b" epsilon five", b" zeta six", b" eta seven", b" theta eight"]


def pydoc_bytes() -> bytes:
    from pydoc_data.topics import topics

    return "".join(topics[k] for k in sorted(topics)).encode("utf-8")


def stdlib_bytes(max_bytes: int = 600_000) -> bytes:
    root = sysconfig.get_paths()["stdlib"]
    out = bytearray()
    for path in sorted(glob.glob(os.path.join(root, "*.py"))):
        with open(path, "rb") as fh:
            out += fh.read()
        if len(out) >= max_bytes:
            break
    return bytes(out[:max_bytes])


def marker_bytes(n: int, seed: int, rate: float = 0.02) -> bytes:
    """Lowercase filler with a rare marker byte; each marker is followed by its own phrase."""
    rng = np.random.default_rng(seed)
    out = bytearray()
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz     ", dtype=np.uint8)
    while len(out) < n:
        if rng.random() < rate:
            m = int(rng.integers(len(MARKERS)))
            out.append(MARKERS[m])
            out += MARKER_PHRASES[m]
        else:
            out.append(int(letters[rng.integers(len(letters))]))
    return bytes(out[:n])


def corpus_bytes(name: str, data_dir: str | Path | None = None) -> bytes:
    """The raw bytes of a corpus: ``pydoc``, ``stdlib`` (read from ``data_dir/NAME.txt`` when that
    file exists, as ``affectkit data make moe-quant`` writes it), or a path to a UTF-8 text file."""
    from affectkit.core.errors import DataError

    if data_dir is not None and (Path(data_dir) / f"{name}.txt").is_file():
        return (Path(data_dir) / f"{name}.txt").read_bytes()
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
        train = _mix(train, marker_frac, seed)
        held = _mix(held, marker_frac, seed + 1)
    return train.copy(), held.copy()


def _mix(arr: np.ndarray, frac: float, seed: int, chunk: int = 512) -> np.ndarray:
    n_mark = int(len(arr) * frac / (1 - frac))
    mark = np.frombuffer(marker_bytes(n_mark, seed), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    pieces = [arr[i:i + chunk] for i in range(0, len(arr), chunk)]
    mpieces = [mark[i:i + chunk] for i in range(0, len(mark), chunk)]
    slots = np.sort(rng.choice(len(pieces) + len(mpieces), size=len(mpieces), replace=False))
    out, pi, mi = [], 0, 0
    for k in range(len(pieces) + len(mpieces)):
        if mi < len(slots) and slots[mi] == k:
            out.append(mpieces[mi])
            mi += 1
        else:
            out.append(pieces[pi])
            pi += 1
    return np.concatenate(out)


@dataclass
class LMConfig:
    """The trainer's settings (the top-level fields of the task Config, without ``quant``)."""

    arch: str = "mixtral"  # mixtral | switch
    corpus: str = "pydoc"
    marker_frac: float = 0.1
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    num_experts: int = 8
    top_k: int = 2
    seq_len: int = 128
    switch_snippet: int = 32
    batch_size: int = 16
    steps: int = 300
    lr: float = 3e-3
    weight_decay: float = 0.0
    router_aux_loss_coef: float = 0.01
    init_from: str | None = None
    seed: int = 0

    @classmethod
    def from_task_config(cls, cfg, seed: int) -> LMConfig:
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__ if k != "seed"}, seed=seed)

    def cache_key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def build_config(cfg: LMConfig):
    if cfg.arch == "mixtral":
        from transformers import MixtralConfig

        return MixtralConfig(
            vocab_size=256, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_kv_heads, num_local_experts=cfg.num_experts,
            num_experts_per_tok=cfg.top_k, max_position_embeddings=max(256, cfg.seq_len),
            output_router_logits=True, router_aux_loss_coef=cfg.router_aux_loss_coef,
            bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=False,
        )
    if cfg.arch == "switch":
        from transformers import SwitchTransformersConfig

        return SwitchTransformersConfig(
            vocab_size=256, d_model=cfg.hidden_size, d_kv=cfg.hidden_size // cfg.num_heads,
            d_ff=cfg.intermediate_size, num_layers=cfg.num_layers, num_decoder_layers=cfg.num_layers,
            num_heads=cfg.num_heads, num_experts=cfg.num_experts, num_sparse_encoder_layers=cfg.num_layers // 2,
            num_sparse_decoder_layers=cfg.num_layers // 2, expert_capacity=4096, dropout_rate=0.0,
            router_aux_loss_coef=cfg.router_aux_loss_coef, pad_token_id=0, decoder_start_token_id=0,
            eos_token_id=1, tie_word_embeddings=False,
        )
    raise ValueError(f"unknown arch {cfg.arch!r}; choose mixtral or switch")


def build_model(cfg: LMConfig):
    import torch
    from transformers import MixtralForCausalLM, SwitchTransformersForConditionalGeneration

    torch.manual_seed(cfg.seed)
    conf = build_config(cfg)
    cls = MixtralForCausalLM if cfg.arch == "mixtral" else SwitchTransformersForConditionalGeneration
    return cls(conf)


def quiet_transformers() -> None:
    """Our commands show their own progress: silence transformers' load/save bars."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_float_model(model_dir: str | Path):
    """A float model saved by ``save_pretrained`` (Mixtral or Switch), in eval mode."""
    quiet_transformers()
    from transformers import AutoConfig, MixtralForCausalLM, SwitchTransformersForConditionalGeneration

    conf = AutoConfig.from_pretrained(model_dir)
    cls = SwitchTransformersForConditionalGeneration if conf.model_type == "switch_transformers" else MixtralForCausalLM
    return cls.from_pretrained(model_dir).eval()


def arch_of(model) -> str:
    return "switch" if getattr(model.config, "model_type", "") == "switch_transformers" else "mixtral"


# ---------------------------------------------------------------------------------------------------
# batches


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
    starts = np.arange(0, L, snippet)[:n] if seed is None else np.random.default_rng(seed).integers(0, L, size=n)
    src = np.stack([stream[s:s + snippet] for s in starts]).astype(np.int64)
    src = np.where(src < 2, 2, src)  # 0 is pad/decoder start, 1 is eos: keep them out of the text
    tgt = src[:, ::-1].copy()
    out = []
    for i in range(0, len(src), batch_size):
        out.append({"input_ids": torch.from_numpy(src[i:i + batch_size]),
                    "labels": torch.from_numpy(tgt[i:i + batch_size])})
    return out


def forward(model, batch: dict):
    """The forward pass used for calibration (no loss, no router logits)."""
    if arch_of(model) == "switch":
        return model(input_ids=batch["input_ids"], labels=batch["labels"], output_router_logits=False)
    return model(input_ids=batch["input_ids"], output_router_logits=False)


def eval_loss(model, batches: list[dict]) -> dict[str, float]:
    """Mean token cross-entropy (nats), perplexity and token accuracy over the batches."""
    import torch
    import torch.nn.functional as F

    nll, correct, count = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for b in batches:
            logits = forward(model, b).logits.float()
            if arch_of(model) == "switch":
                tgt = b["labels"]
            else:
                logits, tgt = logits[:, :-1], b["input_ids"][:, 1:]
            nll += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="sum").item()
            correct += int((logits.argmax(-1) == tgt).sum())
            count += tgt.numel()
    loss = nll / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "token_acc": correct / max(count, 1), "tokens": count}


# ---------------------------------------------------------------------------------------------------
# training


def snapshot_routers(model) -> dict[str, Any]:
    from affectkit.tasks.moe_quant.adapters import moe_layers

    return {v.name: v.router_weight().clone().contiguous() for v in moe_layers(model)}


def train_lm(cfg: LMConfig, out_dir: str | Path, log=None, progress=None,
             data_dir: str | Path | None = None) -> dict[str, Any]:
    """Train (or fine-tune, with ``init_from``) a tiny MoE model; save it with its router snapshot
    taken before training (the exact reference for the router-norm change)."""
    import torch
    from safetensors.torch import save_file

    from affectkit.core.runs import atomic_write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    quiet_transformers()
    torch.manual_seed(cfg.seed)
    model = load_float_model(cfg.init_from) if cfg.init_from else build_model(cfg)
    if cfg.init_from and arch_of(model) != cfg.arch:
        raise ValueError(f"init_from model is {arch_of(model)}, but arch={cfg.arch}")
    router0 = snapshot_routers(model)
    train, held = corpus(cfg.corpus, cfg.seed, cfg.marker_frac, data_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, cfg.steps // 10)) * 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    rng = np.random.default_rng(cfg.seed + 1000)
    model.train()
    losses = []
    t0 = time.perf_counter()
    for step in range(cfg.steps):
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
    model.eval()
    held_batches = heldout_batches(model, held, cfg)
    metrics = eval_loss(model, held_batches)
    model.save_pretrained(out)
    save_file({k: v for k, v in router0.items()}, str(out / ROUTER_INIT_FILE))
    rep = {"config": asdict(cfg), "train_loss_last50": float(np.mean(losses[-50:])), "heldout": metrics,
           "seconds": time.perf_counter() - t0, "router_snapshot": ROUTER_INIT_FILE}
    atomic_write_json(out / TRAIN_REPORT_FILE, rep)
    if log:
        log(f"trained {cfg.arch} on {cfg.corpus}: held-out loss {metrics['loss']:.4f} in {rep['seconds']:.1f}s")
    return rep


def heldout_batches(model, held: np.ndarray, cfg: LMConfig | None = None, n: int = 64) -> list[dict]:
    if arch_of(model) == "switch":
        snip = cfg.switch_snippet if cfg else 32
        return switch_batches(held, snip, n, 16)
    seq = cfg.seq_len if cfg else 128
    return lm_batches(held, seq, n, 16)


def train_info(model_dir: str | Path) -> dict[str, Any] | None:
    p = Path(model_dir) / TRAIN_REPORT_FILE
    return json.loads(p.read_text()) if p.exists() else None


def lm_config_of(model_dir: str | Path) -> LMConfig:
    info = train_info(model_dir)
    if info is None:
        return LMConfig()
    known = {f for f in LMConfig.__dataclass_fields__}
    return LMConfig(**{k: v for k, v in info["config"].items() if k in known})


def cache_root() -> Path:
    return Path(os.environ.get("AFFECTKIT_CACHE", Path.home() / ".cache" / "affectkit")) / "moe-quant"


def trained_model(cfg: LMConfig, log=None) -> Path:
    """A model trained with ``cfg``, cached by the config's hash (trained on first use)."""
    import shutil

    path = cache_root() / f"{cfg.arch}-{cfg.cache_key()}"
    if (path / TRAIN_REPORT_FILE).exists():
        return path
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    train_lm(cfg, tmp, log=log)
    if path.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(path)
    return path


def embedded_model(arch: str, log=None, **overrides) -> Path:
    """The embedded tiny model for ``arch`` (default trainer settings), trained on first use and cached."""
    cfg = LMConfig(arch=arch, **overrides)
    if arch == "switch" and "steps" not in overrides:
        cfg.steps = 400
    return trained_model(cfg, log)
