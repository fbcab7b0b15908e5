"""Acceptance tests of the openai judge against a scripted server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from affectkit.core.output import Output
from affectkit.tasks.mer_bench.backends import Sample
from affectkit.tasks.mer_bench.config import JudgeConfig
from affectkit.tasks.mer_bench.data import load_bench
from affectkit.tasks.mer_bench.judging import judge, read_records, sample_key
from affectkit.tasks.mer_bench.loopback import Reply, ScriptedServer, valid_judgment
from affectkit.tasks.mer_bench.transport import OpenAIBackend, parse_retry_after, read_usage

QUIET = Output(quiet=True)


def cfg_for(server: ScriptedServer, **kw: object) -> JudgeConfig:
    cfg = JudgeConfig(backend="openai", backoff_base_s=0.0, concurrency=4)
    cfg.openai.base_url = server.base_url
    cfg.openai.model = "scripted-vlm"
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def invalid_fenced() -> str:
    j = valid_judgment(label="other")  # other_emotion null: fails post-validation
    return "```json\n" + json.dumps(j) + "\n```"


def test_retry_sequence_ends_valid_after_six_attempts(bench1: Path, tmp_path: Path) -> None:
    replies = [
        Reply(content="I think the edit is lovely!"),  # garbage
        Reply(content=invalid_fenced()),  # fenced, parses, fails the other_emotion rule
        Reply(status=429, headers={"Retry-After": "0"}),
        Reply(status=500),
        Reply(content="", finish_reason="length"),
        Reply(content=json.dumps(valid_judgment())),
    ]
    with ScriptedServer(replies) as server:
        summary = judge(cfg_for(server), bench1, None, tmp_path / "run", output=QUIET)
        reqs = list(server.requests)
    recs = read_records(tmp_path / "run" / "judgments.jsonl")
    assert len(recs) == 1 and recs[0]["status"] == "ok"
    assert recs[0]["attempts"] == 6 and len(reqs) == 6
    kinds = [a["kind"] for a in recs[0]["attempt_log"]]
    assert kinds == ["parse_error", "invalid", "http_429", "http_500", "truncated", "ok"]
    assert recs[0]["attempt_log"][2]["retry_after"] == 0.0
    assert recs[0]["judgment"] == valid_judgment()
    # truncation doubled the budget of the next request; temperature grows 0.1 per attempt
    assert reqs[4]["max_completion_tokens"] == 900 and reqs[5]["max_completion_tokens"] == 1800
    assert [r["temperature"] for r in reqs] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert summary["n_ok"] == 1 and summary["ledger"]["http_attempts"] == 6
    assert summary["ledger"]["input_tokens"] == 4 * 1000  # four 200 replies carried usage


def test_request_carries_two_images_in_order(bench1: Path, tmp_path: Path) -> None:
    b = load_bench(bench1)
    row = b.rows[0]
    src, gen = b.src_path(row).read_bytes(), b.gen_path("full-edit", row).read_bytes()
    assert src != gen
    for images_first in (True, False):
        with ScriptedServer([Reply(content=json.dumps(valid_judgment()))]) as server:
            judge(cfg_for(server, images_first=images_first), bench1, None, tmp_path / f"r{images_first}",
                  output=QUIET, overwrite=True)
            body = server.requests[0]
        assert body["model"] == "scripted-vlm"
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["strict"] is True
        content = body["messages"][1]["content"]
        images = [p for p in content if p["type"] == "image_url"]
        assert len(images) == 2
        decoded = []
        for p in images:
            url = p["image_url"]["url"]
            assert url.startswith("data:image/png;base64,")
            decoded.append(base64.b64decode(url.split(",", 1)[1]))
        assert decoded == [src, gen]
        first_image = next(i for i, p in enumerate(content) if p["type"] == "image_url")
        rubric = next(i for i, p in enumerate(content) if p["type"] == "text" and "Task:" in p["text"])
        assert (first_image < rubric) == images_first


def test_persistently_malformed_ends_as_failure_record(bench4: Path, tmp_path: Path) -> None:
    def responder(body: dict) -> Reply:
        return Reply(content="sorry, I cannot produce JSON today")

    with ScriptedServer(responder=responder) as server:
        summary = judge(cfg_for(server, max_attempts=3), bench4, ["identity", "blank"], tmp_path / "run", output=QUIET)
        n_calls = len(server.requests)
    recs = read_records(tmp_path / "run" / "judgments.jsonl")
    assert len(recs) == 8 and n_calls == 8 * 3
    for r in recs:
        assert r["status"] == "failed" and r["error_kind"] == "parse_error" and r["attempts"] == 3
        assert r["raw_text"] == "sorry, I cannot produce JSON today"
    assert summary["n_ok"] == 0 and summary["failure_kinds"] == {"parse_error": 8}


def test_api_key_sent_never_stored(bench1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-secret-123")
    with ScriptedServer([Reply(content=json.dumps(valid_judgment()))]) as server:
        cfg = cfg_for(server)
        cfg.openai.api_key_env = "MY_JUDGE_KEY"
        judge(cfg, bench1, None, tmp_path / "run", output=QUIET)
        assert server.headers[0].get("Authorization") == "Bearer sk-secret-123"
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file():
            assert "sk-secret-123" not in f.read_text(errors="ignore")


def test_second_run_makes_no_http_call(bench4: Path, tmp_path: Path) -> None:
    with ScriptedServer(responder=lambda b: Reply(content=json.dumps(valid_judgment()))) as server:
        cfg = cfg_for(server)
        first = judge(cfg, bench4, None, tmp_path / "a", output=QUIET)
        n = len(server.requests)
        second = judge(cfg, bench4, None, tmp_path / "b", output=QUIET)
        assert len(server.requests) == n == 16
    assert first["ledger"]["calls"] == 16 and second["ledger"]["calls"] == 0 and second["ledger"]["cache_hits"] == 16
    a = {r["key"]: r["judgment"] for r in read_records(tmp_path / "a" / "judgments.jsonl")}
    b = {r["key"]: r["judgment"] for r in read_records(tmp_path / "b" / "judgments.jsonl")}
    assert a == b


def test_cache_key_sensitivity(bench1: Path, tmp_path: Path) -> None:
    b = load_bench(bench1)
    row = b.rows[0]
    src = tmp_path / "src.png"
    src.write_bytes(b.src_path(row).read_bytes())
    gen = b.gen_path("full-edit", row)
    base = JudgeConfig(backend="openai")
    base.openai.model = "m1"

    def key(cfg: JudgeConfig, s: Path = src) -> str:
        return sample_key(OpenAIBackend(cfg), cfg, Sample(row, "full-edit", s, gen), {})

    k0 = key(base)
    assert key(base) == k0
    other_model = JudgeConfig(backend="openai")
    other_model.openai.model = "m2"
    warmer = JudgeConfig(backend="openai", temperature=0.7)
    warmer.openai.model = "m1"
    schema_flip = JudgeConfig(backend="openai", rationale_first=False)
    schema_flip.openai.model = "m1"
    moved = JudgeConfig(backend="openai")
    moved.openai.model = "m1"
    moved.openai.base_url = "http://elsewhere:1/v1"  # the URL is not part of the answer
    assert len({k0, key(other_model), key(warmer), key(schema_flip)}) == 4
    assert key(moved) == k0
    data = bytearray(src.read_bytes())
    data[-20] ^= 0xFF
    changed = tmp_path / "src2.png"
    changed.write_bytes(bytes(data))
    assert key(base, changed) != k0


def test_helpers() -> None:
    assert parse_retry_after("0", 20) == 0.0
    assert parse_retry_after("120", 20) == 20
    assert parse_retry_after(None, 20) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 20) == 0.0
    assert read_usage({"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1}}) == \
        {"input_tokens": 5, "output_tokens": 2, "cached_tokens": 1}
    assert read_usage({"input_tokens": 7, "output_tokens": 3}) == {"input_tokens": 7, "output_tokens": 3, "cached_tokens": 0}


def test_cost_ledger(bench1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_PRICE_TABLE_JSON", json.dumps({"scripted-vlm": {"input": 2.0, "cached_input": 0.5, "output": 10.0}}))
    with ScriptedServer([Reply(content=json.dumps(valid_judgment()))]) as server:
        s = judge(cfg_for(server), bench1, None, tmp_path / "run", output=QUIET)
    # (1000 - 100) * 2 + 100 * 0.5 + 200 * 10 per 1M tokens
    assert s["ledger"]["cost_usd"] == pytest.approx((900 * 2 + 100 * 0.5 + 200 * 10) / 1e6)


CHILD = r"""
import sys
from affectkit.core.output import Output
from affectkit.tasks.mer_bench.config import JudgeConfig
from affectkit.tasks.mer_bench.judging import judge
cfg = JudgeConfig(backend="openai", backoff_base_s=0.0, concurrency=2)
cfg.openai.base_url = sys.argv[1]
cfg.openai.model = "scripted-vlm"
judge(cfg, sys.argv[2], None, sys.argv[3], resume=sys.argv[4] == "1", output=Output(quiet=True))
"""


@pytest.mark.slow
def test_sigkill_then_resume_loses_and_duplicates_nothing(bench4: Path, tmp_path: Path) -> None:
    env = {**os.environ, "AFFECTKIT_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    out = tmp_path / "run"
    with ScriptedServer(responder=lambda b: Reply(content=json.dumps(valid_judgment())), latency_s=0.15) as server:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, server.base_url, str(bench4), str(out), "0"], env=env)
        deadline = time.time() + 60
        jpath = out / "judgments.jsonl"
        while time.time() < deadline:
            if jpath.is_file() and len(read_records(jpath)) >= 4:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = read_records(jpath)
        assert 4 <= len(before) < 16, "the kill should land mid-run"
        calls_before = len(server.requests)
        proc2 = subprocess.run([sys.executable, "-c", CHILD, server.base_url, str(bench4), str(out), "1"], env=env, timeout=120)
        assert proc2.returncode == 0
        calls_after = len(server.requests)
    after = read_records(jpath)
    keys = [r["key"] for r in after]
    assert len(keys) == len(set(keys)) == 16  # none lost, none duplicated
    old = {r["key"]: r for r in before}
    for r in after:
        if r["key"] in old:
            assert r["judgment"] == old[r["key"]]["judgment"]
    # finished judgments were not asked again: at most the in-flight ones (concurrency 2) are redone
    assert calls_after - calls_before <= 16 - len(before) + 2


def test_unreachable_server_fails_at_once(bench1: Path, tmp_path: Path) -> None:
    import socket

    from affectkit.core.errors import RunFailure

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    cfg = JudgeConfig(backend="openai")
    cfg.openai.base_url, cfg.openai.model = f"http://127.0.0.1:{port}/v1", "m"
    t0 = time.time()
    with pytest.raises(RunFailure, match="cannot connect"):
        judge(cfg, bench1, None, tmp_path / "run", output=QUIET)
    assert time.time() - t0 < 5


def test_auth_error_stops_the_run_and_400_is_recorded(bench4: Path, tmp_path: Path) -> None:
    from affectkit.core.errors import RunFailure

    with ScriptedServer([Reply(status=401)]) as server, pytest.raises(RunFailure, match="401"):
        judge(cfg_for(server), bench4, None, tmp_path / "a", output=QUIET)
    too_many = Reply(status=400, raw='{"error": {"message": "At most 1 image(s) may be provided in one request."}}')
    with ScriptedServer([too_many]) as server:
        s = judge(cfg_for(server), bench4, ["blank"], tmp_path / "b", output=QUIET)
        assert len(server.requests) == 4  # not retried
    recs = read_records(tmp_path / "b" / "judgments.jsonl")
    assert s["failure_kinds"] == {"http_400": 4}
    assert "--limit-mm-per-prompt" in recs[0]["errors"][0]["message"]


def test_resume_with_another_plan_is_refused(bench4: Path, tmp_path: Path) -> None:
    from affectkit.core.errors import UsageError

    judge(JudgeConfig(backend="rules", runs=2, sample=2, seed=1), bench4, ["identity"], tmp_path / "r", output=QUIET)
    with pytest.raises(UsageError, match="plan differs"):
        judge(JudgeConfig(backend="rules", runs=2, sample=2, seed=2), bench4, ["identity"], tmp_path / "r",
              resume=True, output=QUIET)
    again = judge(JudgeConfig(backend="rules", runs=2, sample=2, seed=1), bench4, ["identity"], tmp_path / "r",
                  resume=True, output=QUIET)
    assert again["n_total"] == len({tuple(p) for run in __import__("json").loads((tmp_path / "r" / "plan.json").read_text())["strata"][0]["runs"] for p in run})
