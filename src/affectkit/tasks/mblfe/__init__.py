"""Task ``mblfe``: multi-behavior recommendation with latent factors and an expert network
(Yan, Cheng, Han, Wang, "Latent Factor Modeling with Expert Network for Multi-Behavior
Recommendation", IEEE TKDE 2025; arXiv 2603.18556), as the authors' code implements it, with the
baselines on the same loop and a full-ranking evaluator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectkit.core.task import LoopTask, MetricSpec, flag, lazy
from affectkit.tasks.mblfe.config import MBLFEConfig


@dataclass
class EvaluateOptions:
    split: str | None = flag("--split", "validation | test (default: the split the run selected on).",
                             key="data.eval_split")


class MBLFETask(LoopTask):
    name = "mblfe"
    summary = "MBLFE: gated latent-factor experts over per-behavior LightGCNs (Tmall/Taobao/Yelp), full ranking"
    verbs = ("data", "train", "evaluate", "bench")
    Config = MBLFEConfig
    EvaluateOptions = EvaluateOptions
    data_version = 1  # bump when synth.py's output changes (the cache keys the embedded data by it)
    metrics = (
        MetricSpec("hit@10", True, "share of users with a ground-truth item in the top 10 (HR@10)"),
        MetricSpec("ndcg@10", True, "NDCG@10 over min(|GT|, 10) ideal positions"),
        MetricSpec("hit@20", True, "HR@20"),
        MetricSpec("ndcg@20", True, "NDCG@20"),
        MetricSpec("hit@50", True, "HR@50"),
        MetricSpec("ndcg@50", True, "NDCG@50"),
        MetricSpec("hit@80", True, "HR@80"),
        MetricSpec("ndcg@80", True, "NDCG@80"),
    )

    make_data = lazy("affectkit.tasks.mblfe.synth:make")

    def data_stats(self, data_dir: Path, cfg: MBLFEConfig) -> dict[str, Any]:
        from affectkit.tasks.mblfe.data import load, warn_issues

        ds = load(data_dir, behaviors=cfg.data.behaviors or None, target=cfg.data.target or None, warn=False)
        return {"data_dir": str(data_dir), **warn_issues(ds)}

    resolve_config = lazy("affectkit.tasks.mblfe.train:resolve")
    build_data = lazy("affectkit.tasks.mblfe.train:build_data")
    build_model = lazy("affectkit.tasks.mblfe.train:build_model")

    def after_step(self, model, cfg: MBLFEConfig, step: int) -> None:
        model.clear_cache()

    def train_step(self, model, batch, cfg: MBLFEConfig):
        return model(batch)

    eval_step = lazy("affectkit.tasks.mblfe.train:eval_step")
    evaluate = lazy("affectkit.tasks.mblfe.train:evaluate")
    bench = lazy("affectkit.tasks.mblfe.bench:run_bench", with_task=True)


TASK = MBLFETask()
