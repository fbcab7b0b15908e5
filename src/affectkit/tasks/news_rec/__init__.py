"""Task ``news-rec``: news recommendation from a global user-news graph and stage-wise local
temporal preference (an LSTM and a self-attention branch over per-stage graph encodings), after
"Modeling Stage-wise Evolution of User Interests for News Recommendation" (Cheng et al., WWW 2026;
arXiv 2603.10471; no public code: a SEIN-style reimplementation from the abstract, spec 2.3), with
the exact MIND scorer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectkit.core.task import RecipeTask, flag, lazy
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

    make_data = lazy("affectkit.tasks.news_rec.synth:make")

    def data_stats(self, data_dir: Path, cfg: NewsRecConfig) -> dict[str, Any]:
        from affectkit.tasks.news_rec.recipe import statistics_of

        return statistics_of(cfg, data_dir)

    resolve_config = lazy("affectkit.tasks.news_rec.train:resolve")
    train = lazy("affectkit.tasks.news_rec.recipe:train_run")
    evaluate = lazy("affectkit.tasks.news_rec.recipe:evaluate_request")
    predict = lazy("affectkit.tasks.news_rec.recipe:predict_run")
    bench = lazy("affectkit.tasks.news_rec.bench:run_bench", with_task=True)


TASK = NewsRecTask()
