"""Task ``news-rec``: news recommendation from a global user-news graph and stage-wise local
temporal preference (an LSTM and a self-attention branch over per-stage graph encodings), after
"Modeling Stage-wise Evolution of User Interests for News Recommendation" (Cheng et al., WWW 2026;
arXiv 2603.10471; no public code: a SEIN-style reimplementation from the abstract, spec 2.3), with
the exact MIND scorer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectkit.core.task import (
    BenchContext,
    BenchResult,
    EvaluateRequest,
    PredictRequest,
    RecipeTask,
    TrainRequest,
    flag,
)
from affectkit.tasks.news_rec.config import METRICS, NewsRecConfig


@dataclass
class EvaluateOptions:
    predictions: Path | None = flag("--predictions", "A prediction.txt to score (with --truth) instead of a run.")
    truth: Path | None = flag("--truth", "truth.txt or a labeled behaviors.tsv, for --predictions.")
    split: str | None = flag("--split", "valid | test: what a run is scored on (default test: the eval_dir split).")


class NewsRecTask(RecipeTask):
    name = "news-rec"
    summary = "SEIN-style news recommendation: global graph + stage-wise LSTM/self-attention (MIND, Adressa)"
    verbs = ("data", "train", "evaluate", "bench", "predict")
    Config = NewsRecConfig
    EvaluateOptions = EvaluateOptions
    max_steps_key = "train.max_steps"
    data_version = 1  # bump when synth.py's output changes (the cache keys the embedded data by it)
    metrics = METRICS

    def make_data(self, out: Path, seed: int, quick: bool) -> dict[str, Any]:
        from affectkit.tasks.news_rec.synth import make

        return make(out, seed, quick)

    def data_stats(self, data_dir: Path, cfg: NewsRecConfig) -> dict[str, Any]:
        from affectkit.tasks.news_rec.recipe import statistics_of

        return statistics_of(cfg, data_dir)

    def resolve_config(self, cfg: NewsRecConfig, data_dir: Path) -> NewsRecConfig:
        from affectkit.tasks.news_rec.train import resolve

        return resolve(cfg, data_dir)

    def train(self, request: TrainRequest) -> dict[str, Any]:
        from affectkit.tasks.news_rec.recipe import train_run

        return train_run(request)

    def evaluate(self, request: EvaluateRequest) -> dict[str, Any]:
        from affectkit.tasks.news_rec.recipe import evaluate_request

        return evaluate_request(request)

    def predict(self, request: PredictRequest) -> dict[str, Any]:
        from affectkit.tasks.news_rec.recipe import predict_run

        return predict_run(request)

    def bench(self, ctx: BenchContext) -> BenchResult:
        from affectkit.tasks.news_rec.bench import run_bench

        return run_bench(self, ctx)


TASK = NewsRecTask()
