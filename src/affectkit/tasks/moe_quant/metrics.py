"""Held-out metrics: cross-entropy (nats per byte), perplexity and token accuracy of a model on
batches, and ``affectkit evaluate moe-quant``: the same on the held-out split of the corpus a model
directory (quantized by affectkit, or a float one we trained) was trained on.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from affectkit.core.errors import DataError
from affectkit.core.runs import read_json
from affectkit.tasks.moe_quant.config import LMConfig
from affectkit.tasks.moe_quant.data import heldout_batches, streams
from affectkit.tasks.moe_quant.hf_format import QUANT_METHOD, load_quantized, read_quant_config
from affectkit.tasks.moe_quant.model import arch_of, forward, lm_config_of, load_model_dir


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


def evaluate_model(model_dir: str | Path, corpus_name: str | None = None, nsamples: int = 64) -> dict[str, Any]:
    """Held-out metrics of a model directory (quantized by affectkit, or a float one we trained):
    Mixtral: loss (nats/byte), perplexity and next-byte accuracy on the held-out split of its corpus;
    Switch: loss and token accuracy on the held-out reversal task. ``corpus_name`` overrides the corpus."""
    d = Path(model_dir)
    if not (d / "config.json").exists():
        raise DataError(d, "no config.json: not a model directory")
    conf = read_json(d / "config.json")
    if not isinstance(conf, dict):
        raise DataError(d / "config.json", "expected a JSON object")
    quantized = (conf.get("quantization_config") or {}).get("quant_method") == QUANT_METHOD
    if quantized:
        qcfg = read_quant_config(d)
        model = load_quantized(d)
        tc = (qcfg.get("source") or {}).get("train_config") or {}
        cfg = LMConfig(**{k: v for k, v in tc.items() if k in LMConfig.__dataclass_fields__})
    else:
        model = load_model_dir(d, "--model directory")
        cfg = lm_config_of(d)
    if corpus_name:
        cfg = dataclasses.replace(cfg, corpus=corpus_name, marker_frac=0.0)
    _, held = streams(model, d, cfg.corpus, cfg.seed, cfg.marker_frac)
    metrics = eval_loss(model, heldout_batches(model, held, cfg, n=nsamples,
                                               source=f"the held-out split of corpus {cfg.corpus}"))
    out = {"model": str(d), "arch": arch_of(model), "quantized": quantized, "corpus": cfg.corpus, "metrics": metrics}
    if quantized:
        out["achieved_avg_bits"] = qcfg["allocation"]["achieved_avg_bits"]
    return out
