"""Issue 16 for moe-quant / moe-lm: bad input is one `Error:` line and exit 2 before any heavy work,
`train moe-lm` reads only the data directory it is given, `--resume` continues exactly, and a
quantized directory never loads with random experts."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.cli.helpers import invoke, one_error  # noqa: E402

TINY = ["--set", "hidden_size=32", "--set", "intermediate_size=32", "--set", "batch_size=2", "--set", "seq_len=16"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AFFECTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _one_error(res, *needles: str) -> str:
    return one_error(res.exit_code, res.stderr, *needles)


def _timed(*args: str):
    t0 = time.perf_counter()
    res = invoke(*args)
    assert time.perf_counter() - t0 < 10, f"{args}: the error came after {time.perf_counter() - t0:.1f}s"
    return res


@pytest.fixture
def model_dir(float_model_dir):
    return float_model_dir


def _edit_config(d: Path, **changes) -> Path:
    conf = json.loads((d / "config.json").read_text())
    conf.update(changes)
    (d / "config.json").write_text(json.dumps(conf))
    return d


# ---- item 1: --data must hold the corpus it is read for ------------------------------------------


def test_data_dir_without_the_corpus_is_a_data_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = tmp_path / "run"
    res = _timed("train", "moe-lm", "--data", str(empty), "--max-steps", "2", *TINY, "--out", str(run))
    _one_error(res, str(empty), "pydoc.txt")
    assert not run.exists()  # refused before the run directory is made
    (empty / "pydoc.txt").write_text("x" * 5000)
    res = _timed("train", "moe-lm", "--data", str(empty), "--set", "corpus=stdlib", *TINY, "--out", str(run))
    _one_error(res, str(empty), "stdlib.txt")


def test_corpus_bytes_reads_only_the_data_dir(tmp_path):
    from affectkit.core.errors import DataError
    from affectkit.tasks.moe_quant.data import corpus_bytes

    with pytest.raises(DataError, match="pydoc.txt"):
        corpus_bytes("pydoc", tmp_path)
    (tmp_path / "pydoc.txt").write_bytes(b"abc" * 2000)
    assert corpus_bytes("pydoc", tmp_path) == b"abc" * 2000
    assert len(corpus_bytes("pydoc")) > 100_000  # no data directory: the embedded corpus


# ---- item 2: checkpoints and an exact --resume -----------------------------------------------------


class _Killed(Exception):
    pass


def _tiny_lm(arch: str, steps: int = 4):
    from affectkit.tasks.moe_quant.config import LMConfig

    return LMConfig(arch=arch, hidden_size=32, intermediate_size=32, num_layers=2, batch_size=2, seq_len=16,
                    switch_snippet=8, steps=steps, marker_frac=0.1)


@pytest.mark.parametrize("arch", ["mixtral", "switch"])
def test_resumed_training_ends_with_the_uninterrupted_weights(arch, tmp_path):
    """Run A trains 4 steps; run B is killed after step 3 (checkpoints at 2) and resumed: same weights,
    router snapshot and losses as A."""
    from affectkit.core.runs import RunDir
    from affectkit.tasks.moe_quant.train import train_lm

    cfg = _tiny_lm(arch)
    rep_a = train_lm(cfg, tmp_path / "a")

    run = RunDir(tmp_path / "run")
    run.create()

    def kill_at_step_3(step, _loss):
        if step == 2:  # the third step ran; its checkpoint would come at 4
            raise _Killed

    with pytest.raises(_Killed):
        train_lm(cfg, tmp_path / "b", progress=kill_at_step_3, run=run, checkpoint_every=2)
    assert run.checkpoint_steps() == [2] and not (tmp_path / "b").exists()
    rep_b = train_lm(cfg, tmp_path / "b", run=run, checkpoint_every=2, resume=True)
    assert run.checkpoint_steps() == [4]
    for f in ("model.safetensors", "router_init.safetensors"):
        wa, wb = load_file(str(tmp_path / "a" / f)), load_file(str(tmp_path / "b" / f))
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), (f, k)
    assert rep_b["train_loss_last50"] == rep_a["train_loss_last50"]
    assert rep_b["heldout"] == rep_a["heldout"]
    assert [r["step"] for r in run.read_metrics()] == [2, 4]


def test_checkpointing_leaves_the_trained_weights_unchanged(tmp_path):
    """The embedded models are cached by the trainer config's hash: checkpointing must not move them."""
    from affectkit.core.runs import RunDir
    from affectkit.tasks.moe_quant.config import Config, LMConfig
    from affectkit.tasks.moe_quant.train import train_lm

    assert "checkpoint_every" not in LMConfig.__dataclass_fields__  # not part of the cache key
    assert LMConfig.from_task_config(Config(), 0) == LMConfig()
    cfg = _tiny_lm("mixtral", steps=3)
    train_lm(cfg, tmp_path / "plain")
    run = RunDir(tmp_path / "run")
    run.create()
    train_lm(cfg, tmp_path / "ckpt", run=run, checkpoint_every=1)
    assert (tmp_path / "plain" / "model.safetensors").read_bytes() == (tmp_path / "ckpt" / "model.safetensors").read_bytes()


def test_cli_resume_continues_a_killed_run(tmp_path, monkeypatch):
    from affectkit.tasks.moe_quant import train as train_mod

    args = ["--json", "train", "moe-lm", "--max-steps", "4", "--set", "checkpoint_every=2", *TINY]
    res = invoke(*args, "--out", str(tmp_path / "full"))
    assert res.exit_code == 0, res.stderr

    save = train_mod._save_checkpoint

    def save_then_die(run, step, *rest):
        save(run, step, *rest)
        raise _Killed

    monkeypatch.setattr(train_mod, "_save_checkpoint", save_then_die)
    res = invoke(*args, "--out", str(tmp_path / "cut"))
    assert res.exit_code == 1 and "_Killed" in res.stderr
    monkeypatch.setattr(train_mod, "_save_checkpoint", save)
    res = invoke(*args, "--out", str(tmp_path / "cut"), "--resume")
    assert res.exit_code == 0, res.stderr
    assert "resuming" in res.stderr and "from step 2" in res.stderr
    full = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    cut = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert all(torch.equal(full[k], cut[k]) for k in full)

    def stream(run):
        return [{k: v for k, v in json.loads(line).items() if k != "time"}
                for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert stream("cut") == stream("full")


def test_resume_without_a_checkpoint_warns(tmp_path):
    run = tmp_path / "r"
    res = invoke("train", "moe-lm", "--max-steps", "1", "--set", "checkpoint_every=0", *TINY, "--out", str(run))
    assert res.exit_code == 0, res.stderr
    res = invoke("train", "moe-lm", "--max-steps", "1", "--set", "checkpoint_every=0", *TINY, "--out", str(run),
                 "--resume")
    assert res.exit_code == 0 and "Warning:" in res.stderr and "no checkpoint" in res.stderr


# ---- item 3: ranges, checked before any work ---------------------------------------------------------


@pytest.mark.parametrize("args,needles", [
    (["train", "moe-lm", "--max-steps", "0"], ["steps", ">= 1"]),
    (["train", "moe-lm", "--max-steps", "-4"], ["steps"]),
    (["train", "moe-lm", "--set", "batch_size=0"], ["batch_size"]),
    (["train", "moe-lm", "--set", "top_k=9"], ["top_k 9", "num_experts 8"]),
    (["train", "moe-lm", "--set", "num_kv_heads=3"], ["num_kv_heads 3"]),
    (["train", "moe-lm", "--set", "hidden_size=30"], ["hidden_size 30"]),
    (["train", "moe-lm", "--set", "marker_frac=1.5"], ["marker_frac"]),
    (["train", "moe-lm", "--set", "seq_len=100000"], ["seq_len 100000", "held-out"]),
    (["train", "moe-lm", "--set", "arch=switch", "--set", "switch_snippet=100000"], ["switch_snippet 100000"]),
    (["train", "moe-lm", "--set", "init_from=/nonexistent/model"], ["/nonexistent/model", "no config.json"]),
    (["train", "moe-lm", "--set", "checkpoint_every=-1"], ["checkpoint_every"]),
    (["quantize", "mixtral", "--bits", "3", "--group-size", "-3", "--out", "q"], ["group_size", ">= 0"]),
    (["quantize", "mixtral", "--bits", "3", "--nsamples", "0", "--out", "q"], ["nsamples"]),
    (["quantize", "mixtral", "--bits", "3", "--seqlen", "0", "--out", "q"], ["seqlen"]),
    (["quantize", "mixtral", "--bits", "3", "--attn-bits", "9", "--out", "q"], ["attn_bits", "between 1 and 8"]),
    (["quantize", "mixtral", "--bits", "auto", "--avg-bits", "0", "--out", "q"], ["avg_bits"]),
    (["quantize", "mixtral", "--bits", "auto", "--avg-bits", "2", "--levels", "3,0", "--out", "q"], ["levels"]),
    (["quantize", "mixtral", "--bits", "3", "--set", "quant.router_bits=0", "--out", "q"], ["router_bits"]),
])
def test_out_of_range_is_one_error_before_any_work(args, needles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = _timed(*args, *(["--out", "run"] if args[0] == "train" else []))
    _one_error(res, *needles)
    assert not (tmp_path / "run").exists() and not (tmp_path / "q").exists()


# ---- item 5: user mistakes that were exit 1 with an internal exception name ------------------------------


def test_corrupt_safetensors_is_a_data_error(model_dir, tmp_path):
    (model_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    res = _timed("quantize", "mixtral", "--model", str(model_dir), "--bits", "3", "--out", str(tmp_path / "q"))
    _one_error(res, str(model_dir), "SafetensorError")
    res = _timed("evaluate", "moe-quant", "--model", str(model_dir))
    _one_error(res, str(model_dir))
    res = _timed("train", "moe-lm", "--set", f"init_from={model_dir}", "--max-steps", "1", "--out", str(tmp_path / "r"))
    _one_error(res, str(model_dir / "model.safetensors"))
    assert not (tmp_path / "r").exists()


def test_top_k_above_the_experts_of_the_model(model_dir, tmp_path):
    _edit_config(model_dir, num_experts_per_tok=6)
    res = _timed("quantize", "mixtral", "--model", str(model_dir), "--bits", "3", "--out", str(tmp_path / "q"))
    _one_error(res, str(model_dir / "config.json"), "num_experts_per_tok 6")
    res = _timed("train", "moe-lm", "--set", f"init_from={model_dir}", "--max-steps", "1", "--out", str(tmp_path / "r"))
    _one_error(res, "num_experts_per_tok 6")


def test_model_checks_before_loading(model_dir, tmp_path):
    res = _timed("quantize", "mixtral", "--model", str(model_dir), "--bits", "3", "--seqlen", "4096",
                 "--out", str(tmp_path / "q"))
    _one_error(res, "--seqlen 4096", "max_position_embeddings 256")
    res = _timed("quantize", "switch", "--model", str(model_dir), "--bits", "3", "--out", str(tmp_path / "q"))
    _one_error(res, "quantize switch", "mixtral")
    res = _timed("train", "moe-lm", "--set", "arch=switch", "--set", f"init_from={model_dir}", "--out",
                 str(tmp_path / "r"))
    _one_error(res, "init_from", "arch=switch")
    res = _timed("quantize", "mixtral", "--model", str(model_dir), "--bits", "3", "--router-ref", "checkpoint",
                 "--router-ref-path", str(tmp_path / "typo"), "--no-eval", "--out", str(tmp_path / "q"))
    _one_error(res, str(tmp_path / "typo"), "no config.json")


def test_calibration_text_shorter_than_a_window(model_dir, tmp_path):
    _edit_config(model_dir, max_position_embeddings=8192)
    calib = tmp_path / "calib.txt"
    calib.write_text("The quick brown fox jumps over the lazy dog. " * 100)  # 4500 bytes
    res = _timed("quantize", "mixtral", "--model", str(model_dir), "--bits", "3", "--calib", str(calib),
                 "--seqlen", "6000", "--no-eval", "--out", str(tmp_path / "q"))
    _one_error(res, "--seqlen 6000", str(calib))


def test_quantizing_a_quantized_directory(model_dir, tmp_path):
    _edit_config(model_dir, quantization_config={"quant_method": "affectkit_moe_mp"})
    res = _timed("quantize", "mixtral", "--model", str(model_dir), "--bits", "3", "--out", str(tmp_path / "q"))
    _one_error(res, str(model_dir), "already quantized")


# ---- item 4: a plain from_pretrained never gives random experts --------------------------------------


@pytest.mark.parametrize("arch", ["mixtral", "switch"])
def test_plain_from_pretrained_refuses_a_quantized_directory(arch, tmp_path):
    from tests.moe_quant.conftest import lm_batches, s2s_batches, tiny_mixtral, tiny_switch

    from affectkit.tasks.moe_quant.config import QuantConfig
    from affectkit.tasks.moe_quant.hf_format import guard_keys, load_quantized, save_quantized
    from affectkit.tasks.moe_quant.model import forward
    from affectkit.tasks.moe_quant.quantize import quantize_in_memory

    m = tiny_mixtral() if arch == "mixtral" else tiny_switch()
    batches = lm_batches(2) if arch == "mixtral" else s2s_batches(2)
    res = quantize_in_memory(m, QuantConfig(avg_bits=3.0, levels=[4, 3, 2], group_size=16, min_tokens=4), None,
                             calib=batches)
    save_quantized(m, tmp_path, res["qcfg"], res["report"])
    assert set(guard_keys(m)) <= set(load_file(str(tmp_path / "model.safetensors")))
    cls = "AutoModelForCausalLM" if arch == "mixtral" else "SwitchTransformersForConditionalGeneration"
    code = f"import transformers; transformers.{cls}.from_pretrained({str(tmp_path)!r}); print('LOADED')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "LOADED" not in out.stdout
    assert "mismatch" in out.stderr.lower()
    # with affectkit's loader (and, in test_format, the registered quantizer): the quantized logits
    ak = load_quantized(tmp_path)
    with torch.no_grad():
        assert torch.equal(forward(ak, batches[0]).logits, forward(m, batches[0]).logits)
