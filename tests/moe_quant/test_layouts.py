"""Adapters, MixedBitExperts forward, coverage, v4/v5 equivalence, calibration fallback."""

import copy

import pytest
import torch
from tests.moe_quant.conftest import lm_batches, s2s_batches, tiny_mixtral, tiny_switch

from affectkit.tasks.moe_quant.baselines import rtn_quantize
from affectkit.tasks.moe_quant.method_allocate import allocate_from_orders
from affectkit.tasks.moe_quant.method_scores import expert_scores
from affectkit.tasks.moe_quant.model import forward
from affectkit.tasks.moe_quant.moe_layers import moe_layers
from affectkit.tasks.moe_quant.packed_modules import MixedBitExperts, QuantLinear, to_legacy_layout
from affectkit.tasks.moe_quant.quantize import layer_orders
from affectkit.tasks.moe_quant.quantize_pass import QuantOptions, packed_tensor_census, quantize_model


def test_adapters_find_every_moe_layer():
    m = tiny_mixtral()
    views = moe_layers(m)
    assert [v.name for v in views] == ["model.layers.0.mlp", "model.layers.1.mlp"]
    assert all(v.kind == "mixtral-fused" for v in views)
    w = views[0].expert_weights(3)
    assert w["w1"].shape == (48, 32) and w["w3"].shape == (48, 32) and w["w2"].shape == (32, 48)
    assert torch.equal(w["w1"], m.model.layers[0].mlp.experts.gate_up_proj[3, :48])
    assert views[0].router_weight().shape == (8, 32)
    s = tiny_switch()
    sv = moe_layers(s)
    assert [v.name for v in sv] == ["encoder.block.1.layer.1.mlp", "decoder.block.1.layer.2.mlp"]
    assert sv[1].expert_weights(0)["wi"].shape == (48, 32)
    legacy = to_legacy_layout(tiny_mixtral())
    assert [v.kind for v in moe_layers(legacy)] == ["mixtral-list", "mixtral-list"]


def test_legacy_layout_same_forward():
    m = tiny_mixtral()
    ids = lm_batches(1)[0]["input_ids"]
    with torch.no_grad():
        ref = m(ids).logits
        leg = to_legacy_layout(copy.deepcopy(m))(ids).logits
    assert torch.allclose(ref, leg, atol=1e-5)


def _fake_quant_float(model, bits, gs):
    """The float model with each expert's weights replaced by their RTN dequantization."""
    for v in moe_layers(model):
        for e in range(v.num_experts):
            v.set_expert_weights(e, {p: rtn_quantize(w, bits[v.name][e], gs).dequantize()
                                     for p, w in v.expert_weights(e).items()})
    return model


@pytest.mark.parametrize("arch", ["mixtral", "switch"])
def test_mixed_bit_experts_reproduce_forward(arch):
    m = tiny_mixtral() if arch == "mixtral" else tiny_switch()
    batches = lm_batches(2) if arch == "mixtral" else s2s_batches(2)
    bits = {v.name: [2, 3, 4, 8, 1, 5, 6, 7] for v in moe_layers(m)}
    ref = _fake_quant_float(copy.deepcopy(m), bits, 16)
    quantize_model(m, bits, QuantOptions(method="rtn", group_size=16), None, forward)
    assert all(isinstance(v.block.experts, MixedBitExperts) for v in moe_layers(m))
    with torch.no_grad():
        for b in batches:
            assert torch.allclose(forward(m, b).logits, forward(ref, b).logits, atol=1e-5)


@pytest.mark.parametrize("arch", ["mixtral", "switch"])
def test_every_expert_weight_is_packed_at_its_bits(arch):
    m = tiny_mixtral() if arch == "mixtral" else tiny_switch()
    batches = lm_batches(2) if arch == "mixtral" else s2s_batches(2)
    scores = expert_scores(m)
    alloc = allocate_from_orders(layer_orders("combined", scores), [4, 3, 2], 3.0, scores=scores)
    quantize_model(m, alloc.expert_bits(), QuantOptions(method="gptq", group_size=16, min_tokens=4), batches, forward)
    census = packed_tensor_census(m)
    per_expert = 3 if arch == "mixtral" else 2
    for v in moe_layers(m):
        assert census["layers"][v.name]["packed"] == 8 * per_expert
        assert census["layers"][v.name]["bits"] == alloc.expert_bits()[v.name]
        for e, mods in enumerate(v.block.experts.experts):
            for p in v.proj_names:
                assert isinstance(mods[p], QuantLinear) and mods[p].bits == alloc.expert_bits()[v.name][e]
    # no float expert weight is left anywhere
    names = [n for n, _ in m.named_parameters()]
    assert not any("experts" in n for n in names)


def test_v4_and_v5_layouts_same_allocation_and_rtn_weights():
    v5 = tiny_mixtral(seed=3)
    v4 = to_legacy_layout(copy.deepcopy(v5))
    s5, s4 = expert_scores(v5), expert_scores(v4)
    a5 = allocate_from_orders(layer_orders("combined", s5), [3, 2], 2.5)
    a4 = allocate_from_orders(layer_orders("combined", s4), [3, 2], 2.5)
    assert a5.expert_bits() == a4.expert_bits()
    opts = QuantOptions(method="rtn", group_size=16)
    quantize_model(v5, a5.expert_bits(), opts, None, forward)
    quantize_model(v4, a4.expert_bits(), opts, None, forward)
    for l5, l4 in zip(moe_layers(v5), moe_layers(v4), strict=True):
        for e in range(8):
            w5, w4 = l5.expert_weights(e), l4.expert_weights(e)
            for p in ("w1", "w2", "w3"):
                assert torch.equal(w5[p], l4.block.experts[e].__getattr__(p).dequantize())
                assert torch.equal(w5[p], w4[p])
    ids = lm_batches(1)[0]["input_ids"]
    with torch.no_grad():
        assert torch.allclose(v5(ids).logits, v4(ids).logits, atol=1e-5)


def test_uncalibrated_expert_falls_back_to_rtn_not_zero():
    m = tiny_mixtral()
    # make expert 5 of layer 0 unreachable: mask its router logit
    gate = m.model.layers[0].mlp.gate

    def masked(hidden):
        logits = torch.nn.functional.linear(hidden.reshape(-1, 32), gate.weight)
        logits[:, 5] = float("-inf")
        w, i = torch.topk(torch.softmax(logits, -1), 2, dim=-1)
        return logits, w / w.sum(-1, keepdim=True), i

    gate.forward = masked
    w_before = moe_layers(m)[0].expert_weights(5)
    w_before = {k: v.clone() for k, v in w_before.items()}
    bits = {v.name: [3] * 8 for v in moe_layers(m)}
    rep = quantize_model(m, bits, QuantOptions(method="gptq", group_size=16, min_tokens=4), lm_batches(4), forward)
    row = rep["layers"]["model.layers.0.mlp"][5]
    assert row["calib_tokens"] == 0 and row["method"] == "rtn-fallback"
    got = moe_layers(m)[0].expert_weights(5)
    for p in ("w1", "w2", "w3"):
        assert got[p].abs().sum() > 0
        assert torch.equal(got[p], rtn_quantize(w_before[p], 3, 16).dequantize())
    assert sum(r["calib_tokens"] for r in rep["layers"]["model.layers.0.mlp"]) == 4 * 2 * 16 * 2  # top-2


def test_gptq_model_beats_rtn_model_on_output_error():
    m = tiny_mixtral(seed=1)
    batches = lm_batches(6, seq=32)
    bits = {v.name: [2] * 8 for v in moe_layers(m)}
    with torch.no_grad():
        ref = torch.cat([forward(m, b).logits for b in batches])
    errs = {}
    for method in ("rtn", "gptq"):
        q = copy.deepcopy(m)
        quantize_model(q, bits, QuantOptions(method=method, group_size=0, min_tokens=8), batches, forward)
        with torch.no_grad():
            out = torch.cat([forward(q, b).logits for b in batches])
        errs[method] = float(((out - ref) ** 2).mean())
    assert errs["gptq"] < errs["rtn"]


def test_attention_bits_and_router_flag():
    m = tiny_mixtral()
    bits = {v.name: [3] * 8 for v in moe_layers(m)}
    router_before = m.model.layers[0].mlp.gate.weight.clone()
    rep = quantize_model(m, bits, QuantOptions(method="rtn", group_size=16, attn_bits=4), None, forward)
    assert len(rep["attention"]) == 8
    assert isinstance(m.model.layers[1].self_attn.o_proj, QuantLinear)
    assert torch.equal(m.model.layers[0].mlp.gate.weight, router_before)  # router stays float by default
    m2 = tiny_mixtral()
    quantize_model(m2, bits, QuantOptions(method="rtn", group_size=16, quantize_router=True, router_bits=2), None, forward)
    assert len(torch.unique(m2.model.layers[0].mlp.gate.weight[0])) <= 2 * 4  # 2 bits x 2 groups


@pytest.mark.parametrize("order,policy", [("frequency", "paper"), ("sensitivity", "paper"), ("combined", "milp"),
                                          ("random", "paper"), ("inverted", "paper"), ("variance", "paper")])
def test_calibration_orders_and_policies(order, policy):
    from affectkit.tasks.moe_quant.config import QuantConfig
    from affectkit.tasks.moe_quant.quantize import quantize_in_memory
    from affectkit.tasks.moe_quant.quantize_pass import count_routed_tokens

    m = tiny_mixtral(seed=2)
    batches = lm_batches(3)
    counts = count_routed_tokens(m, batches, forward)
    qc = QuantConfig(avg_bits=2.5, levels=[3, 2], order=order, policy=policy, group_size=16, min_tokens=4)
    res = quantize_in_memory(m, qc, None, calib=batches)
    assert res["qcfg"]["allocation"]["achieved_avg_bits"] <= 2.5 + 1e-9
    for layer in res["report"]["layers"]:
        bits = [e["bits"] for e in layer["experts"]]
        assert sorted(bits) == [2, 2, 2, 2, 3, 3, 3, 3] or policy == "milp"
        if order == "frequency":
            c = counts[layer["name"]]
            top = sorted(range(8), key=lambda e: -c[e])[:4]
            assert all(bits[e] == 3 for e in top) or len(set(c)) < 8
        if order == "sensitivity":
            s = [e["sensitivity"] for e in layer["experts"]]
            assert bits[max(range(8), key=lambda e: s[e])] == 3
        assert [e["calib_tokens"] for e in layer["experts"]] == counts[layer["name"]]


def test_finetune_snapshots_router_before_finetuning(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from affectkit.tasks.moe_quant.config import LMConfig
    from affectkit.tasks.moe_quant.model import load_float_model, snapshot_routers
    from affectkit.tasks.moe_quant.train import train_lm

    base = LMConfig(steps=3, seq_len=32, batch_size=2, hidden_size=32, intermediate_size=32)
    train_lm(base, tmp_path / "pre")
    pre_routers = snapshot_routers(load_float_model(tmp_path / "pre"))
    ft = LMConfig(steps=3, seq_len=32, batch_size=2, corpus="stdlib", init_from=str(tmp_path / "pre"))
    train_lm(ft, tmp_path / "ft")
    snap = load_file(str(tmp_path / "ft" / "router_init.safetensors"))
    after = snapshot_routers(load_float_model(tmp_path / "ft"))
    for k in pre_routers:
        assert torch.equal(snap[k], pre_routers[k])
        assert not torch.equal(after[k], pre_routers[k])
