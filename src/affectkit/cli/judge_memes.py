"""`affectkit judge-memes`: MER-Bench MLLM-as-a-judge over a benchmark directory."""

from __future__ import annotations

from pathlib import Path

import typer

from affectkit.cli._app import command_errors
from affectkit.cli._common import CONFIG_OPTION, SET_OPTION


def register(app: typer.Typer) -> None:
    app.command("judge-memes", help="Judge edited memes against their sources (MER-Bench) with an MLLM or the offline rules judge.")(judge_memes)


@command_errors
def judge_memes(
    bench: Path = typer.Option(..., "--bench", help="Benchmark directory: index_final.json, Original/, EditedResults/<system>/."),
    system: list[str] | None = typer.Option(None, "--system", help="Editing system folder under EditedResults/ (repeatable; default all)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory for judgments.jsonl, plan.json, ledger.json."),
    judge: str | None = typer.Option(None, "--judge", help="openai | hf | rules (rules: offline heuristic, no model)."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server root, e.g. http://127.0.0.1:8000/v1."),
    model: str | None = typer.Option(None, "--model", help="openai: model name; hf: model directory."),
    api_key_env: str | None = typer.Option(None, "--api-key-env", help="Environment variable holding the API key [OPENAI_API_KEY]."),
    concurrency: int | None = typer.Option(None, "--concurrency", help="Requests in flight [16]."),
    view: str | None = typer.Option(None, "--view", help="model | factor sampling view [model]."),
    runs: int | None = typer.Option(None, "--runs", help="Sampling runs [1; the paper uses 10]."),
    sample: int | None = typer.Option(None, "--sample", help="Rows per run [0 = all rows, one run]."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the row sampler [42]."),
    stratify: bool = typer.Option(False, "--stratify", help="Factor view: one plan per value of each factor (Table 3)."),
    visual_type: str | None = typer.Option(None, "--visual-type", help="Only rows of this visual_type."),
    sentiment_polarity: str | None = typer.Option(None, "--sentiment-polarity", help="Only rows of this sentiment_polarity."),
    layout_type: str | None = typer.Option(None, "--layout-type", help="Only rows of this layout_type."),
    temperature: float | None = typer.Option(None, "--temperature", help="Temperature of the first attempt [0.0]."),
    rationale_first: bool | None = typer.Option(None, "--rationale-first/--rationale-last", help="Rationale key first in every block [first]."),
    images_first: bool | None = typer.Option(None, "--images-first/--text-first", help="Images before the rubric [images first]."),
    cache: Path | None = typer.Option(None, "--cache", help="SQLite cache file [~/.cache/affectkit/mer_bench_judge.sqlite3]."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the cache."),
    force_refresh: bool = typer.Option(False, "--force-refresh", help="Ignore cached judgments (still store new ones)."),
    index: Path | None = typer.Option(None, "--index", help="Index file [BENCH/index_final.json]."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count the calls needed (cache hits excluded); call nothing."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    config: Path | None = CONFIG_OPTION,
    overrides: list[str] | None = SET_OPTION,
) -> None:
    from affectkit.core.config import resolve
    from affectkit.core.errors import UsageError
    from affectkit.core.output import get_output, key_value_table
    from affectkit.tasks.mer_bench import Config
    from affectkit.tasks.mer_bench import judge as run_judge

    output = get_output()
    explicit = {
        "backend": judge, "view": view, "runs": runs, "sample": sample, "seed": seed,
        "visual_type": visual_type, "sentiment_polarity": sentiment_polarity, "layout_type": layout_type,
        "concurrency": concurrency, "temperature": temperature, "rationale_first": rationale_first,
        "images_first": images_first, "cache": str(cache) if cache else None,
        "openai.base_url": base_url, "openai.api_key_env": api_key_env,
    }
    if stratify:
        explicit["stratify"] = True
    if no_cache:
        explicit["use_cache"] = False
    if force_refresh:
        explicit["force_refresh"] = True
    # the task's Config holds judge.* (this verb) and evaluate.* (the evaluate verb), one recipe format
    cfg = resolve(Config, config, overrides or [], {f"judge.{k}": v for k, v in explicit.items()}).judge
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
    shown = {k: v for k, v in summary.items() if k not in ("config", "pruning", "price_per_1m")}
    output.result(summary, human=key_value_table(shown, title="judge-memes"))
    if not dry_run:
        output.log(f"next: affectkit evaluate mer-bench --judgments {summary['run_dir']}")
