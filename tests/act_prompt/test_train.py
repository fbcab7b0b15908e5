"""act-prompt on the shared loop: every method trains a few steps on an ImageFolder set, only what the
method tunes moves, and the evaluation is top-1 accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from affectkit.tasks.act_prompt.synth import make

    out = tmp_path_factory.mktemp("ap-train")
    make(out, seed=0, quick=True, tasks=["textures"])
    return out


def _cfg(method: str, *extra: str):
    from affectkit.core.config import apply_overrides
    from affectkit.tasks.act_prompt.config import ActPromptConfig

    return apply_overrides(ActPromptConfig(), [f"method={method}", "layer=2", "data.task=textures",
                                               "backbone.pretrained=false", "train.batch_size=16",
                                               "train.max_steps=3", "train.eval_every=3", *extra])


@pytest.mark.parametrize(("method", "arch"), [("ap", "resnet"), ("ap", "vit"), ("vp", "resnet"), ("vpt", "vit"),
                                              ("linear", "resnet"), ("norm", "vit"), ("lora", "vit"),
                                              ("full", "resnet")])
def test_every_method_trains_only_what_it_tunes(folder, method, arch):
    from affectkit.core.device import get_accelerator
    from affectkit.core.loop import fit
    from affectkit.core.output import Output
    from affectkit.tasks.act_prompt.train import ActPromptLoop

    cfg = _cfg(method, f"backbone.arch={arch}")
    loop = ActPromptLoop()
    bundle = loop.build_data(cfg, folder)
    assert loop.classes == sorted(loop.classes) and len(loop.classes) == 8
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in loop.build_model(cfg).backbone.state_dict().items()}
    result = fit(loop, cfg, bundle, get_accelerator("no"), Output(quiet=True), seed=0)
    assert 0.0 <= result.metrics["accuracy"] <= 1.0 and result.metrics["loss"] > 0
    after = result.model.backbone.state_dict()
    moved = {k for k in before if k in after and not torch.equal(before[k], after[k])}
    if method in ("ap", "vp", "vpt", "linear"):
        assert not moved  # a frozen backbone in eval mode: weights and BatchNorm statistics unchanged
    elif method == "norm":
        assert moved and all("norm" in k for k in moved)
    elif method == "full":
        assert moved


def test_layer_out_of_range_and_auto_are_one_line_errors(folder):
    from affectkit.core.errors import UsageError
    from affectkit.tasks.act_prompt.train import ActPromptLoop

    loop = ActPromptLoop()
    loop.build_data(_cfg("ap"), folder)
    with pytest.raises(UsageError, match="out of range 0..4"):
        loop.build_model(_cfg("ap", "layer=9"))
    with pytest.raises(UsageError, match="sweep"):
        loop.build_model(_cfg("ap", "layer=auto"))


def test_label_mapping_needs_a_source_head(folder):
    from affectkit.core.errors import UsageError
    from affectkit.tasks.act_prompt.train import ActPromptLoop

    loop = ActPromptLoop()
    loop.build_data(_cfg("vp"), folder)
    with pytest.raises(UsageError, match="pretrained classifier"):
        loop.build_model(_cfg("vp", "prompt.head=mapping"))


def test_accuracy_and_loss_match_scikit_learn():
    import numpy as np
    from sklearn.metrics import accuracy_score, log_loss

    from affectkit.tasks.act_prompt.train import ActPromptLoop

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=50)
    found = ActPromptLoop().evaluate({"logits": logits, "labels": labels}, cfg=None)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert found["accuracy"] == accuracy_score(labels, logits.argmax(1))
    assert abs(found["loss"] - log_loss(labels, probs, labels=range(4))) < 1e-5
