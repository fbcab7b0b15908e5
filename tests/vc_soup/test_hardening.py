"""Issue 16 for vc-soup: bad inputs of `filter-prefs`, `merge`, `train vc-soup` and `evaluate vc-soup`
end as exit 2 with one `Error:` line naming the file or option (no internal exception names), NaN
weights are refused, delta-space soups take the base's config and tokenizer, config ranges are
declared once, and a failed command leaves no half-written output."""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import time
import typing
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402
from tests.cli.helpers import one_error  # noqa: E402

from affectkit.core.config import save_yaml  # noqa: E402
from affectkit.tasks.vc_soup.config import Config, DPOConfig, PolicyConfig, SFTConfig  # noqa: E402

VALUES = ("positivity", "relevance")


# ---- fixtures: tiny models, a tiny training directory, a tiny (untrained) run --------------------


def _model(d: Path, tensors: dict, config: str = '{"model_type": "toy"}', tokenizer: str | None = None) -> Path:
    d.mkdir(parents=True)
    save_file(tensors, str(d / "model.safetensors"))
    if config is not None:
        (d / "config.json").write_text(config)
    if tokenizer is not None:
        (d / "tokenizer.json").write_text(tokenizer)
        (d / "tokenizer_config.json").write_text(tokenizer)
    return d


def _pair(i: int, good: bool = True) -> dict:
    pos_c, pos_r = (1.0 + i, 0.0) if good else (0.0, 1.0)
    return {"id": f"p{i}", "prompt": f"tell me about topic{i}", "chosen": f"happy answer {i}", "rejected": f"plain answer {i}",
            "rewards_chosen": {"positivity": pos_c, "relevance": 0.5 + i}, "rewards_rejected": {"positivity": pos_r, "relevance": 0.1}}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A training directory in the embedded layout, small enough to train on in a second."""
    d = tmp_path_factory.mktemp("vcdata") / "setting"
    d.mkdir()
    for v in VALUES:
        _write_jsonl(d / f"{v}_train.jsonl", [{**_pair(i), "value": v} for i in range(8)])
    _write_jsonl(d / "sft.jsonl", [{"prompt": f"tell me about topic{i}", "response": f"happy answer {i}"} for i in range(8)])
    _write_jsonl(d / "eval_prompts.jsonl", [{"prompt": "tell me about topic1", "candidates": ["happy answer 1", "plain answer 1"],
                                             "rewards": {"positivity": [1.0, 0.0], "relevance": [0.5, 0.4]}}])
    return d


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir) -> Path:
    """A run directory as `train vc-soup` leaves it (untrained policies: only the files matter)."""
    from affectkit.tasks.vc_soup.model import build_policy, build_tokenizer, save_policy

    run = tmp_path_factory.mktemp("vcrun") / "run"
    tok = build_tokenizer(["happy", "plain", "answer", "tell", "me", "about"])
    for i, sub in enumerate(["reference", "policies/positivity", "policies/relevance"]):
        save_policy(build_policy(len(tok), 1, 1, 8, 64, seed=i), tok, run / sub)
    save_yaml(Config(), run / "config.yaml")
    (run / "meta.json").write_text(json.dumps({"data_dir": str(data_dir)}))
    return run


_one_error = one_error


# ---- 1. NaN weights are refused before anything is written ------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_merge_refuses_non_finite_weights(tmp_path, cli, bad):
    a = _model(tmp_path / "a", {"w": torch.ones(3), "b": torch.zeros(2)})
    n = _model(tmp_path / "n", {"w": torch.tensor([1.0, bad, 2.0]), "b": torch.zeros(2)})
    for weights in ("0.5,0.5", "1,0"):  # a zero weight does not hide it: 0 * NaN is NaN
        code, _, err = cli(["merge", str(a), str(n), "--weights", weights, "--out", str(tmp_path / "out")])
        _one_error(code, err, n / "model.safetensors", "'w'")
        assert not (tmp_path / "out").exists()
    # a base holding NaN is refused even where its weight is zero (delta space, weights summing to 1)
    code, _, err = cli(["merge", str(a), str(a), "--weights", "0.5,0.5", "--space", "delta", "--base", str(n), "--out", str(tmp_path / "out")])
    _one_error(code, err, n / "model.safetensors", "'w'")
    assert not (tmp_path / "out").exists()


def test_merge_refuses_overflow(tmp_path, cli):
    a = _model(tmp_path / "a", {"w": torch.ones(2)})
    code, _, err = cli(["merge", str(a), str(a), "--weights", "1e5,1e5", "--out-dtype", "fp16", "--out", str(tmp_path / "out")])
    _one_error(code, err, "--out-dtype", "'w'")
    assert not (tmp_path / "out").exists()


# ---- 2. delta space: config and tokenizer of the base, as mergekit --------------------------------


def test_merge_delta_takes_config_and_tokenizer_from_base(tmp_path, cli):
    base = _model(tmp_path / "base", {"w": torch.zeros(2)}, '{"model_type": "toy", "from": "base"}', '{"tok": "base"}')
    a = _model(tmp_path / "a", {"w": torch.tensor([1.0, 0.0])}, '{"model_type": "toy", "from": "a"}', '{"tok": "a"}')
    b = _model(tmp_path / "b", {"w": torch.tensor([0.0, 2.0])}, '{"model_type": "toy", "from": "b"}', '{"tok": "b"}')
    code, _, err = cli(["merge", str(a), str(b), "--weights", "0.5,0.5", "--space", "delta", "--base", str(base), "--out", str(tmp_path / "d")])
    assert code == 0, err
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "d" / f).read_bytes() == (base / f).read_bytes(), f
    torch.testing.assert_close(load_file(str(tmp_path / "d" / "model.safetensors"))["w"], torch.tensor([0.5, 1.0]))
    # full space keeps the first model's files
    code, _, err = cli(["merge", str(a), str(b), "--weights", "0.5,0.5", "--out", str(tmp_path / "f")])
    assert code == 0, err
    assert (tmp_path / "f" / "config.json").read_bytes() == (a / "config.json").read_bytes()


def test_merge_warns_when_the_output_gets_no_config(tmp_path, cli):
    a = _model(tmp_path / "a", {"w": torch.ones(2)}, config=None)
    code, _, err = cli(["merge", str(a), str(a), "--weights", "0.5,0.5", "--out", str(tmp_path / "o")])
    assert code == 0, err
    assert "Warning:" in err and "no config.json" in err


# ---- 3. ranges, declared once ------------------------------------------------------------------------

UNBOUNDED = {"eval_seed"}  # any integer seeds the generator


@pytest.mark.parametrize("cls", [Config, PolicyConfig, DPOConfig, SFTConfig])
def test_every_number_declares_its_range(cls):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if hints[f.name] in (int, float) and f.name not in UNBOUNDED:
            assert f.metadata.get("min") is not None or f.metadata.get("max") is not None, f"{cls.__name__}.{f.name}"


@pytest.mark.parametrize(("setting", "named"), [
    ("dpo.steps=-5", "dpo.steps"), ("dpo.steps=0", "dpo.steps"), ("dpo.batch_size=0", "dpo.batch_size"),
    ("dpo.beta=0", "dpo.beta"), ("dpo.beta=-1", "dpo.beta"), ("dpo.beta=.nan", "dpo.beta"), ("dpo.lr=-1e-3", "dpo.lr"),
    ("dpo.label_smoothing=0.7", "dpo.label_smoothing"), ("dpo.lora_r=-1", "dpo.lora_r"),
    ("sft.steps=-1", "sft.steps"), ("sft.batch_size=0", "sft.batch_size"), ("sft.lr=.inf", "sft.lr"),
    ("keep_ratio=1.5", "keep_ratio"), ("threshold=3", "threshold"), ("threshold=.nan", "threshold"),
    ("grid_steps=0", "grid_steps"), ("eval_samples=0", "eval_samples"), ("eval_top_p=1.5", "eval_top_p"),
    ("policy.n_layer=0", "policy.n_layer"), ("policy.n_head=3", "policy.n_head"), ("policy.n_positions=16", "policy.n_positions"),
    ("values=[]", "values"), ("values=[a,a]", "values"),
])
def test_train_refuses_out_of_range_settings(tmp_path, cli, data_dir, setting, named):
    t0 = time.perf_counter()
    code, _, err = cli(["train", "vc-soup", "--data", str(data_dir), "--set", setting, "--out", str(tmp_path / "run")])
    _one_error(code, err, named)
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "run" / "reference").exists()


@pytest.mark.parametrize(("flag", "value"), [("--keep-ratio", "1.5"), ("--keep-ratio", "-0.1"), ("--threshold", "3"),
                                             ("--threshold", "-1.5"), ("--threshold", "nan"), ("--min-margin", "-1")])
def test_filter_prefs_refuses_out_of_range_flags(tmp_path, cli, data_dir, flag, value):
    code, out, err = cli(["filter-prefs", str(data_dir / "positivity_train.jsonl"), "--values", ",".join(VALUES), flag, value])
    _one_error(code, err, flag)
    assert out == ""


@pytest.mark.parametrize("weights", ["nan,0.5", "0.5,inf", "0.5", "0.2,0.3,0.5"])
def test_merge_refuses_bad_weights(tmp_path, cli, weights):
    a = _model(tmp_path / "a", {"w": torch.ones(2)})
    code, _, err = cli(["merge", str(a), str(a), "--weights", weights, "--out", str(tmp_path / "o")])
    _one_error(code, err, "--weights")
    assert not (tmp_path / "o").exists()


# ---- 4. user mistakes through the command line: exit 2, one Error line naming the file ------------


def _bad_merge(tmp: Path, case: str) -> tuple[list[str], list[str]]:
    a = _model(tmp / "a", {"w": torch.ones(2)})
    out = ["--out", str(tmp / "out")]
    pair = ["merge", str(a)]
    bad_files = {"corrupt-safetensors": ("c/model.safetensors", b"not a safetensors file at all"),
                 "empty-safetensors": ("e.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "),
                 "zero-byte-safetensors": ("z.safetensors", b""), "not-safetensors": ("m.bin", b"x"),
                 "no-weights-in-dir": ("d/config.json", b"{}")}
    if case in bad_files:
        rel, content = bad_files[case]
        f = tmp / rel
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(content)
        named = f.parent if case == "no-weights-in-dir" else f
        return [*pair, str(named), "--weights", "0.5,0.5", *out], [str(named)]
    if case in ("shape-mismatch", "names-mismatch"):
        c = _model(tmp / "c", {"w": torch.ones(3)} if case == "shape-mismatch" else {"v": torch.ones(2)})
        return [*pair, str(c), "--weights", "0.5,0.5", *out], [str(c)] + (["w: shape"] if case == "shape-mismatch" else [])
    if case == "mergekit-unknown-method":
        y = tmp / "mk.yml"
        y.write_text(f"merge_method: ties\nmodels:\n  - model: {a}\n    parameters: {{weight: 1}}\n")
        return ["merge", "--config", str(y), *out], [str(y), "ties"]
    if case == "mergekit-bad-yaml":
        y = tmp / "mk.yml"
        y.write_text("merge_method: linear\nmodels: [\n")
        return ["merge", "--config", str(y), *out], [str(y)]
    if case == "out-is-a-file":
        f = tmp / "file"
        f.write_text("x")
        return ["merge", str(a), str(a), "--weights", "0.5,0.5", "--out", str(f)], ["--out"]
    if case == "adapter-config-corrupt":
        d = tmp / "ad"
        d.mkdir()
        save_file({"base_model.model.lin.lora_A.weight": torch.ones(1, 2), "base_model.model.lin.lora_B.weight": torch.ones(2, 1)},
                  str(d / "adapter_model.safetensors"))
        (d / "adapter_config.json").write_text("{broken")
        return ["merge", str(d), str(d), "--weights", "0.5,0.5", "--space", "lora-factors", *out], [str(d / "adapter_config.json")]
    raise AssertionError(case)


MERGE_CASES = ["corrupt-safetensors", "empty-safetensors", "zero-byte-safetensors", "shape-mismatch", "names-mismatch",
               "not-safetensors", "no-weights-in-dir", "mergekit-unknown-method", "mergekit-bad-yaml", "out-is-a-file",
               "adapter-config-corrupt"]


@pytest.mark.parametrize("case", MERGE_CASES)
def test_merge_bad_inputs(tmp_path, cli, case):
    args, names = _bad_merge(tmp_path, case)
    t0 = time.perf_counter()
    code, out, err = cli(args)
    _one_error(code, err, *names)
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".*.tmp"))


BAD_FILES = {  # case -> (file name, bytes)
    "corrupt-jsonl": ("x.jsonl", (json.dumps(_pair(0)) + "\n{not json\n").encode()),
    "corrupt-json-array": ("x.json", ("[" + json.dumps(_pair(0)) + ",").encode()),
    "json-array-of-numbers": ("x.json", b"[1, 2]"),
    "corrupt-parquet": ("x.parquet", b"PAR1 not really PAR1"),
    "truncated-gzip": ("x.jsonl.gz", gzip.compress((json.dumps(_pair(0)) + "\n").encode() * 50)[:40]),
    "binary": ("x.jsonl", b"\xff\xfe\x00\x01"),
    "empty-file": ("x.jsonl", b""),
    "no-rewards": ("x.jsonl", json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}).encode()),
}


def _bad_filter_input(tmp: Path, case: str) -> tuple[list[str], str | None, str]:
    if case in BAD_FILES:
        name, content = BAD_FILES[case]
        f = tmp / name
        f.write_bytes(content)
        return [str(f)], None, str(f)
    if case == "empty-stdin":
        return ["-"], "", "<stdin>"
    if case == "missing-file":
        return [str(tmp / "nope.jsonl")], None, str(tmp / "nope.jsonl")
    if case == "damaged-hf-dataset-dir":
        d = tmp / "hf"
        d.mkdir()
        (d / "state.json").write_text("{")
        return [str(d)], None, str(d)
    if case == "out-is-a-directory":
        f = tmp / "x.jsonl"
        _write_jsonl(f, [_pair(i) for i in range(3)])
        (tmp / "outdir").mkdir()
        return [str(f), "--out", str(tmp / "outdir")], None, "--out"
    if case == "stats-is-a-directory":
        f = tmp / "x.jsonl"
        _write_jsonl(f, [_pair(i) for i in range(3)])
        (tmp / "statsdir").mkdir()
        return [str(f), "--stats", str(tmp / "statsdir")], None, "--stats"
    raise AssertionError(case)


FILTER_CASES = ["corrupt-jsonl", "corrupt-json-array", "json-array-of-numbers", "corrupt-parquet", "truncated-gzip", "binary",
                "empty-file", "empty-stdin", "missing-file", "damaged-hf-dataset-dir", "no-rewards", "out-is-a-directory",
                "stats-is-a-directory"]


@pytest.mark.parametrize("case", FILTER_CASES)
def test_filter_prefs_bad_inputs(tmp_path, cli, case):
    if case == "corrupt-parquet":
        pytest.importorskip("pyarrow")
    if case == "damaged-hf-dataset-dir":
        pytest.importorskip("datasets")
    args, stdin, name = _bad_filter_input(tmp_path, case)
    t0 = time.perf_counter()
    code, out, err = cli(["filter-prefs", *args, "--values", ",".join(VALUES)], input=stdin)
    _one_error(code, err, name)
    assert out == ""
    assert time.perf_counter() - t0 < 10


def _broken_data(src: Path, dst: Path, case: str) -> tuple[Path, str]:
    shutil.copytree(src, dst)
    if case == "corrupt-truth-json":
        (dst / "truth.json").write_text("{bad")
        return dst, str(dst / "truth.json")
    if case == "sft-row-without-response":
        _write_jsonl(dst / "sft.jsonl", [{"prompt": "p"}])
        return dst, str(dst / "sft.jsonl")
    if case == "eval-rewards-wrong-length":
        _write_jsonl(dst / "eval_prompts.jsonl", [{"prompt": "p", "candidates": ["a", "b"], "rewards": {"positivity": [1.0], "relevance": [0.0, 1.0]}}])
        return dst, str(dst / "eval_prompts.jsonl")
    if case == "eval-row-without-candidates":
        _write_jsonl(dst / "eval_prompts.jsonl", [{"prompt": "p"}])
        return dst, str(dst / "eval_prompts.jsonl")
    if case == "empty-value-file":
        (dst / "relevance_train.jsonl").write_text("")
        return dst, str(dst / "relevance_train.jsonl")
    if case == "corrupt-value-file":
        (dst / "relevance_train.jsonl").write_text('{"prompt": "p", "cho')
        return dst, str(dst / "relevance_train.jsonl")
    if case == "missing-value-file":
        (dst / "relevance_train.jsonl").unlink()
        return dst, str(dst / "relevance_train.jsonl")
    if case == "nothing-kept":  # every pair's gaps disagree: vc keeps none at threshold 1
        _write_jsonl(dst / "positivity_train.jsonl", [{**_pair(i, good=False), "value": "positivity"} for i in range(4)])
        return dst, str(dst / "positivity_train.jsonl")
    raise AssertionError(case)


TRAIN_CASES = ["corrupt-truth-json", "sft-row-without-response", "eval-rewards-wrong-length", "eval-row-without-candidates",
               "empty-value-file", "corrupt-value-file", "missing-value-file", "nothing-kept"]


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_bad_data(tmp_path, cli, data_dir, case):
    data, name = _broken_data(data_dir, tmp_path / "data", case)
    extra = ["--set", "threshold=1"] if case == "nothing-kept" else []
    t0 = time.perf_counter()
    code, _, err = cli(["train", "vc-soup", "--data", str(data), *extra, "--out", str(tmp_path / "run")])
    _one_error(code, err, name)
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "run" / "reference").exists()  # refused before the reference warm-up


def _broken_run(src: Path, dst: Path, case: str) -> tuple[Path, str]:
    shutil.copytree(src, dst)
    if case == "no-policies":
        shutil.rmtree(dst / "policies")
        return dst, str(dst / "policies" / "positivity")
    if case == "one-policy-missing":
        shutil.rmtree(dst / "policies" / "relevance")
        return dst, str(dst / "policies" / "relevance")
    if case == "policy-without-config":
        (dst / "policies" / "relevance" / "config.json").unlink()
        return dst, str(dst / "policies" / "relevance")
    if case == "reference-without-config":
        (dst / "reference" / "config.json").unlink()
        return dst, str(dst / "reference")
    if case == "corrupt-policy-safetensors":
        (dst / "policies" / "relevance" / "model.safetensors").write_bytes(b"garbage")
        return dst, str(dst / "policies" / "relevance" / "model.safetensors")
    if case == "policy-of-another-architecture":
        save_file({"w": torch.ones(3)}, str(dst / "policies" / "relevance" / "model.safetensors"))
        return dst, str(dst / "policies" / "relevance")
    if case == "policy-of-another-vocabulary":
        from affectkit.tasks.vc_soup.model import build_policy, build_tokenizer, save_policy

        tok = build_tokenizer(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])
        shutil.rmtree(dst / "policies" / "relevance")
        save_policy(build_policy(len(tok), 1, 1, 8, 64), tok, dst / "policies" / "relevance")
        return dst, str(dst / "policies" / "relevance")
    raise AssertionError(case)


RUN_CASES = ["no-policies", "one-policy-missing", "policy-without-config", "reference-without-config", "corrupt-policy-safetensors",
             "policy-of-another-architecture", "policy-of-another-vocabulary"]


@pytest.mark.parametrize("case", RUN_CASES)
def test_evaluate_bad_runs(tmp_path, cli, run_dir, data_dir, case):
    run, name = _broken_run(run_dir, tmp_path / "run", case)
    t0 = time.perf_counter()
    code, _, err = cli(["evaluate", "vc-soup", "--run", str(run), "--data", str(data_dir)])
    _one_error(code, err, name)
    assert time.perf_counter() - t0 < 10


def test_evaluate_intact_run_works(cli, run_dir, data_dir):
    code, _, err = cli(["evaluate", "vc-soup", "--run", str(run_dir), "--data", str(data_dir)])
    assert code == 0, err


def test_train_warns_with_a_count_of_invalid_rows(tmp_path, cli, data_dir):
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    rows = [json.loads(x) for x in (data / "relevance_train.jsonl").read_text().splitlines()]
    rows[0]["rewards_chosen"]["relevance"] = "high"
    rows[1]["chosen"] = ""
    _write_jsonl(data / "relevance_train.jsonl", rows)
    code, _, err = cli(["train", "vc-soup", "--data", str(data), "--set", "dpo.trainer=native", "--set", "sft.steps=1",
                        "--set", "dpo.steps=1", "--set", "policy.n_layer=1", "--set", "policy.n_embd=8", "--out", str(tmp_path / "run")])
    assert code == 0, err
    assert "Warning:" in err and "relevance_train.jsonl: skipped 2 invalid rows" in err


# ---- 5. a failed command leaves no half-written output --------------------------------------------


def test_merge_failure_midway_leaves_no_output(tmp_path, cli, monkeypatch):
    import affectkit.tasks.vc_soup.merge_io as merge_io

    a = _model(tmp_path / "a", {"w": torch.ones(2)}, tokenizer='{"tok": 1}')

    def fail(src, dst, *args, **kwargs):  # the weights are written; copying the configs fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(merge_io.shutil, "copyfile", fail)
    code, _, err = cli(["merge", str(a), str(a), "--weights", "0.5,0.5", "--out", str(tmp_path / "out")])
    _one_error(code, err, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temporary directory left
    # --overwrite of an existing soup: the old files stay as they were
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model.safetensors").write_bytes(b"old")
    code, _, err = cli(["merge", str(a), str(a), "--weights", "0.5,0.5", "--out", str(tmp_path / "old"), "--overwrite"])
    assert code == 2, err
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["model.safetensors"]
    assert (tmp_path / "old" / "model.safetensors").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "old"]


def test_merge_overwrite_replaces_files(tmp_path, cli):
    a = _model(tmp_path / "a", {"w": torch.ones(2)})
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "README.md").write_text("mine")
    (tmp_path / "o" / "model.safetensors").write_bytes(b"old")
    code, _, err = cli(["merge", str(a), str(a), "--weights", "0.5,0.5", "--out", str(tmp_path / "o"), "--overwrite"])
    assert code == 0, err
    assert (tmp_path / "o" / "README.md").read_text() == "mine"
    torch.testing.assert_close(load_file(str(tmp_path / "o" / "model.safetensors"))["w"], torch.ones(2))


def test_filter_prefs_failure_midway_leaves_no_output(tmp_path, cli, data_dir, monkeypatch):
    import affectkit.tasks.vc_soup.data as data_mod

    real, calls = data_mod.dumps_row, []

    def flaky(row):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(28, "No space left on device")
        return real(row)

    monkeypatch.setattr(data_mod, "dumps_row", flaky)
    out = tmp_path / "kept.jsonl"
    code, _, err = cli(["filter-prefs", str(data_dir / "positivity_train.jsonl"), "--values", ",".join(VALUES),
                        "--threshold", "-1", "--out", str(out), "--stats", str(tmp_path / "stats.json")])
    assert code == 2 and "Error:" in err and str(out) in err, err
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no stats, no temporary file
