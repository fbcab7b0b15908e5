"""moe-quant: expert-wise mixed-precision post-training quantization of Mixtral and Switch MoE
models (router-norm change + MaxVar order, the authors' count rule or a MILP, GPTQ/RTN underneath).

Paper: Chowdhury et al., *Efficient Quantization of Mixture-of-Experts with Theoretical
Generalization Guarantees*, ICLR 2026 (arXiv 2604.06515). Torch is imported only when used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectkit.core.task import EvaluateRequest, MetricSpec, RecipeTask, TaskVerb, TrainRequest, flag, lazy
from affectkit.tasks.moe_quant.config import Config, QuantConfig

__all__ = ["TASK", "Config", "QuantConfig", "evaluate_model", "load_quantized", "register_with_transformers"]


def evaluate_model(model_dir: str | Path, corpus_name: str | None = None, nsamples: int = 64) -> dict[str, Any]:
    from affectkit.tasks.moe_quant.metrics import evaluate_model as _ev

    return _ev(model_dir, corpus_name, nsamples)


def load_quantized(model_dir: str | Path):
    from affectkit.tasks.moe_quant.hf_format import load_quantized as _lq

    return _lq(model_dir)


def register_with_transformers() -> None:
    """Register the ``affectkit_moe_mp`` quantizer so ``from_pretrained(DIR)`` rebuilds quantized models."""
    from affectkit.tasks.moe_quant.hf_format import register_with_transformers as _reg

    _reg()


@dataclass
class EvaluateOptions:
    model: Path | None = flag("--model", "A model directory written by `affectkit quantize` (or a float one).")


QUANTIZE = TaskVerb("quantize", "affectkit.tasks.moe_quant.cli:app",
                    "Quantize a Mixtral or Switch MoE model with per-expert bits (moe-quant).")


class MoEQuantTask(RecipeTask):
    name = "moe-quant"
    summary = "Expert-wise mixed-precision quantization of Mixtral/Switch MoE (router-norm + MaxVar)"
    verbs = ("data", "train", "evaluate", "bench")
    commands = (QUANTIZE,)
    Config = Config
    EvaluateOptions = EvaluateOptions
    max_steps_key = "steps"
    metrics = (
        MetricSpec("ppl", higher_is_better=False, description="held-out perplexity (bytes)"),
        MetricSpec("loss", higher_is_better=False, description="held-out cross-entropy, nats per byte"),
        MetricSpec("token_acc", higher_is_better=True, description="next-byte (Mixtral) or target-byte (Switch) accuracy"),
    )

    make_data = lazy("affectkit.tasks.moe_quant.synth:make_data")

    def resolve_config(self, cfg: Config, data_dir: Path) -> Config:
        """Usage and data errors of the trainer config, before the run directory is made."""
        from affectkit.tasks.moe_quant.train import check_lm_config

        check_lm_config(cfg, data_dir)
        return cfg

    def train(self, request: TrainRequest) -> dict[str, Any]:
        """``affectkit train moe-lm --set arch=mixtral|switch [--set init_from=DIR]``; checkpoints
        every ``checkpoint_every`` steps, ``--resume`` continues from the last one."""
        from affectkit.tasks.moe_quant.config import LMConfig
        from affectkit.tasks.moe_quant.train import train_lm

        lm = LMConfig.from_task_config(request.cfg, request.seed)
        out = request.run.path / "model"
        out_ = request.output
        with out_.progress(f"training tiny {lm.arch}", total=lm.steps) as bar:
            rep = train_lm(lm, out, log=out_.log,
                           progress=lambda s, loss: bar.update(completed=s + 1, status=f"loss {loss:.3f}"),
                           data_dir=request.data_dir, run=request.run,
                           checkpoint_every=request.cfg.checkpoint_every, resume=request.resume)
        return {"model_dir": str(out), "metrics": rep["heldout"], "train_seconds": rep["seconds"]}

    def evaluate(self, request: EvaluateRequest) -> dict[str, Any]:
        """``affectkit evaluate moe-quant --model DIR``."""
        from affectkit.core.errors import UsageError

        if request.options.model is None:
            raise UsageError("--model is required for moe-quant", "pass a directory written by `affectkit quantize`")
        return evaluate_model(request.options.model)

    bench = lazy("affectkit.tasks.moe_quant.bench:run_bench")


TASK = MoEQuantTask()


class MoELMTask(RecipeTask):
    """``affectkit train moe-lm``: moe-quant's tiny Mixtral / Switch trainer under its own name (the
    embedded models that ``affectkit quantize`` uses when no ``--model`` is given)."""

    name = "moe-lm"
    summary = "Tiny Mixtral / Switch MoE language models for moe-quant, trained on CPython-shipped text"
    verbs = ("data", "train")
    Config = Config
    metrics = MoEQuantTask.metrics
    max_steps_key = "steps"

    def make_data(self, out: Path, seed: int, quick: bool) -> dict[str, Any]:
        return TASK.make_data(out, seed, quick)

    def resolve_config(self, cfg: Config, data_dir: Path) -> Config:
        return TASK.resolve_config(cfg, data_dir)

    def train(self, request: TrainRequest) -> dict[str, Any]:
        return TASK.train(request)


MOE_LM = MoELMTask()
