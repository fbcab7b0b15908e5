"""The hf backend end to end on a tiny randomly initialised Llava built from a config (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from affectkit.core.output import Output
from affectkit.tasks.mer_bench.config import JudgeConfig
from affectkit.tasks.mer_bench.judging import judge, read_records

pytest.importorskip("transformers")


def test_tiny_vlm_garbage_ends_as_parse_failures(bench1: Path, tmp_path: Path) -> None:
    import torch

    from affectkit.tasks.mer_bench.hf_judge import build_tiny_vlm

    torch.set_num_threads(1)
    model_dir = build_tiny_vlm(tmp_path / "tiny", seed=0)
    cfg = JudgeConfig(backend="hf", max_attempts=2, concurrency=1)
    cfg.hf.model_dir = str(model_dir)
    cfg.hf.max_new_tokens = 24
    cfg.hf.device = "cpu"
    summary = judge(cfg, bench1, None, tmp_path / "run", output=Output(quiet=True))
    recs = read_records(tmp_path / "run" / "judgments.jsonl")
    assert len(recs) == 1 and summary["n_total"] == 1
    r = recs[0]
    assert r["judge"].startswith("hf:") and r["status"] == "failed"
    assert r["error_kind"] in ("parse_error", "invalid") and r["attempts"] == 2
    assert isinstance(r["raw_text"], str)
    # the rerun is a cache hit only when failures are reused; by default a failure is judged again
    cfg.return_cached_errors = True
    again = judge(cfg, bench1, None, tmp_path / "run2", output=Output(quiet=True))
    assert again["ledger"]["cache_hits"] == 1
