"""Issue 16 for mer-bench: confined index paths, images checked before they are sent, a run that judged
nothing fails, bounded time per sample and per run, a ledger across --resume, the reference's scoring
in compat mode, one-line errors for corrupt inputs and declared config ranges."""

from __future__ import annotations

import json
import math
import shutil
import socket
import time
from pathlib import Path

import pytest
from tests.cli.helpers import invoke, one_error

from affectkit.core.errors import DataError, RunFailure
from affectkit.core.output import Output
from affectkit.tasks.mer_bench.config import JudgeConfig
from affectkit.tasks.mer_bench.judging import judge, read_records
from affectkit.tasks.mer_bench.loopback import Reply, ScriptedServer, valid_judgment
from affectkit.tasks.mer_bench.method import extract_metrics
from affectkit.tasks.mer_bench.metrics import score_plan

QUIET = Output(quiet=True)
OK = json.dumps(valid_judgment())


def error_lines(r) -> list[str]:
    return [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]


def assert_one_error(r, code: int, *needles: str) -> str:
    assert "Traceback" not in r.stdout, r.stdout
    return one_error(r.exit_code, r.stderr, *needles, code=code)


def openai_args(server: ScriptedServer) -> list[str]:
    return ["--judge", "openai", "--model", "scripted-vlm", "--base-url", server.base_url,
            "--set", "judge.backoff_base_s=0"]


@pytest.fixture
def bench(bench1: Path, tmp_path: Path) -> Path:
    """A private copy of the one-meme benchmark, to damage."""
    d = tmp_path / "bench"
    shutil.copytree(bench1, d)
    return d


def edit_index(bench: Path, **fields: str) -> Path:
    path = bench / "index_final.json"
    rows = json.loads(path.read_text())
    rows[0].update(fields)
    path.write_text(json.dumps(rows))
    return path


# ---- 1. paths from the index stay inside the benchmark; only images are sent --------------------


@pytest.mark.parametrize("field,value", [
    ("id", "/etc/hostname"),
    ("id", "../outside.png"),
    ("gen_id", "../../../outside.png"),
    ("gen_id", "sub/../../x.png"),
])
def test_index_path_outside_root_is_refused_before_any_request(bench: Path, tmp_path: Path, field: str, value: str) -> None:
    shutil.copy(bench / "Original" / "5.png", tmp_path / "outside.png")  # a real image, still outside the root
    edit_index(bench, **{field: value})
    with ScriptedServer(responder=lambda b: Reply(content=OK)) as server:
        t0 = time.time()
        r = invoke("judge-memes", "--bench", str(bench), *openai_args(server), "--out", str(tmp_path / "run"))
        assert len(server.requests) == 0
    assert time.time() - t0 < 10
    assert_one_error(r, 2, "index_final.json", "row 0", repr(value))
    assert not (tmp_path / "run").exists()


def test_symlink_out_of_the_root_is_refused_before_any_request(bench: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    shutil.copy(bench / "Original" / "5.png", secret)
    (bench / "Original" / "5.png").unlink()
    (bench / "Original" / "5.png").symlink_to(secret)
    with ScriptedServer(responder=lambda b: Reply(content=OK)) as server:
        r = invoke("judge-memes", "--bench", str(bench), *openai_args(server), "--out", str(tmp_path / "run"))
        assert len(server.requests) == 0
    err = assert_one_error(r, 2, "index_final.json", "row 0", "'5.png'", "outside the benchmark root")
    assert str(secret) in err


def test_non_image_is_refused_before_any_request(bench: Path, tmp_path: Path) -> None:
    target = bench / "EditedResults" / "full-edit" / "5.png"
    target.write_bytes(b"PRIVATE KEY material, not an image\n" * 20)
    with ScriptedServer(responder=lambda b: Reply(content=OK)) as server:
        r = invoke("judge-memes", "--bench", str(bench), *openai_args(server), "--out", str(tmp_path / "run"))
        assert len(server.requests) == 0
    assert_one_error(r, 2, str(target), "not an image")


# ---- 2. nothing judged is a failure; time per sample and per run is bounded --------------------


def test_every_judgment_failed_exits_1(bench: Path, tmp_path: Path) -> None:
    with ScriptedServer(responder=lambda b: Reply(content="no JSON today")) as server:
        r = invoke("judge-memes", "--bench", str(bench), *openai_args(server), "--set", "judge.max_attempts=2",
                   "--out", str(tmp_path / "run"))
        assert len(server.requests) == 2
    assert_one_error(r, 1, "nothing was judged", "all 1 judgment(s) failed", "parse_error")
    assert json.loads((tmp_path / "run" / "ledger.json").read_text())["failures"] == 1


class SilentServer:
    """Accepts connections (the kernel's backlog does) and never answers."""

    def __enter__(self) -> SilentServer:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def silent_cfg(server: SilentServer, **kw: object) -> JudgeConfig:
    cfg = JudgeConfig(backend="openai", backoff_base_s=0.0, **{"concurrency": 4, **kw})
    cfg.openai.base_url, cfg.openai.model = server.base_url, "m"
    return cfg


def test_silent_server_read_timeout_bounds_each_attempt(bench1: Path, tmp_path: Path) -> None:
    with SilentServer() as server:
        cfg = silent_cfg(server, max_attempts=3)
        cfg.openai.read_timeout_s = 0.2
        t0 = time.time()
        s = judge(cfg, bench1, None, tmp_path / "run", output=QUIET)
        took = time.time() - t0
    assert took < 4, took  # 3 attempts of 0.2 s
    recs = read_records(tmp_path / "run" / "judgments.jsonl")
    assert len(recs) == 1 and recs[0]["error_kind"] == "read_timeout" and recs[0]["attempts"] == 3
    assert s["n_ok"] == 0 and s["first_failure"].startswith("read_timeout: no answer within 0.2 s")


def test_silent_server_sample_budget_bounds_all_attempts(bench1: Path, tmp_path: Path) -> None:
    with SilentServer() as server:
        cfg = silent_cfg(server, max_attempts=7, sample_timeout_s=0.5)  # read timeout stays 120 s
        t0 = time.time()
        judge(cfg, bench1, None, tmp_path / "run", output=QUIET)
        took = time.time() - t0
    assert took < 3, took
    recs = read_records(tmp_path / "run" / "judgments.jsonl")
    assert len(recs) == 1 and recs[0]["error_kind"] == "timeout" and recs[0]["attempts"] == 1


def test_silent_server_stops_the_run_after_three_silent_samples(bench4: Path, tmp_path: Path) -> None:
    with SilentServer() as server:
        cfg = silent_cfg(server, max_attempts=2, concurrency=1)
        cfg.openai.read_timeout_s = 0.2
        t0 = time.time()
        with pytest.raises(RunFailure, match="accepted connections but answered none"):
            judge(cfg, bench4, None, tmp_path / "run", output=QUIET)  # 16 samples: would take 16 x 0.4 s
        took = time.time() - t0
    assert took < 4, took
    assert len(read_records(tmp_path / "run" / "judgments.jsonl")) == 2  # the third raised before it was recorded


def test_silent_server_cli_ends_within_seconds_exit_1(bench: Path, tmp_path: Path) -> None:
    with SilentServer() as server:
        t0 = time.time()
        r = invoke("judge-memes", "--bench", str(bench), "--judge", "openai", "--model", "m", "--base-url", server.base_url,
                   "--set", "judge.openai.read_timeout_s=0.3", "--set", "judge.sample_timeout_s=1",
                   "--set", "judge.backoff_base_s=0", "--out", str(tmp_path / "run"))
        took = time.time() - t0
    assert took < 6, took
    assert_one_error(r, 1, "nothing was judged", "timeout: no answer within")


def test_deadline_stops_cleanly_and_resume_continues(bench4: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with ScriptedServer(responder=lambda b: Reply(content=OK), latency_s=0.3) as server:
        t0 = time.time()  # one request at a time: the whole run would take 16 x 0.3 s
        r = invoke("judge-memes", "--bench", str(bench4), *openai_args(server), "--concurrency", "1", "--no-cache",
                   "--deadline", "1.5", "--out", str(out))
        took = time.time() - t0
        assert r.exit_code == 0, r.stderr
        assert took < 4, took
        assert "Warning: deadline of 1.5 s reached" in r.stderr and "--resume" in r.stderr
        first = read_records(out / "judgments.jsonl")
        assert 1 <= len(first) < 16
        r = invoke("--json", "judge-memes", "--bench", str(bench4), *openai_args(server), "--concurrency", "4",
                   "--no-cache", "--out", str(out), "--resume")
        assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    after = read_records(out / "judgments.jsonl")
    assert len({x["key"] for x in after}) == len(after) == 16 and summary["stopped"] is None
    assert {x["key"]: x for x in after}.keys() >= {x["key"] for x in first}
    # the ledger counts every call of the run, before and after the deadline
    assert summary["ledger"]["calls"] == 16 == json.loads((out / "ledger.json").read_text())["calls"]


def test_deadline_before_any_judgment_exits_1(bench: Path, tmp_path: Path) -> None:
    with ScriptedServer(responder=lambda b: Reply(content=OK), latency_s=2.0) as server:
        t0 = time.time()
        r = invoke("judge-memes", "--bench", str(bench), *openai_args(server), "--deadline", "0.3",
                   "--out", str(tmp_path / "run"))
        assert time.time() - t0 < 2
    assert_one_error(r, 1, "nothing was judged", "deadline of 0.3 s")


# ---- 3. the ledger counts the whole run across --resume ------------------------------------------


def test_ledger_counts_all_calls_across_resume_after_a_kill(bench4: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = JudgeConfig(backend="openai", backoff_base_s=0.0, concurrency=4, use_cache=False)
    with ScriptedServer(responder=lambda b: Reply(content=OK)) as server:
        cfg.openai.base_url, cfg.openai.model = server.base_url, "scripted-vlm"
        judge(cfg, bench4, None, out, output=QUIET)
        # what a SIGKILL leaves: 6 records, a cut seventh line, no ledger.json
        lines = (out / "judgments.jsonl").read_text().splitlines()
        (out / "judgments.jsonl").write_text("\n".join(lines[:6]) + "\n" + lines[6][:40])
        (out / "ledger.json").unlink()
        n = len(server.requests)
        s = judge(cfg, bench4, None, out, resume=True, output=QUIET)
        assert len(server.requests) - n == 10
    led = json.loads((out / "ledger.json").read_text())
    assert led == s["ledger"]
    assert led["calls"] == led["http_attempts"] == led["samples"] == 16
    assert led["input_tokens"] == 16 * 1000 and led["output_tokens"] == 16 * 200
    # a second --resume with nothing left keeps the count
    with ScriptedServer(responder=lambda b: Reply(content=OK)) as server:
        cfg.openai.base_url = server.base_url
        again = judge(cfg, bench4, None, out, resume=True, output=QUIET)
        assert server.requests == []
    assert again["ledger"]["calls"] == 16


# ---- 4. --set evaluate.mer_compat=true reproduces the reference ---------------------------------


def _rec(rid: str, judgment: dict | None, status: str = "ok", **kw: object) -> dict:
    return {"id": rid, "system": "A", "status": status, "tgt_emo": "happy", "judgment": judgment, **kw}


def _plan(*runs: list[str]) -> dict:
    return {"view": "model", "systems": ["A"], "runs": len(runs), "sample": 1, "seed": 0,
            "strata": [{"name": "all", "filters": {}, "runs": [[[rid, "A"] for rid in run] for run in runs]}]}


def test_compat_scores_a_reply_breaking_only_the_other_emotion_rule() -> None:
    broken = valid_judgment(label="happy", score=3)
    broken["overall_emotion_classification"]["other_emotion"] = "joy"  # must be null unless label is "other"
    records = {("1", "A"): _rec("1", valid_judgment(score=5)),
               ("2", "A"): _rec("2", None, status="failed", error_kind="invalid", parsed=broken,
                                errors=[{"code": "other_emotion", "where": "overall_emotion_classification", "message": "x"}])}
    plan = _plan(["1", "2"])
    compat = score_plan(plan, records, compat=True)["strata"]["all"]["groups"]["A"]
    assert compat["coverage"]["n_ok"] == 2
    assert compat["raw_VQS"]["mean"] == pytest.approx(4.0) and compat["raw_OEC"]["mean"] == 1.0
    default = score_plan(plan, records)["strata"]["all"]["groups"]["A"]
    assert default["coverage"]["n_ok"] == 1 and default["coverage"]["failure_kinds"] == {"invalid": 1}
    assert default["raw_VQS"]["mean"] == 5.0


def test_compat_counts_a_boolean_likert_as_its_number() -> None:
    j = valid_judgment(score=4)
    j["visual_assessment"]["generation_quality_1_5"] = True
    j["text_assessment"]["generation_quality_1_5"] = False
    compat = extract_metrics(j, "happy", zero_fill=True)
    assert compat["VQS"] == 1.0 and compat["TQS"] == 0.0 and compat["VEAS"] == 4.0
    default = extract_metrics(j, "happy")
    assert default["VQS"] is None and default["TQS"] is None
    records = {("1", "A"): _rec("1", None, status="failed", error_kind="invalid", parsed=j,
                                errors=[{"code": "structure", "where": "visual_assessment.generation_quality_1_5",
                                         "message": "x"}])}
    scored = score_plan(_plan(["1"]), records, compat=True)["strata"]["all"]["groups"]["A"]
    assert scored["raw_VQS"]["mean"] == 1.0 and scored["raw_TQS"]["mean"] == 0.0
    assert scored["VQS"]["mean"] == 0.0  # unitised: (1 - 1) / 4
    assert math.isnan(score_plan(_plan(["1"]), records)["strata"]["all"]["groups"]["A"]["VQS"]["mean"])


def test_compat_records_zero_for_a_run_with_no_usable_sample() -> None:
    records = {("1", "A"): _rec("1", valid_judgment(score=5, label="happy")),
               ("2", "A"): _rec("2", None, status="failed", error_kind="parse_error", parsed=None)}
    plan = _plan(["1"], ["2"])
    compat = score_plan(plan, records, compat=True)["strata"]["all"]
    g = compat["groups"]["A"]
    assert g["VQS"]["runs"] == 2 and g["VQS"]["mean"] == pytest.approx(0.5)
    assert g["VQS"]["std"] == pytest.approx(math.sqrt(0.5))
    assert compat["per_run"]["A"][1]["raw_VQS"] == 0.0
    assert compat["per_run"]["A"][1]["Overall"] == 0.0 and compat["per_run"]["A"][1]["TA"] == 0.0
    assert g["Overall"]["mean"] == pytest.approx(compat["per_run"]["A"][0]["Overall"] / 2)
    default = score_plan(plan, records)["strata"]["all"]["groups"]["A"]
    assert default["VQS"]["runs"] == 1 and default["VQS"]["mean"] == pytest.approx(1.0)


def test_compat_through_the_cli(tmp_path: Path) -> None:
    broken = valid_judgment(score=2)
    broken["overall_emotion_classification"]["other_emotion"] = "joy"
    records = [_rec("1", valid_judgment(score=4)) | {"key": "k1"},
               _rec("2", None, status="failed", error_kind="invalid", parsed=broken,
                    errors=[{"code": "other_emotion"}]) | {"key": "k2"}]
    (tmp_path / "plan.json").write_text(json.dumps(_plan(["1", "2"])))
    (tmp_path / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    r = invoke("--json", "evaluate", "mer-bench", "--judgments", str(tmp_path), "--set", "evaluate.nonllm=false",
               "--set", "evaluate.mer_compat=true")
    assert r.exit_code == 0, r.stderr
    m = json.loads(r.stdout.strip().splitlines()[-1])["metrics"]
    assert m["A.n_ok"] == 2 and m["A.CF"] == pytest.approx(((4 + 2) / 2 - 1) / 4)  # LC 1 x GM of three equal means
    r = invoke("--json", "evaluate", "mer-bench", "--judgments", str(tmp_path), "--set", "evaluate.nonllm=false")
    m = json.loads(r.stdout.strip().splitlines()[-1])["metrics"]
    assert m["A.n_ok"] == 1 and m["A.CF"] == pytest.approx(0.75)


# ---- 5. corrupt inputs: one Error: line naming the file or option, exit 2 ----------------------


def test_truncated_image_rules_judge(bench: Path, tmp_path: Path) -> None:
    img = bench / "Original" / "5.png"
    img.write_bytes(img.read_bytes()[:200])
    r = invoke("judge-memes", "--bench", str(bench), "--out", str(tmp_path / "run"))
    assert_one_error(r, 2, str(img), "corrupt image")


def test_unidentified_image_rules_judge(bench: Path, tmp_path: Path) -> None:
    img = bench / "Original" / "5.png"
    img.write_bytes(b"\x00\x01 not an image" * 10)
    r = invoke("judge-memes", "--bench", str(bench), "--out", str(tmp_path / "run"))
    assert_one_error(r, 2, str(img), "not an image")
    assert "UnidentifiedImageError" not in r.stderr


def test_corrupt_image_in_evaluate_nonllm(bench: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert invoke("judge-memes", "--bench", str(bench), "--out", str(out)).exit_code == 0
    img = bench / "EditedResults" / "full-edit" / "5.png"
    img.write_bytes(b"GIF89a broken")
    r = invoke("evaluate", "mer-bench", "--judgments", str(out))
    assert_one_error(r, 2, str(img))


def test_corrupt_index_json(bench: Path, tmp_path: Path) -> None:
    index = bench / "index_final.json"
    index.write_text(index.read_text()[:-30])
    r = invoke("judge-memes", "--bench", str(bench), "--out", str(tmp_path / "run"))
    assert_one_error(r, 2, str(index), "invalid JSON")


@pytest.mark.parametrize("damage", ["middle_line", "not_an_object", "plan"])
def test_corrupt_judgments_on_resume_and_evaluate(bench4: Path, tmp_path: Path, damage: str) -> None:
    out = tmp_path / "run"
    assert invoke("judge-memes", "--bench", str(bench4), "--system", "identity", "--out", str(out)).exit_code == 0
    jpath = out / "judgments.jsonl"
    lines = jpath.read_text().splitlines()
    if damage == "middle_line":
        lines[1] = lines[1][:25]
        jpath.write_text("\n".join(lines) + "\n")
        named, needle = jpath, "line 2: invalid JSON"
    elif damage == "not_an_object":
        lines[0] = "5"
        jpath.write_text("\n".join(lines) + "\n")
        named, needle = jpath, "line 1"
    else:
        (out / "plan.json").write_text('{"view": "model", "strata": [')
        named, needle = out / "plan.json", "invalid JSON"
    before = jpath.read_text()
    r = invoke("judge-memes", "--bench", str(bench4), "--system", "identity", "--out", str(out), "--resume")
    assert_one_error(r, 2, str(named), needle)
    assert jpath.read_text() == before  # nothing dropped or rewritten
    r = invoke("evaluate", "mer-bench", "--judgments", str(out))
    assert_one_error(r, 2, str(named))


def test_read_records_drops_only_a_cut_last_line(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    rec = {"key": "k", "id": "1", "system": "A", "status": "ok"}
    p.write_text(json.dumps(rec) + "\n" + json.dumps(rec)[:10])
    assert read_records(p) == [rec]
    p.write_text(json.dumps(rec)[:10] + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(DataError, match="line 1"):
        read_records(p)


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/v1", "http://127.0.0.1:0/v1", "http://127.0.0.1:port/v1",
                                 "http:///v1", "ftp://127.0.0.1:8000/v1"])
def test_bad_base_url(bench: Path, tmp_path: Path, url: str) -> None:
    r = invoke("judge-memes", "--bench", str(bench), "--judge", "openai", "--model", "m", "--base-url", url,
               "--out", str(tmp_path / "run"))
    assert_one_error(r, 2, "--base-url", repr(url))
    assert not (tmp_path / "run").exists()


# ---- 6. declared config ranges -------------------------------------------------------------------


@pytest.mark.parametrize("args,key", [
    (["--concurrency", "0"], "judge.concurrency"),
    (["--runs", "0"], "judge.runs"),
    (["--sample", "-1"], "judge.sample"),
    (["--temperature", "-0.1"], "judge.temperature"),
    (["--deadline", "-5"], "judge.deadline_s"),
    (["--set", "judge.max_attempts=0"], "judge.max_attempts"),
    (["--set", "judge.sample_timeout_s=0"], "judge.sample_timeout_s"),
    (["--set", "judge.openai.read_timeout_s=0"], "judge.openai.read_timeout_s"),
    (["--set", "judge.openai.connect_timeout_s=-1"], "judge.openai.connect_timeout_s"),
    (["--set", "judge.openai.max_tokens=0"], "judge.openai.max_tokens"),
    (["--set", "judge.rules.quality_ref=0"], "judge.rules.quality_ref"),
    (["--set", "judge.backoff_cap_s=-1"], "judge.backoff_cap_s"),
])
def test_out_of_range_judge_config(bench: Path, tmp_path: Path, args: list[str], key: str) -> None:
    r = invoke("judge-memes", "--bench", str(bench), *args, "--out", str(tmp_path / "run"))
    assert_one_error(r, 2, key, "must be")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("setting,key", [("evaluate.soft_floor=0", "evaluate.soft_floor"),
                                         ("evaluate.gm_floor=0", "evaluate.gm_floor"),
                                         ("evaluate.alpha=-1", "evaluate.alpha")])
def test_out_of_range_evaluate_config(tmp_path: Path, setting: str, key: str) -> None:
    r = invoke("evaluate", "mer-bench", "--judgments", str(tmp_path), "--set", setting)
    assert_one_error(r, 2, key, "must be")
