"""The commands end to end on tiny models: train, quantize, evaluate; usage errors exit 2."""

import json

import pytest
from tests.cli.helpers import invoke, json_lines


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AFFECTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _err(res):
    return res.stderr if hasattr(res, "stderr") else res.output


@pytest.mark.parametrize("args,needle", [
    (["quantize", "mixtral", "--bits", "auto", "--out", "x"], "--bits auto needs a budget"),
    (["quantize", "mixtral", "--bits", "auto", "--avg-bits", "2.5", "--levels", "4,3,1", "--out", "x"], "equally spaced"),
    (["quantize", "mixtral", "--bits", "9", "--out", "x"], "expected 1..8"),
    (["quantize", "mixtral", "--bits", "auto", "--avg-bits", "5", "--levels", "3,2", "--out", "x"], "outside the levels"),
    (["quantize", "gpt2", "--bits", "3", "--out", "x"], "unknown architecture"),
    (["quantize", "mixtral", "--bits", "3", "--order", "magic", "--out", "x"], "quant.order"),
    (["quantize", "mixtral", "--bits", "3", "--model", "/nonexistent/dir", "--out", "x"], "/nonexistent/dir"),
    (["evaluate", "moe-quant"], "--model is required"),
])
def test_usage_errors_exit_2(args, needle):
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    err = _err(res)
    assert "Error:" in err and needle in err and "Traceback" not in err


def test_mixtral_train_quantize_evaluate(tmp_path):
    run = tmp_path / "run"
    res = invoke("--json", "train", "moe-lm", "--set", "steps=8", "--set", "seq_len=32", "--out", str(run))
    assert res.exit_code == 0, _err(res)
    model = run / "model"
    assert (model / "router_init.safetensors").exists() and (model / "model.safetensors").exists()
    out = tmp_path / "q"
    res = invoke("--json", "quantize", "mixtral", "--model", str(model), "--bits", "auto", "--avg-bits", "2.5",
                 "--levels", "3,2", "--nsamples", "16", "--seqlen", "32", "--group-size", "32", "--out", str(out))
    assert res.exit_code == 0, _err(res)
    result = json_lines(res.stdout)[-1]
    assert result["achieved_avg_bits"] == pytest.approx(2.5)
    assert result["packed_expert_tensors"] == 2 * 8 * 3
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert q["allocation"]["router_ref"] == "snapshot" and q["allocation"]["order"] == "combined"
    res = invoke("--json", "evaluate", "moe-quant", "--model", str(out))
    assert res.exit_code == 0, _err(res)
    ev = json_lines(res.stdout)[-1]
    assert ev["quantized"] is True and ev["metrics"]["ppl"] == pytest.approx(result["quantized"]["ppl"], rel=1e-6)
    # a calibration text file, the MILP policy, rtn
    calib = tmp_path / "calib.txt"
    calib.write_text("The quick brown fox jumps over the lazy dog. " * 200)
    res = invoke("--json", "quantize", "mixtral", "--model", str(model), "--bits", "auto", "--avg-bits", "3",
                 "--levels", "4,3,2", "--policy", "milp", "--calib", str(calib), "--nsamples", "8", "--seqlen", "32",
                 "--no-eval", "--out", str(tmp_path / "q2"))
    assert res.exit_code == 0, _err(res)
    assert json_lines(res.stdout)[-1]["achieved_avg_bits"] <= 3.0
    # refuses to overwrite
    res = invoke("quantize", "mixtral", "--model", str(model), "--bits", "3", "--out", str(out))
    assert res.exit_code == 2 and "--overwrite" in _err(res)


def test_train_moe_lm_max_steps_sets_steps(tmp_path):
    """`train moe-lm --max-steps N` sets the trainer's `steps` key: saved in config.yaml, and run."""
    import yaml

    run = tmp_path / "R"
    res = invoke("--json", "train", "moe-lm", "--max-steps", "2", "--set", "seq_len=32", "--set", "batch_size=2",
                 "--set", "hidden_size=32", "--set", "intermediate_size=32", "--out", str(run))
    assert res.exit_code == 0, _err(res)
    assert yaml.safe_load((run / "config.yaml").read_text())["steps"] == 2
    report = json.loads((run / "model" / "train_report.json").read_text())
    assert report["config"]["steps"] == 2


def test_switch_quantize_rtn_uniform(tmp_path):
    run = tmp_path / "run"
    res = invoke("--json", "train", "moe-quant", "--set", "arch=switch", "--set", "steps=6", "--out", str(run))
    assert res.exit_code == 0, _err(res)
    out = tmp_path / "q"
    res = invoke("--json", "quantize", "switch", "--model", str(run / "model"), "--bits", "4", "--method", "rtn",
                 "--nsamples", "8", "--out", str(out))
    assert res.exit_code == 0, _err(res)
    result = json_lines(res.stdout)[-1]
    assert result["achieved_avg_bits"] == 4.0 and result["packed_expert_tensors"] == 2 * 8 * 2
    ev = invoke("--json", "evaluate", "moe-quant", "--model", str(out))
    assert ev.exit_code == 0 and 0.0 <= json_lines(ev.stdout)[-1]["metrics"]["token_acc"] <= 1.0


def test_make_data(tmp_path):
    res = invoke("--json", "data", "make", "moe-quant", "--quick", "--out", str(tmp_path / "d"))
    assert res.exit_code == 0, _err(res)
    man = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert set(man["files"]) == {"pydoc.txt", "stdlib.txt", "markers.txt"}
    text = (tmp_path / "d" / "markers.txt").read_bytes()
    for m, phrase in man["marker_ground_truth"].items():
        i = text.find(bytes([int(m)]))
        assert i >= 0 and text[i + 1:i + 1 + len(phrase)] == phrase.encode()


def test_bad_corpus_file_is_a_data_error(tmp_path):
    bad = tmp_path / "tiny.txt"
    bad.write_text("too short")
    res = invoke("train", "moe-quant", "--set", f"corpus={bad}", "--set", "steps=2", "--out", str(tmp_path / "r"))
    assert res.exit_code == 2 and "at least 4096" in _err(res)


@pytest.mark.slow
def test_quick_bench_runs(tmp_path):
    res = invoke("--json", "bench", "moe-quant", "--quick", "--out", str(tmp_path / "b"))
    assert res.exit_code == 0, _err(res)
    data = json.loads((tmp_path / "b" / "moe-quant" / "results.json").read_text())
    methods = {r["method"] for r in data["tables"]["runs"]}
    assert {"combined", "router", "variance", "inverted", "frequency", "sensitivity", "fp32"} <= methods


def test_moe_lm_is_the_trainer_under_its_own_name():
    res = invoke("--json", "tasks")
    rows = {line["task"]: line for line in json_lines(res.stdout) if line.get("event") == "task"}
    assert rows["moe-lm"]["verbs"] == ["data", "train"] and "quantize" in rows["moe-quant"]["verbs"]
