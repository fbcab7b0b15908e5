"""MER-Bench: meme reappraisal, judged by an MLLM (or an offline rules judge), scored as in the paper.

Nie et al., "MER-Bench: A Comprehensive Benchmark for Multimodal Meme Reappraisal", arXiv 2603.15020.
Plain entry points: ``judge(cfg, bench, systems, out)`` and ``evaluate_judgments(dir, ...)``.

Layout: ``method.py`` the paper's scoring formulas (TA, CF, SS, soft-AND Overall); ``metrics.py``
their aggregation per run and stratum, and the non-LLM metrics; ``baselines.py`` the offline
``rules`` judge; ``data.py`` the released format; ``synth.py`` the embedded benchmark;
``judging.py`` the judge run behind ``judge-memes`` (plan, cache, resume, ledger) with its
backends (``backends.py``, ``transport.py`` openai, ``hf_judge.py``, ``prompts.py``, ``schema.py``,
``judge_cache.py``); ``evaluation.py`` the evaluate verb (judgments in, tables out);
``bench.py`` the protocol; ``cli.py`` the ``judge-memes`` verb.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectkit.core.task import EvaluateRequest, MetricSpec, RecipeTask, TaskVerb, flag, lazy
from affectkit.tasks.mer_bench.config import Config, EvalConfig, JudgeConfig
from affectkit.tasks.mer_bench.evaluation import evaluate_judgments
from affectkit.tasks.mer_bench.judging import judge

__all__ = ["TASK", "Config", "JudgeConfig", "EvalConfig", "judge", "evaluate_judgments"]


@dataclass
class EvaluateOptions:
    judgments: Path | None = flag("--judgments", "A judgments directory (the --out of `affectkit judge-memes`).")


class MerBenchTask(RecipeTask):
    name = "mer-bench"
    summary = "Meme reappraisal benchmark: MLLM-as-a-judge (judge-memes) and Table-2/3 scoring (MER-Bench)"
    verbs = ("data", "evaluate", "bench")
    commands = (TaskVerb("judge-memes", "affectkit.tasks.mer_bench.cli:app",
                         "Judge edited memes against their sources (MER-Bench) with an MLLM or the offline rules judge."),)
    Config = Config
    EvaluateOptions = EvaluateOptions
    metrics = (
        MetricSpec("Overall", True, "soft-AND of TA, CF and SS"),
        MetricSpec("TA", True, "target-affect alignment: hit rate x HM(visual, text emotion accuracy)"),
        MetricSpec("CF", True, "content fidelity: layout consistency x GM(visual, text, overall quality)"),
        MetricSpec("SS", True, "shift strength: 1 - exp(-3 x perceived shift)"),
    )

    def make_data(self, out: Path, seed: int, quick: bool) -> dict[str, Any]:
        from affectkit.tasks.mer_bench.synth import bench_size, make_benchmark

        return make_benchmark(out, seed=seed, n=bench_size(quick))

    bench = lazy("affectkit.tasks.mer_bench.bench:run_bench")

    def evaluate(self, request: EvaluateRequest) -> dict[str, Any]:
        """`affectkit evaluate mer-bench --judgments DIR [--data BENCH] [--config F] [--set evaluate.x=v]`."""
        from affectkit.core.errors import UsageError
        from affectkit.core.output import rows_table

        judgments = request.options.judgments
        if judgments is None:
            raise UsageError("--judgments is required for mer-bench", "pass the --out directory of `affectkit judge-memes`")
        cfg = request.cfg.evaluate
        res = evaluate_judgments(judgments, compat=cfg.mer_compat, alpha=cfg.alpha, soft_floor=cfg.soft_floor,
                                 gm_floor=cfg.gm_floor, bench=request.data_dir, nonllm=cfg.nonllm, use_ocr=cfg.use_ocr)
        request.output.table(rows_table(res["table"], title=f"MER-Bench ({res['view']} view, judge {', '.join(res['judges'])})"))
        metrics: dict[str, Any] = {}
        for stratum, groups in res["scores"].items():
            for g, s in groups.items():
                prefix = g if stratum == "all" else f"{stratum}/{g}"
                for c in ("Overall", "TA", "CF", "SS"):
                    metrics[f"{prefix}.{c}"] = s[c]["mean"]
                metrics[f"{prefix}.n_ok"] = s["coverage"]["n_ok"]
                metrics[f"{prefix}.n_total"] = s["coverage"]["n_total"]
        return {"metrics": metrics, "out": res["out"], "judges": res["judges"], "view": res["view"],
                "table": res["table"], "mer_compat": res["mer_compat"]}


TASK = MerBenchTask()
