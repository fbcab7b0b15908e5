"""The prompts and their acceptance invariants (numbered as in the design):
1 zero prompt = frozen model; 2 a step moves the prompt and head only; 3 trainable counts;
4 channel AP after a norm = that norm's bias shift; 5 AP at layer 0 with a border mask = VP pad;
6 VPT-shallow adds n tokens inside the blocks and keeps the CLS output; layer range errors."""

import math

import pytest
import torch

from affectkit.core.errors import UsageError
from affectkit.tasks.act_prompt.backbone import build_backbone
from affectkit.tasks.act_prompt.baselines import count_trainable, prepare
from affectkit.tasks.act_prompt.method_prompt import (
    ActivationPrompt,
    LabelMapping,
    PromptedClassifier,
    VisualPrompt,
    VPTShallow,
    border_mask,
    greedy_one_to_one,
    linear_head,
)

ARCHS = ["resnet", "vit"]


def _frozen(arch):
    torch.manual_seed(0)
    backbone = build_backbone(arch).eval()
    prepare(backbone, "ap")
    return backbone


@pytest.fixture(scope="module")
def backbones():
    return {arch: _frozen(arch) for arch in ARCHS}


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(3, 3, 32, 32)


def _configurations(backbone):
    for layer in range(backbone.num_layers + 1):
        vit_block = backbone.kind == "vit" and layer > 0  # there "spatial" is "tokens": [N, 1]
        for shape in ("full", "channel", "tokens" if vit_block else "spatial"):
            for placement in ("block", "norm") if layer else ("block",):
                yield layer, shape, placement


# 1 ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_zero_prompt_equals_the_frozen_model(backbones, images, arch):
    backbone = backbones[arch]
    head = linear_head(backbone.feature_dim, 4)
    with torch.no_grad():
        reference = backbone(images)
    for layer, shape, placement in _configurations(backbone):
        prompt = ActivationPrompt(backbone, layer, shape, placement)
        with prompt, torch.no_grad():
            features = backbone(images)
        assert torch.equal(features, reference), (layer, shape, placement)
        assert torch.equal(head(features), head(reference))
    assert torch.equal(backbone(images), reference)  # every hook was removed


# 2 ----------------------------------------------------------------------------------------------------
def _state(backbone):
    return {k: v.clone() for k, v in backbone.state_dict().items()}


@pytest.mark.parametrize("arch", ARCHS)
def test_a_step_moves_only_the_prompt_and_head(backbones, images, arch):
    backbone = backbones[arch]
    before = _state(backbone)
    head = linear_head(backbone.feature_dim, 4)
    prompts = [ActivationPrompt(backbone, 2, "full"), VisualPrompt(32, 4)]
    if arch == "vit":
        prompts.append(VPTShallow(backbone, 3))
    labels = torch.tensor([0, 1, 2])
    for prompt in prompts:
        model = PromptedClassifier(backbone, head, prompt)
        optimizer = torch.optim.Adam([*prompt.parameters(), *head.parameters()], lr=0.1)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        if hasattr(prompt, "detach"):
            prompt.detach()
        assert all(p.grad is None for p in backbone.parameters())
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prompt.parameters())
        assert all(p.grad is not None for p in head.parameters())
        optimizer.zero_grad()
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # parameters and BN buffers, bitwise


@pytest.mark.parametrize("arch,placement", [("resnet", "block"), ("resnet", "norm"), ("vit", "block"), ("vit", "norm")])
def test_layers_before_the_prompt_build_no_graph(backbones, images, arch, placement):
    backbone, k = backbones[arch], 2
    prompt = ActivationPrompt(backbone, k, "channel", placement).attach()
    flags = {}
    hooks = [backbone.blocks[i].register_forward_hook(lambda m, a, o, i=i: flags.__setitem__(i + 1, o.requires_grad))
             for i in range(backbone.num_layers)]
    backbone(images)
    prompt.detach()
    for h in hooks:
        h.remove()
    assert flags[k - 1] is False and flags[k] is True and flags[backbone.num_layers] is True


# 3 ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_trainable_count_equals_the_activation_or_its_channels(backbones, arch):
    backbone = backbones[arch]
    shapes = backbone.activation_shapes()
    for layer in range(backbone.num_layers + 1):
        full = ActivationPrompt(backbone, layer, "full")
        channel = ActivationPrompt(backbone, layer, "channel")
        assert full.num_trainable == math.prod(shapes[layer]) == count_trainable(full)
        channels = shapes[layer][0] if layer == 0 or backbone.kind == "cnn" else shapes[layer][-1]
        assert channel.num_trainable == channels == count_trainable(channel)
    spatial = ActivationPrompt(backbone, 1, "spatial")
    if backbone.kind == "cnn":
        assert spatial.delta.shape == (1, *shapes[1][1:])
    else:
        assert spatial.delta.shape == ActivationPrompt(backbone, 1, "tokens").delta.shape == (shapes[1][0], 1)


def test_vp_and_vpt_counts(backbones):
    assert VisualPrompt(32, 4).num_trainable == 3 * (32 ** 2 - 24 ** 2)
    assert VisualPrompt(32, 4, mode="expansive").num_trainable == 3 * (32 ** 2 - 24 ** 2)
    assert VPTShallow(backbones["vit"], 5).num_trainable == 5 * 64


# 4 ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_channel_prompt_after_norm_equals_norm_bias_shift(backbones, images, arch):
    backbone = backbones[arch]
    for k in range(1, backbone.num_layers + 1):
        torch.manual_seed(k)
        prompt = ActivationPrompt(backbone, k, "channel", "norm", init="normal", init_std=0.5)
        norm, bias = backbone.block_norm(k), backbone.block_norm(k).bias.detach().clone()
        with torch.no_grad():
            with prompt:
                prompted = backbone(images)
            plain = backbone(images)
            norm.bias += prompt.delta.flatten()
            try:
                shifted = backbone(images)
            finally:
                norm.bias.copy_(bias)
        assert not torch.allclose(prompted, plain, atol=1e-3)
        torch.testing.assert_close(prompted, shifted, rtol=1e-6, atol=1e-6)


# 5 ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_masked_layer0_prompt_equals_vp_pad(backbones, images, arch):
    backbone = backbones[arch]
    for pad in (1, 4):
        vp = VisualPrompt(32, pad, init="normal", init_std=0.3)
        ap = ActivationPrompt(backbone, 0, "full", mask=border_mask(32, pad))
        with torch.no_grad():
            ap.delta.copy_(vp.delta)
        with ap:
            via_ap = backbone(images)
        assert torch.equal(via_ap, backbone(vp(images)))
        assert ap.num_trainable == vp.num_trainable


# 6 ----------------------------------------------------------------------------------------------------
def test_vpt_shallow_adds_tokens_inside_the_blocks(backbones, images):
    backbone = backbones["vit"]
    seen = []
    hook = backbone.blocks[0].register_forward_hook(lambda m, a, o: seen.append(o.shape[1]))
    with VPTShallow(backbone, 5):
        features = backbone(images)
    backbone(images)
    hook.remove()
    assert seen == [65 + 5, 65] and features.shape == (3, 64)


def test_vpt_and_tokens_need_a_vit_and_layers_are_checked(backbones):
    with pytest.raises(UsageError, match="need a ViT"):
        VPTShallow(backbones["resnet"], 5)
    with pytest.raises(UsageError, match="'tokens' needs a ViT block"):
        ActivationPrompt(backbones["resnet"], 2, "tokens")
    with pytest.raises(UsageError, match=r"layer 5 is out of range 0\.\.4"):
        ActivationPrompt(backbones["resnet"], 5)
    with pytest.raises(UsageError, match=r"layer -1 is out of range 0\.\.6"):
        ActivationPrompt(backbones["vit"], -1)


# the rest of the API --------------------------------------------------------------------------------
def test_bad_arguments_are_usage_errors(backbones):
    vit = backbones["vit"]
    with pytest.raises(UsageError, match="unknown prompt shape 'ful'") as e:
        ActivationPrompt(vit, 1, "ful")
    assert "'full'" in e.value.hint
    with pytest.raises(UsageError, match="placement 'norm' needs a layer from 1"):
        ActivationPrompt(vit, 0, "full", "norm")
    with pytest.raises(UsageError, match="does not broadcast"):
        ActivationPrompt(vit, 0, "channel", mask=border_mask(32, 2))
    with pytest.raises(UsageError, match="pad width 16 does not fit"):
        VisualPrompt(32, 16)
    with pytest.raises(UsageError, match="unknown init"):
        VisualPrompt(32, 2, init="ones")


def test_tuple_outputs_get_the_prompt_on_element_0(backbones):
    prompt = ActivationPrompt(backbones["vit"], 1, "channel", init="normal")
    hidden, extra = torch.zeros(2, 65, 64), torch.ones(1)
    out = prompt._add_to_output(None, None, (hidden, extra))
    assert isinstance(out, tuple) and out[1] is extra and torch.equal(out[0][0, 0], prompt.delta[0])


def test_prompt_state_holds_the_prompt_only(backbones):
    prompt = ActivationPrompt(backbones["resnet"], 3, "full")
    assert list(prompt.state_dict()) == ["delta"] and len(list(prompt.parameters())) == 1


def test_expansive_vp_shrinks_the_image_into_a_sigmoid_border(images):
    vp = VisualPrompt(32, 4, mode="expansive", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out = vp(images)
    assert out.shape == (3, 3, 32, 32)
    torch.testing.assert_close(out[..., 0, :], torch.zeros(3, 3, 32))  # sigmoid(0) = 0.5 = the mean
    inner = torch.nn.functional.interpolate(images, size=(24, 24), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[..., 4:28, 4:28], inner, rtol=1e-5, atol=1e-5)


def test_label_mapping_is_greedy_one_to_one():
    freq = torch.tensor([[5, 1, 0], [6, 0, 2], [0, 4, 0], [0, 0, 1]])
    assert greedy_one_to_one(freq).tolist() == [1, 2, 3]  # 6 takes target 0, then 4, then the rest
    mapping = LabelMapping(num_source=4, num_target=2)
    logits = torch.eye(4)[[3, 3, 1, 0]]  # predictions: 3, 3, 1, 0
    mapping.update(logits, torch.tensor([0, 0, 1, 1]))
    assert mapping.mapping.tolist() == [3, 0]
    assert torch.equal(mapping(torch.arange(8.0).view(2, 4)), torch.tensor([[3.0, 0.0], [7.0, 4.0]]))
    with pytest.raises(UsageError, match="at least as many source classes"):
        LabelMapping(2, 3)
    with pytest.raises(UsageError, match="target labels must lie in 0..1"):
        mapping.update(logits, torch.tensor([0, 2, 1, 1]))
