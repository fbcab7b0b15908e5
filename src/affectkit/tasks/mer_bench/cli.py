"""mer-bench's own verb, `affectkit judge-memes`: MER-Bench MLLM-as-a-judge over a benchmark
directory. Each flag sets the ``judge.*`` key it names."""

from __future__ import annotations

from pathlib import Path

import typer

from affectkit.cli._app import new_app
from affectkit.cli._common import CONFIG_OPTION, SET_OPTION, key_option, with_config
from affectkit.tasks.mer_bench.config import Config

app = new_app("Judge edited memes (mer-bench).")


@app.command("judge-memes", help="Judge edited memes against their sources (MER-Bench) with an MLLM or the offline rules judge.")
@with_config(Config)
def judge_memes(
    bench: Path = typer.Option(..., "--bench", help="Benchmark directory: index_final.json, Original/, EditedResults/<system>/."),
    system: list[str] | None = typer.Option(None, "--system", help="Editing system folder under EditedResults/ (repeatable; default all)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory for judgments.jsonl, plan.json, ledger.json."),
    judge: str | None = key_option("judge.backend", "--judge", help="openai | hf | rules (rules: offline heuristic, no model)."),
    base_url: str | None = key_option("judge.openai.base_url", "--base-url", help="OpenAI-compatible server root, e.g. http://127.0.0.1:8000/v1."),
    model: str | None = typer.Option(None, "--model", help="openai: model name; hf: model directory."),
    api_key_env: str | None = key_option("judge.openai.api_key_env", "--api-key-env", help="Environment variable holding the API key [OPENAI_API_KEY]."),
    concurrency: int | None = key_option("judge.concurrency", "--concurrency", help="Requests in flight [16]."),
    view: str | None = key_option("judge.view", "--view", help="model | factor sampling view [model]."),
    runs: int | None = key_option("judge.runs", "--runs", help="Sampling runs [1; the paper uses 10]."),
    sample: int | None = key_option("judge.sample", "--sample", help="Rows per run [0 = all rows, one run]."),
    seed: int | None = key_option("judge.seed", "--seed", help="Seed of the row sampler [42]."),
    stratify: bool = key_option("judge.stratify", "--stratify", value=True, help="Factor view: one plan per value of each factor (Table 3)."),
    visual_type: str | None = key_option("judge.visual_type", "--visual-type", help="Only rows of this visual_type."),
    sentiment_polarity: str | None = key_option("judge.sentiment_polarity", "--sentiment-polarity", help="Only rows of this sentiment_polarity."),
    layout_type: str | None = key_option("judge.layout_type", "--layout-type", help="Only rows of this layout_type."),
    temperature: float | None = key_option("judge.temperature", "--temperature", help="Temperature of the first attempt [0.0]."),
    rationale_first: bool | None = key_option("judge.rationale_first", "--rationale-first/--rationale-last", help="Rationale key first in every block [first]."),
    images_first: bool | None = key_option("judge.images_first", "--images-first/--text-first", help="Images before the rubric [images first]."),
    cache: str | None = key_option("judge.cache", "--cache", help="SQLite cache file [$AFFECTKIT_CACHE/mer-bench/judge.sqlite3; AFFECTKIT_CACHE defaults to ~/.cache/affectkit]."),
    no_cache: bool = key_option("judge.use_cache", "--no-cache", value=False, help="Neither read nor write the cache."),
    force_refresh: bool = key_option("judge.force_refresh", "--force-refresh", value=True, help="Ignore cached judgments (still store new ones)."),
    deadline: float | None = key_option("judge.deadline_s", "--deadline", help="Stop the run after SECONDS, keeping what was judged (--resume continues) [0 = none]."),
    index: Path | None = typer.Option(None, "--index", help="Index file [BENCH/index_final.json]."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count the calls needed (cache hits excluded); call nothing."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    config: Path | None = CONFIG_OPTION,
    overrides: list[str] | None = SET_OPTION,
    *,
    cfg: Config,
) -> None:
    from affectkit.core.errors import RunFailure, UsageError
    from affectkit.core.output import get_output, key_value_table
    from affectkit.tasks.mer_bench import judge as run_judge

    output = get_output()
    cfg = cfg.judge  # the task's Config holds judge.* (this verb) and evaluate.* (the evaluate verb)
    if model is not None:
        if cfg.backend == "openai":
            cfg.openai.model = model
        elif cfg.backend == "hf":
            cfg.hf.model_dir = model
        else:
            raise UsageError("--model is not used by the rules judge", "pass --judge openai or --judge hf")
    if cfg.backend == "hf" and not cfg.hf.model_dir:
        raise UsageError("--judge hf needs a model directory", "pass --model PATH")
    if out is None and not dry_run:
        raise UsageError("--out is required", "pass --out DIR (or --dry-run to count calls)")
    summary = run_judge(cfg, bench, list(system) if system else None, out, index=index, resume=resume,
                        overwrite=overwrite, dry_run=dry_run, output=output)
    if not dry_run and summary["n_ok"] == 0:  # an exit status of 0 would say the run worked
        if summary["n_total"] == 0:
            why = (f"the deadline of {cfg.deadline_s:g} s passed before the first judgment finished"
                   if summary.get("stopped") == "deadline" else "no pair was judged")
            hint = f"continue with --resume --out {summary['run_dir']} (a longer --deadline, or 0 for none)"
        else:
            why = f"all {summary['n_total']} judgment(s) failed; first: {summary['first_failure']}"
            hint = (f"the failure records are in {summary['run_dir']}/judgments.jsonl; fix the cause and run again "
                    "with --overwrite (failures are never reused from the cache)")
        raise RunFailure(f"nothing was judged: {why}", hint)
    shown = {k: v for k, v in summary.items() if k not in ("config", "pruning", "price_per_1m")}
    output.result(summary, human=key_value_table(shown, title="judge-memes"))
    if not dry_run:
        output.log(f"next: affectkit evaluate mer-bench --judgments {summary['run_dir']}")
