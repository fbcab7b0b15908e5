"""vc-soup: value-consistency filtering of preference data, per-value DPO policies, weight soups and
their Pareto front (Xu et al., "VC-Soup", WWW 2026, arXiv 2603.18113)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from affectkit.core.task import EvaluateRequest, MetricSpec, RecipeTask, TaskVerb, TrainRequest, lazy
from affectkit.tasks.vc_soup.config import Config


class VCSoupTask(RecipeTask):
    name = "vc-soup"
    summary = "Value-consistency filtering of preference pairs, per-value DPO policies, weight soups, Pareto front"
    verbs = ("data", "train", "evaluate", "bench")
    commands = (
        TaskVerb("filter-prefs", "affectkit.tasks.vc_soup.cli:filter_prefs_app",
                 "Score, z-normalise and keep value-consistent preference pairs (vc-soup)."),
        TaskVerb("merge", "affectkit.tasks.vc_soup.cli:merge_app",
                 "Merge policies linearly (soups), mergekit-compatible (vc-soup)."),
    )
    Config = Config
    max_steps_key = "dpo.steps"
    data_version = 1  # bump when synth.py's output changes (the cache keys the embedded data by it)
    metrics = (
        MetricSpec("hv_ref_policy", True, "hypervolume of the soup front over the reference policy's rewards"),
        MetricSpec("barrier_worst", False, "worst per-value reward barrier along the merge path (LMC)"),
        MetricSpec("n_pareto", True, "non-dominated grid points"),
    )

    def make_data(self, out: Path, seed: int, quick: bool) -> dict[str, Any]:
        from affectkit.tasks.vc_soup.synth import make_benchmark

        return make_benchmark(Path(out), seed, quick)

    def train(self, request: TrainRequest) -> dict[str, Any]:
        """``affectkit train vc-soup``: filter, warm up the reference, one DPO policy per value."""
        from affectkit.tasks.vc_soup.train import train_policies

        return train_policies(request.cfg, Path(request.data_dir), request.run.path, request.seed, request.output,
                              resume=request.resume)

    def evaluate(self, request: EvaluateRequest) -> dict[str, Any]:
        """``affectkit evaluate vc-soup --run RUN``: the soup grid, Pareto set, hypervolume, barrier, PNG."""
        from affectkit.core.errors import UsageError
        from affectkit.core.runs import atomic_write_json
        from affectkit.tasks.vc_soup.soup_eval import evaluate_policies

        run = request.run
        if run is None:
            raise UsageError("--run is required", "pass the --out of `affectkit train vc-soup`")
        data = request.data_dir or Path(run.meta().get("data_dir", ""))
        result = evaluate_policies(request.cfg, Path(data), run.path, run.path)
        atomic_write_json(run.path / "soup_eval.json", result)
        return {"run_dir": str(run.path), "metrics": {k: result[k] for k in ("hv_ref_policy", "n_pareto", "barrier_worst") if k in result},
                **result}

    bench = lazy("affectkit.tasks.vc_soup.bench:run_bench")


TASK = VCSoupTask()
