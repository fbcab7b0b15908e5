"""The cost measures: saved-for-backward bytes by hand, and the mechanism AP's efficiency rests on (a deeper
prompt keeps fewer activations; VP, at the input, keeps the most)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def test_activation_bytes_by_hand():
    from affectkit.tasks.act_prompt.costs import activation_bytes, state_bytes

    lin = nn.Linear(4, 3)
    x = torch.randn(5, 4)
    # autograd keeps x (for the weight gradient) and nothing else: 5 * 4 float32
    assert activation_bytes(lin, x, lambda y: y.sum()) == 5 * 4 * 4
    lin.weight.requires_grad_(False)
    lin.bias.requires_grad_(False)
    assert activation_bytes(lin, x, lambda y: y.sum()) == 0  # nothing trains: nothing is kept
    lin.bias.requires_grad_(True)
    assert state_bytes(lin) == 4 * 4 * 3


def test_a_deeper_prompt_keeps_fewer_activations_than_vp():
    from affectkit.tasks.act_prompt.backbone import build_backbone
    from affectkit.tasks.act_prompt.baselines import prepare
    from affectkit.tasks.act_prompt.costs import activation_bytes, cost_report
    from affectkit.tasks.act_prompt.method_prompt import (
        ActivationPrompt,
        PromptedClassifier,
        VisualPrompt,
        linear_head,
    )

    torch.manual_seed(0)
    backbone = build_backbone("resnet", image_size=32).eval()
    prepare(backbone, "ap")
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))

    def loss(logits):
        return F.cross_entropy(logits, y)

    def saved(prompt):
        model = PromptedClassifier(backbone, linear_head(backbone.feature_dim, 4), prompt)
        try:
            return activation_bytes(model, x, loss), model
        finally:
            if hasattr(prompt, "detach"):
                prompt.detach()

    vp, _ = saved(VisualPrompt(32, 4))
    by_layer = [saved(ActivationPrompt(backbone, k))[0] for k in range(1, backbone.num_layers + 1)]
    assert vp > by_layer[0] and all(a > b for a, b in zip(by_layer, by_layer[1:], strict=False)), (vp, by_layer)
    prompt = ActivationPrompt(backbone, 2)
    report = cost_report(PromptedClassifier(backbone, linear_head(backbone.feature_dim, 4), prompt), x, y, repeats=2)
    prompt.detach()
    assert report["trainable_params"] == prompt.num_trainable + backbone.feature_dim * 4 + 4
    assert report["activation_mb"] > 0 and report["train_step_s"] > 0 and report["images_per_s"] > 0
