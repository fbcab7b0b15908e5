"""act-prompt from the command line: layer=auto writes its sweep and records the layer, every run reports
accuracy and costs and saves an adapter that reloads to the same logits, evaluate and predict read the run,
--compare writes the comparison, and bad input is one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.cli.helpers import invoke, json_lines, one_error

FAST = ["--set", "backbone.pretrained=false", "--set", "data.task=textures", "--set", "train.batch_size=16",
        "--set", "train.eval_every=4", "--set", "train.checkpoint_every=4", "--max-steps", "4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from affectkit.tasks.act_prompt.synth import make

    out = tmp_path_factory.mktemp("ap-cli") / "data"
    make(out, seed=0, quick=True, tasks=["textures"])
    return out


@pytest.fixture(scope="module")
def auto_run(data, tmp_path_factory) -> tuple[Path, dict]:
    run = tmp_path_factory.mktemp("ap-run") / "run"
    result = invoke("--json", "train", "act-prompt", "--data", str(data), "--out", str(run), "--set", "method=ap",
                    "--set", "layer=auto", "--set", "sweep.steps=2", "--set", "sweep.layers=[1,3]", *FAST)
    assert result.exit_code == 0, result.stderr
    return run, json_lines(result.stdout)[-1]


def test_layer_auto_writes_the_sweep_and_records_the_chosen_layer(auto_run):
    from affectkit.core.config import load_yaml

    run, summary = auto_run
    sweep = json.loads((run / "sweep.json").read_text())
    assert [r["layer"] for r in sweep["rows"]] == [1, 3] and sweep["chosen"] in (1, 3)
    best = max(sweep["rows"], key=lambda r: (r["accuracy"], r["layer"]))
    assert sweep["chosen"] == best["layer"] == summary["layer"]
    assert (run / "sweep.csv").read_text().splitlines()[0].startswith("layer,accuracy")
    assert (run / "sweep.png").stat().st_size > 1000
    assert str(load_yaml(run / "config.yaml")["layer"]) == str(summary["layer"])  # the run records the layer


def test_a_run_reports_accuracy_and_costs(auto_run):
    _, summary = auto_run
    assert set(summary["costs"]) >= {"trainable_params", "train_s_per_epoch", "train_memory_mb", "images_per_s",
                                     "activation_mb", "state_mb", "train_step_s"}
    assert summary["accuracy"] == summary["test"]["accuracy"] and 0 <= summary["accuracy"] <= 1
    assert summary["costs"]["trainable_params"] > 0 and summary["costs"]["images_per_s"] > 0


def _logits_of_run(run: Path, x: torch.Tensor) -> torch.Tensor:
    from affectkit.core.loop import load_weights
    from affectkit.core.runs import RunDir
    from affectkit.tasks.act_prompt.config import ActPromptConfig
    from affectkit.tasks.act_prompt.train import build_classifier

    rd = RunDir.existing(run)
    cfg = rd.load_config(ActPromptConfig)
    classes = json.loads((run / "adapter" / "adapter.json").read_text())["classes"]
    with torch.no_grad():
        return load_weights(build_classifier(cfg, len(classes)), rd.weights("best")).eval()(x)


def test_the_saved_prompt_reloads_and_reproduces_the_logits(auto_run):
    from safetensors import safe_open

    from affectkit.tasks.act_prompt.adapter import load_adapter

    run, summary = auto_run
    info = json.loads((run / "adapter" / "adapter.json").read_text())
    assert info["layer"] == summary["layer"] and info["shape"] == "full" and info["placement"] == "block"
    with safe_open(str(run / "adapter" / "adapter.safetensors"), "pt") as f:
        assert {"head.bias", "head.weight", "prompt.delta"} <= set(f.keys())  # + the random backbone
        assert list(f.get_tensor("prompt.delta").shape) == info["prompt_shape"]
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model, _ = load_adapter(run / "adapter")
    with torch.no_grad():
        assert torch.equal(model(x), _logits_of_run(run, x))


@pytest.mark.parametrize("method", ["lora", "norm"])
def test_a_saved_peft_adapter_reproduces_the_logits(data, tmp_path, method):
    from affectkit.tasks.act_prompt.adapter import load_adapter

    run = tmp_path / method
    result = invoke("--json", "train", "act-prompt", "--data", str(data), "--out", str(run), "--set",
                    f"method={method}", "--set", "backbone.arch=vit", *FAST)
    assert result.exit_code == 0, result.stderr
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model, info = load_adapter(run / "adapter")
    assert info["method"] == method
    with torch.no_grad():
        assert torch.equal(model(x), _logits_of_run(run, x))


def test_evaluate_and_predict_read_the_run(auto_run, data, tmp_path):
    run, summary = auto_run
    result = invoke("--json", "evaluate", "act-prompt", "--run", str(run))
    assert result.exit_code == 0, result.stderr
    evaluated = json_lines(result.stdout)[-1]
    assert evaluated["split"] == "test" and evaluated["layer"] == summary["layer"]
    assert evaluated["metrics"]["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted((data / "textures" / "test").rglob("*.png"))[:3]:
        (images / f"{p.parent.name}-{p.name}").write_bytes(p.read_bytes())
    (images / "broken.png").write_bytes(b"not a png")
    result = invoke("--json", "predict", "act-prompt", "--run", str(run), str(images), "--top-k", "2")
    assert result.exit_code == 0, result.stderr
    lines = json_lines(result.stdout)
    rows, final = lines[:-1], lines[-1]
    assert len(rows) == 3 and all(r["label"] in summary["classes"] and 0 < r["probability"] <= 1 for r in rows)
    assert all(r["top"].count(":") == 2 for r in rows)
    assert final["images"] == 3 and final["skipped"] == [str(images / "broken.png")] and "broken.png" in result.stderr
    single = invoke("predict", "act-prompt", "--run", str(run), str(images / "broken.png"))
    one_error(single.exit_code, single.stderr, "broken.png", "cannot read")


def test_compare_writes_the_table_and_the_plot(data, tmp_path):
    run = tmp_path / "cmp"
    result = invoke("--json", "train", "act-prompt", "--data", str(data), "--out", str(run), "--compare",
                    "linear,vp", *FAST)
    assert result.exit_code == 0, result.stderr
    rows = json.loads((run / "comparison.json").read_text())
    assert set(json_lines(result.stdout)[-1]["accuracy"]) == {"linear", "vp"}
    assert [r["method"] for r in rows] == ["linear", "vp"]
    assert rows[1]["trainable_params"] > rows[0]["trainable_params"]  # the VP border adds to the head
    assert (run / "comparison.png").stat().st_size > 1000
    assert (run / "vp" / "adapter" / "adapter.json").is_file()


@pytest.mark.parametrize(("args", "needles"), [
    (["--set", "method=lorra"], ["method", "lorra"]),
    (["--set", "method=ap", "--set", "layer=9"], ["layer 9", "out of range"]),
    (["--set", "method=ap", "--set", "layer=deep"], ["layer", "deep"]),
    (["--compare", "ap,lora2"], ["--compare", "lora2"]),
    (["--set", "prompt.shaep=full"], ["prompt.shaep"]),
])
def test_bad_settings_are_one_line(data, tmp_path, args, needles):
    result = invoke("train", "act-prompt", "--data", str(data), "--out", str(tmp_path / "r"), *FAST, *args)
    one_error(result.exit_code, result.stderr, *needles)


def test_a_folder_with_no_classes_is_one_line(tmp_path):
    for split in ("train", "val"):
        (tmp_path / "empty" / split).mkdir(parents=True)
    result = invoke("train", "act-prompt", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r"),
                    "--set", "data.task=", *FAST)
    one_error(result.exit_code, result.stderr, "empty")


def test_an_unreadable_training_image_is_one_line(data, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data / "textures", copy / "textures")
    bad = sorted((copy / "textures" / "train").rglob("*.png"))[0]
    bad.write_bytes(b"\x89PNG broken")
    result = invoke("train", "act-prompt", "--data", str(copy), "--out", str(tmp_path / "r"), *FAST)
    one_error(result.exit_code, result.stderr, bad.name, "cannot read")


@pytest.mark.parametrize(("method", "expected"), [("ap", {"head.bias", "head.weight", "prompt.delta"}),
                                                  ("linear", {"head.bias", "head.weight"})])
def test_an_adapter_of_a_reloadable_backbone_holds_only_what_trained(method, expected):
    from affectkit.core.config import apply_overrides
    from affectkit.tasks.act_prompt.adapter import trained_keys
    from affectkit.tasks.act_prompt.backbone import build_backbone
    from affectkit.tasks.act_prompt.config import ActPromptConfig
    from affectkit.tasks.act_prompt.train import build_classifier

    cfg = apply_overrides(ActPromptConfig(), [f"method={method}", "layer=2", "backbone.path=/models/resnet"])
    model = build_classifier(cfg, 4, backbone=build_backbone("resnet"))
    assert set(trained_keys(model, cfg)) == expected
