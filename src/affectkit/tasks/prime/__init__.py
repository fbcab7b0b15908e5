"""Task ``prime``: missing-aware multimodal pretraining for cancer survival prediction (a
reconstruction of PRIME, arXiv 2604.04999; spec 5). Per-modality tokenisers (WSI feature bags, gene
groups, pathology reports) into one token space, a shared prototype bank with patient-level consensus
retrieval of missing modalities, a fusion transformer, label-free pretraining (alignment, imputation
alignment, post-fusion consistency under structured missingness), and downstream survival or
horizon heads by linear probe, LoRA or full fine-tuning, cross-validated; Harrell's and Uno's C, the
integrated Brier score and horizon AUROC as lifelines and scikit-survival define them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from affectkit.core.task import RecipeTask, flag, lazy
from affectkit.tasks.prime.config import METRICS, PrimeConfig


@dataclass
class TrainOptions:
    stage: str | None = flag("--stage", "pretrain | finetune (default pretrain)", key="stage")
    init: str | None = flag("--init", "finetune: the pretraining run to start from", key="finetune.init")
    endpoint: str | None = flag(
        "--endpoint", "finetune: the endpoint to predict (default: the first)", key="finetune.endpoint"
    )
    fold: int | None = flag("--fold", "train this fold only (default: every fold)", key="data.fold")
    missing: str | None = flag(
        "--missing", "drop modalities by a pattern first (mcar30, site, nopairs, ...)", key="data.missing"
    )


@dataclass
class EvaluateOptions:
    predictions: Path | None = flag(
        "--predictions", "score a CSV of case_id, risk, time, event[, fold] instead of a run"
    )
    missing: str | None = flag(
        "--missing", "hide modalities of the test patients by a pattern (mcar50, site, ...)"
    )
    sweep: bool = flag(
        "--sweep", "score every modality subset and 30/50/70 % random missingness", default=False
    )
    km: str | None = flag(
        "--km", "write a Kaplan-Meier plot of the risk groups (median split, log-rank p) here"
    )
    plot: str | None = flag("--plot", "write a bar chart of the missingness sweep here (implies --sweep)")


class PrimeTask(RecipeTask):
    name = "prime"
    summary = "PRIME: missing-aware multimodal pretraining for survival (C-index, Uno C, IBS)"
    verbs = ("data", "train", "evaluate", "bench")
    Config = PrimeConfig
    TrainOptions = TrainOptions
    EvaluateOptions = EvaluateOptions
    max_steps_key = "train.max_steps"
    data_version = 1  # bump when synth.py's output changes (the cache keys the embedded data by it)
    metrics = METRICS

    make_data = lazy("affectkit.tasks.prime.synth:make")
    resolve_config = lazy("affectkit.tasks.prime.layout:apply_dataset_yaml")
    train = lazy("affectkit.tasks.prime.recipe:train_run")
    evaluate = lazy("affectkit.tasks.prime.recipe:evaluate_request")
    bench = lazy("affectkit.tasks.prime.bench:run_bench", with_task=True)


TASK = PrimeTask()
