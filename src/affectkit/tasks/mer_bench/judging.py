"""`affectkit judge-memes`: sample the benchmark, judge every (row, system) pair once, record it all.

Run directory::

    OUT/config.yaml      resolved JudgeConfig (no API key: only the name of its variable)
    OUT/meta.json        versions, argv, judge identity, benchmark paths
    OUT/pruning.json     rows dropped for missing files, per system
    OUT/plan.json        the sampling plan: view, strata, runs -> [[id, system], ...]
    OUT/judgments.jsonl  one record per unique (id, system): a judgment or a failure record
    OUT/ledger.json      calls, HTTP attempts, cache hits, tokens and cost of the whole run (every
                     record of judgments.jsonl, so it counts across --resume and kills)

Each finished record is written to the cache (committed) and appended to judgments.jsonl (fsynced)
before the next one, so a killed run loses at most the in-flight requests; ``--resume`` skips every
recorded pair and takes cached ones from the cache without a call. ``judge.deadline_s`` stops the
run cleanly at a wall-clock limit: the in-flight requests are given up, what was recorded stays, and
``--resume`` continues. Every image is checked to be one before the first request.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from affectkit.core.cache import task_cache
from affectkit.core.config import to_yaml
from affectkit.core.errors import DataError, UsageError
from affectkit.core.output import Output, get_output
from affectkit.core.runs import RunDir, atomic_write_json, atomic_write_text
from affectkit.tasks.mer_bench.backends import JudgeBackend, Outcome, Sample
from affectkit.tasks.mer_bench.config import JudgeConfig
from affectkit.tasks.mer_bench.data import FACTORS, Bench, check_image, filter_rows, load_bench
from affectkit.tasks.mer_bench.judge_cache import JudgeCache, cache_key, sha256_file
from affectkit.tasks.mer_bench.prompts import SYSTEM_PROMPT, user_text
from affectkit.tasks.mer_bench.schema import SCHEMA_NAME, judgment_schema, schema_hash

JUDGMENTS = "judgments.jsonl"
PLAN = "plan.json"


# ---- sampling (the reference's RNG semantics) --------------------------------------------------


def sample_rows(rows: list[dict[str, str]], k: int, rng: random.Random) -> list[dict[str, str]]:
    """k rows without replacement when there are enough, else k draws with replacement."""
    if k <= 0 or not rows:
        return []
    if len(rows) >= k:
        return rng.sample(list(rows), k=k)
    return [rng.choice(list(rows)) for _ in range(k)]


def allocate_quota(total: int, n: int, rng: random.Random) -> list[int]:
    """Split ``total`` evenly over ``n`` buckets; the remainder goes to randomly chosen buckets."""
    if n <= 0:
        return []
    base, rem = divmod(total, n)
    q = [base] * n
    if rem:
        idx = list(range(n))
        rng.shuffle(idx)
        for i in idx[:rem]:
            q[i] += 1
    return q


def draw_runs(rows: list[dict[str, str]], systems: list[str], view: str, runs: int, sample: int,
              seed: int) -> list[list[tuple[str, str]]]:
    """Per run, the (id, system) pairs to score. One RNG seeded once, so runs differ."""
    if sample <= 0:  # every row, every system, once
        return [[(r["id"], s) for r in rows for s in systems]]
    rng = random.Random(seed)
    plan = []
    for _ in range(runs):
        if view == "model":
            batch = sample_rows(rows, sample, rng)
            plan.append([(r["id"], s) for r in batch for s in systems])
        else:
            pairs = []
            for s, q in zip(systems, allocate_quota(sample, len(systems), rng), strict=False):
                pairs.extend((r["id"], s) for r in sample_rows(rows, q, rng))
            plan.append(pairs)
    return plan


def _read_plan(path: Path) -> dict[str, Any]:
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"invalid JSON ({getattr(exc, 'msg', exc)})",
                        "the run directory was damaged: start again with --overwrite") from None
    if not isinstance(plan, dict):
        raise DataError(path, "expected a JSON object (the sampling plan)")
    return plan


def make_plan(rows: list[dict[str, str]], systems: list[str], cfg: JudgeConfig) -> dict[str, Any]:
    if cfg.runs < 1:
        raise UsageError(f"--runs {cfg.runs}: must be at least 1")
    if cfg.sample < 0:
        raise UsageError(f"--sample {cfg.sample}: must be 0 (all rows) or positive")
    strata: list[tuple[str, dict[str, str | None]]] = [("all", {})]
    if cfg.stratify:
        if cfg.view != "factor":
            raise UsageError("--stratify needs --view factor", "Table 3 is the factor view per stratum")
        strata = [(f"{f}={v}", {f: v}) for f in FACTORS for v in sorted({r[f] for r in rows})]
    out = []
    for name, filters in strata:
        srows = filter_rows(rows, filters) if filters else rows
        out.append({"name": name, "filters": filters, "n_rows": len(srows),
                    "runs": [[list(p) for p in run] for run in draw_runs(srows, systems, cfg.view, cfg.runs, cfg.sample, cfg.seed)]})
    return {"view": cfg.view, "runs": cfg.runs, "sample": cfg.sample, "seed": cfg.seed, "systems": systems, "strata": out}


# ---- backends and keys -------------------------------------------------------------------------


def make_backend(cfg: JudgeConfig, seed: int = 0) -> JudgeBackend:
    if cfg.backend == "rules":
        from affectkit.tasks.mer_bench.baselines import RulesBackend

        return RulesBackend(cfg)
    if cfg.backend == "openai":
        from affectkit.tasks.mer_bench.transport import OpenAIBackend

        return OpenAIBackend(cfg, seed=seed)
    if cfg.backend == "hf":
        from affectkit.tasks.mer_bench.hf_judge import HFBackend

        return HFBackend(cfg)
    raise UsageError(f"unknown judge {cfg.backend!r}", "choose openai, hf or rules")


def default_cache_path() -> Path:
    """The judge cache under the one affectkit cache root: ``$AFFECTKIT_CACHE/mer-bench/judge.sqlite3``."""
    return task_cache("mer-bench") / "judge.sqlite3"


def sample_key(backend: JudgeBackend, cfg: JudgeConfig, sample: Sample, hashes: dict[Path, str]) -> str:
    for p in (sample.src_path, sample.gen_path):
        if p not in hashes:
            hashes[p] = sha256_file(p)
    schema = judgment_schema(cfg.rationale_first)
    row = sample.row
    parts = {
        "judge": backend.identity,
        "settings": backend.settings(),
        "schema": [SCHEMA_NAME, schema_hash(schema)],
        "system_prompt": cache_key({"t": SYSTEM_PROMPT}),
        "user_text": cache_key({"t": user_text(row, cfg.include_reference)}),
        "layout": {"rationale_first": cfg.rationale_first, "images_first": cfg.images_first,
                   "include_reference": cfg.include_reference},
        "sample_id": sample.sample_id,
        "emotions": [row["det_emo"], row["tgt_emo"]],
        "captions": [row["text"], row["pos_txt"], sample.caption],
        "instruction": row["spec"],
        "images": [hashes[sample.src_path], hashes[sample.gen_path]],
    }
    return cache_key(parts)


# ---- the run -----------------------------------------------------------------------------------


RECORD_FIELDS: tuple[str, ...] = ("key", "id", "system", "status")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of judgments.jsonl; a last line cut by a kill is dropped, any other damaged line is a
    DataError naming the file and the line (it would otherwise be lost without a word)."""
    if not path.is_file():
        return []
    lines = path.read_bytes().split(b"\n")
    hint = "the file was damaged or edited: restore it, or start the run again with --overwrite"
    records = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            if not any(rest.strip() for rest in lines[i + 1 :]):
                break  # the last line, cut by a kill
            raise DataError(path, f"line {i + 1}: invalid JSON", hint) from None
        if not isinstance(rec, dict) or any(f not in rec for f in RECORD_FIELDS):
            raise DataError(path, f"line {i + 1}: not a judgment record (needs {', '.join(RECORD_FIELDS)})", hint)
        records.append(rec)
    return records


def first_failure(records: list[dict[str, Any]]) -> str | None:
    """One line on the first failure record: its kind and what went wrong."""
    for r in records:
        if r.get("status") == "ok":
            continue
        why = ""
        errors = r.get("errors") or []
        if errors and isinstance(errors[0], dict):
            why = str(errors[0].get("message", ""))
        log = r.get("attempt_log") or []
        if not why and log and isinstance(log[-1], dict):
            why = str(log[-1].get("detail", ""))
        kind = r.get("error_kind") or "unknown"
        text = f"{kind}: {why}" if why else str(kind)
        return " ".join(text.split())[:300] + f" (id {r.get('id')!r}, system {r.get('system')!r})"
    return None


class Ledger:
    def __init__(self, prices: dict[str, float] | None = None):
        self.prices = prices
        self.data: dict[str, Any] = {"samples": 0, "calls": 0, "http_attempts": 0, "cache_hits": 0, "failures": 0,
                                     "input_tokens": 0, "cached_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}

    def add(self, out: Outcome, cached: bool) -> None:
        d = self.data
        d["samples"] += 1
        d["failures"] += out.status != "ok"
        if cached:
            d["cache_hits"] += 1
            return
        d["calls"] += 1
        d["http_attempts"] += out.http_calls
        for k in ("input_tokens", "cached_tokens", "output_tokens"):
            d[k] += int(out.usage.get(k, 0))
        if self.prices:
            from affectkit.tasks.mer_bench.transport import cost_usd

            d["cost_usd"] += cost_usd(out.usage, self.prices)


def ledger_of(records: list[dict[str, Any]], prices: dict[str, float] | None) -> dict[str, Any]:
    """The ledger of a run from its records: every call it made, across --resume and kills."""
    ledger = Ledger(prices)
    for rec in records:
        ledger.add(Outcome.from_dict(rec), bool(rec.get("cached")))
    return ledger.data


def _append(fh: Any, record: dict[str, Any], fsync: bool = False) -> None:
    """One line per record, flushed to the OS at once (a killed process loses nothing it wrote);
    ``fsync`` also forces it to disk (power loss), at a cost per record."""
    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    fh.flush()
    if fsync:
        os.fsync(fh.fileno())


def judge(
    cfg: JudgeConfig,
    bench: str | Path,
    systems: list[str] | None,
    out: str | Path | None,
    *,
    index: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    output: Output | None = None,
) -> dict[str, Any]:
    """Judge a benchmark; returns the summary (also written to OUT/ledger.json)."""
    started = time.monotonic()
    output = output or get_output()
    if cfg.concurrency < 1:
        raise UsageError(f"--concurrency {cfg.concurrency}: must be at least 1")
    if cfg.max_attempts < 1:
        raise UsageError(f"max_attempts {cfg.max_attempts}: must be at least 1")
    b: Bench = load_bench(bench, systems, index)
    rep = b.pruning
    if rep["dropped"]:
        output.warn(f"dropped {rep['dropped']} of {rep['total']} rows with missing files "
                    f"(source {rep['missing_source']}, by system {rep['missing_by_system']}); see pruning.json")
    filters = {f: (getattr(cfg, f) or None) for f in FACTORS}
    rows = filter_rows(b.rows, filters)
    if not rows:
        raise UsageError("no row left after the filters", "drop --visual-type/--sentiment-polarity/--layout-type")
    plan = make_plan(rows, b.systems, cfg)
    unique: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for stratum in plan["strata"]:
        for run in stratum["runs"]:
            for rid, s in run:
                if (rid, s) not in seen:
                    seen.add((rid, s))
                    unique.append((rid, s))
    by_id = b.by_id()
    samples = [Sample(by_id[rid], s, b.src_path(by_id[rid]), b.gen_path(s, by_id[rid]), b.captions[s].get(by_id[rid]["gen_id"]))
               for rid, s in unique]
    checked: set[Path] = set()
    for smp in samples:  # nothing but images ever reaches a judge
        for p in (smp.src_path, smp.gen_path):
            if p not in checked:
                check_image(p)
                checked.add(p)
    backend = make_backend(cfg, seed=cfg.seed)
    cache = JudgeCache(cfg.cache or default_cache_path()) if cfg.use_cache else None
    hashes: dict[Path, str] = {}
    keys = [sample_key(backend, cfg, s, hashes) for s in samples]

    if dry_run:
        hits = 0
        if cache is not None and not cfg.force_refresh:
            hits = sum(cache.get(k, cfg.return_cached_errors) is not None for k in keys)
            cache.close()
        summary = {"dry_run": True, "judge": backend.identity, "rows": len(rows), "systems": b.systems,
                   "unique_pairs": len(samples), "cache_hits": hits, "calls_needed": len(samples) - hits,
                   "plan_items": sum(len(r) for st in plan["strata"] for r in st["runs"]), "pruning": rep}
        if out is None:
            return summary
        summary["out"] = str(out)
        return summary
    if out is None:
        raise UsageError("--out is required (except with --dry-run)")

    run = RunDir.open(out, resume=resume, overwrite=overwrite)
    jpath = run.path / JUDGMENTS
    done: dict[str, dict[str, Any]] = {}
    if resume:
        old_plan = run.path / PLAN
        if old_plan.is_file() and _read_plan(old_plan).get("strata") != plan["strata"]:
            raise UsageError(f"{run.path}: the sampling plan differs from the interrupted run",
                             "resume with the same benchmark, systems, view, runs, sample and seed")
        records = read_records(jpath)
        for rec in records:
            done.setdefault(rec["key"], rec)
        # rewrite without a cut last line and without duplicates
        atomic_write_text(jpath, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done.values()))
    cfg_yaml = to_yaml(cfg)
    run.write_config(cfg_yaml)
    run.write_meta(cfg.seed, {"judge": backend.identity, "bench": str(b.root), "index": str(b.index_path),
                              "systems": b.systems, "cache": str(cache.path) if cache is not None else None})
    atomic_write_json(run.path / "pruning.json", rep)
    atomic_write_json(run.path / PLAN, plan)

    prices = backend.prices
    ledger = Ledger(prices)  # this session's, for the progress bar; ledger.json counts every record
    ledger_path = run.path / "ledger.json"
    stopped: str | None = None
    todo: list[tuple[Sample, str]] = []
    recorded = 0
    t0 = time.perf_counter()
    with open(jpath, "a", encoding="utf-8") as fh:

        def record(sample: Sample, key: str, outcome: Outcome, cached: bool) -> None:
            rec = {
                "key": key, "id": sample.row["id"], "system": sample.system, "judge": backend.identity,
                "det_emo": sample.row["det_emo"], "tgt_emo": sample.row["tgt_emo"],
                **{f: sample.row[f] for f in FACTORS}, "cached": cached, **outcome.to_dict(),
            }
            _append(fh, rec)
            ledger.add(outcome, cached)

        with output.progress(f"judging ({backend.identity})", total=len(samples)) as bar:
            for s, k in zip(samples, keys, strict=False):
                if k in done:
                    bar.advance()
                    continue
                hit = cache.get(k, cfg.return_cached_errors) if cache is not None and not cfg.force_refresh else None
                if hit is not None:
                    record(s, k, Outcome.from_dict(hit), cached=True)
                    done[k] = {}
                    recorded += 1
                    bar.advance()
                else:
                    todo.append((s, k))

            def past_deadline() -> bool:
                return cfg.deadline_s > 0 and time.monotonic() - started >= cfg.deadline_s

            async def main() -> None:
                # a local model generates one sample at a time; HTTP judges fan out
                sem = asyncio.Semaphore(1 if backend.kind == "hf" else cfg.concurrency)
                nonlocal recorded, stopped

                async def one(s: Sample, k: str) -> None:
                    nonlocal recorded, stopped
                    async with sem:
                        if past_deadline():  # not started: left for --resume
                            stopped = "deadline"
                            return
                        outcome = await backend.judge(s)
                    if cache is not None:
                        cache.put(k, outcome.to_dict(), is_error=outcome.status != "ok")
                    record(s, k, outcome, cached=False)
                    recorded += 1
                    bar.advance(status=f"failures {ledger.data['failures']}")

                tasks = [asyncio.create_task(one(s, k)) for s, k in todo]
                timeout = None if cfg.deadline_s <= 0 else max(0.0, cfg.deadline_s - (time.monotonic() - started))
                finished, pending = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_EXCEPTION)
                for t in pending:  # the deadline (or another task's error) gives up on the requests in flight
                    t.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
                for t in finished:
                    if not t.cancelled() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
                if pending:
                    stopped = "deadline"

            try:
                if todo:
                    backend.preflight()
                    asyncio.run(main())
            finally:
                backend.close()
                if cache is not None:
                    cache.close()
    elapsed = time.perf_counter() - t0
    records = read_records(jpath)
    led = ledger_of(records, prices)
    n_ok = sum(r["status"] == "ok" for r in records)
    kinds: dict[str, int] = {}
    for r in records:
        if r["status"] != "ok":
            kinds[r.get("error_kind") or "unknown"] = kinds.get(r.get("error_kind") or "unknown", 0) + 1
    summary = {
        "run_dir": str(run.path), "judge": backend.identity, "systems": b.systems, "view": cfg.view,
        "rows": len(rows), "pruned": rep["dropped"], "unique_pairs": len(samples), "n_ok": n_ok,
        "n_total": len(records), "failure_kinds": kinds, "first_failure": first_failure(records), "ledger": led,
        "elapsed_s": round(elapsed, 3), "stopped": stopped, "not_judged": len(samples) - len(records),
        "price_per_1m": prices, "config": asdict(cfg),
    }
    atomic_write_json(ledger_path, led)
    if led["failures"] and not resume:
        output.warn(f"{led['failures']} sample(s) ended as failure records: {kinds}")
    if stopped == "deadline":
        output.warn(f"deadline of {cfg.deadline_s:g} s reached: {len(records)} of {len(samples)} pairs recorded, "
                    f"{len(samples) - len(records)} left; continue with --resume --out {run.path}")
    return summary
