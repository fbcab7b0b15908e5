"""Baselines: the exact trainable set per method, LoRA's count against peft's own report, norm tuning
with frozen BatchNorm statistics, and one-line errors for unknown methods and options."""

import copy

import pytest
import torch

from affectkit.core.errors import UsageError
from affectkit.tasks.act_prompt.backbone import build_backbone
from affectkit.tasks.act_prompt.baselines import (
    count_trainable,
    lora_config,
    prepare,
    train_mode,
)
from affectkit.tasks.act_prompt.method_prompt import ActivationPrompt, linear_head


def _backbone(arch):
    torch.manual_seed(0)
    return build_backbone(arch)


def _ids(params):
    return {id(p) for p in params}


@pytest.mark.parametrize("arch", ["resnet", "vit"])
@pytest.mark.parametrize("method", ["linear", "ap", "vp", "vpt"])
def test_frozen_backbone_methods_train_nothing_in_it(arch, method):
    backbone = _backbone(arch)
    assert prepare(backbone, method) == [] and count_trainable(backbone) == 0


@pytest.mark.parametrize("arch", ["resnet", "vit"])
def test_norm_tuning_trains_norm_weights_and_biases_only(arch):
    backbone = _backbone(arch)
    params = prepare(backbone, "norm")
    expected = [p for _, m in backbone.norm_modules() for p in (m.weight, m.bias)]
    assert _ids(params) == _ids(expected) and len(params) == len(expected)
    assert count_trainable(backbone) == sum(p.numel() for p in expected)


def test_full_trains_every_backbone_parameter_but_not_the_source_head():
    backbone = _backbone("vit")
    backbone.source_head = torch.nn.Linear(backbone.feature_dim, 3)
    params = prepare(backbone, "full")
    assert _ids(params) == _ids(backbone.model.parameters())
    assert not any(p.requires_grad for p in backbone.source_head.parameters())


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")  # peft's PeftModel wrapper
@pytest.mark.parametrize("arch", ["resnet", "vit"])
def test_lora_count_equals_peft_report(arch):
    from peft import get_peft_model

    backbone = _backbone(arch).eval()
    reference = copy.deepcopy(backbone.model)
    x = torch.randn(2, 3, 32, 32)
    before = backbone(x)
    params = prepare(backbone, "lora", r=4, alpha=8)
    assert params and all("lora_" in n for n, p in backbone.model.named_parameters() if p.requires_grad)
    peft_model = get_peft_model(reference, lora_config(backbone, r=4, alpha=8))
    assert count_trainable(backbone) == sum(p.numel() for p in params) == peft_model.get_nb_trainable_parameters()[0]
    assert torch.equal(backbone(x), before)  # LoRA's B starts at zero
    with pytest.raises(UsageError, match="already has LoRA adapters"):
        prepare(backbone, "lora")


def test_lora_targets_query_value_on_the_vit():
    backbone = _backbone("vit")
    prepare(backbone, "lora")
    wrapped = {n.rsplit(".", 1)[0] for n, p in backbone.model.named_parameters() if p.requires_grad}
    assert {w.split(".")[-3] for w in wrapped} == {"q_proj", "v_proj"}


def test_norm_tuning_keeps_running_stats_through_a_step():
    backbone = _backbone("resnet")
    params = prepare(backbone, "norm")
    train_mode(backbone, "norm")
    stats = {k: v.clone() for k, v in backbone.state_dict().items() if "running" in k or "num_batches" in k}
    weights = [p.detach().clone() for p in params]
    head = linear_head(backbone.feature_dim, 3)
    optimizer = torch.optim.SGD([*params, *head.parameters()], lr=0.1)
    loss = torch.nn.functional.cross_entropy(head(backbone(torch.randn(4, 3, 32, 32))), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    state = backbone.state_dict()
    assert stats and all(torch.equal(stats[k], state[k]) for k in stats)
    assert any(not torch.equal(w, p) for w, p in zip(weights, params, strict=True))


def test_full_fine_tuning_updates_running_stats():
    backbone = _backbone("resnet")
    prepare(backbone, "full")
    train_mode(backbone, "full")
    mean = backbone.block_norm(1).running_mean.clone()
    backbone(torch.randn(4, 3, 32, 32))
    assert not torch.equal(mean, backbone.block_norm(1).running_mean)
    assert not train_mode(backbone, "ap").training


def test_count_trainable_counts_prompts_and_heads_once():
    backbone = _backbone("resnet")
    prepare(backbone, "ap")
    prompt = ActivationPrompt(backbone, 2, "channel")
    head = linear_head(backbone.feature_dim, 3)
    assert count_trainable(backbone, prompt, head, head, None) == 32 + 128 * 3 + 3


def test_unknown_method_and_options_are_usage_errors():
    backbone = _backbone("vit")
    with pytest.raises(UsageError, match="unknown method 'lroa'.*linear, norm, full, lora") as e:
        prepare(backbone, "lroa")
    assert "'lora'" in e.value.hint
    with pytest.raises(UsageError, match="method 'norm' has no option 'r'"):
        prepare(backbone, "norm", r=4)
    with pytest.raises(UsageError, match="method 'lora' has no option 'rank'.*target_modules"):
        prepare(backbone, "lora", rank=4)
    with pytest.raises(UsageError, match="LoRA rank r must be a positive integer"):
        prepare(backbone, "lora", r=0)
    with pytest.raises(UsageError, match="LoRA could not be injected"):
        prepare(backbone, "lora", target_modules=["nothing_here"])
