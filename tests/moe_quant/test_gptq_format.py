"""`quantize --format gptq`: GPTQ tensors (qweight / qzeros / scales / g_idx) and GPTQModel's `dynamic`
per-module bits, checked against affectkit's own dequantization with an independent pure-torch
GPTQ reader; loading with the gptqmodel package when it is installed."""

import json
import re

import pytest
import torch
from safetensors.torch import load_file
from tests.cli.helpers import invoke
from tests.moe_quant.conftest import lm_batches, tiny_mixtral

from affectkit.tasks.moe_quant.config import QuantConfig
from affectkit.tasks.moe_quant.gptq_format import save_gptq
from affectkit.tasks.moe_quant.model import forward
from affectkit.tasks.moe_quant.moe_layers import moe_layers
from affectkit.tasks.moe_quant.quantize import quantize_in_memory


def unpack_int32(words: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """GPTQ's packing read back, written independently of affectkit's packer: along dim 0, the int32
    words of each column are one little-endian bitstream; code i is bits [i*bits, (i+1)*bits)."""
    w = words.to(torch.int64) & 0xFFFFFFFF  # [W, C]
    stream = ((w.unsqueeze(1) >> torch.arange(32).view(1, 32, 1)) & 1).reshape(-1, w.shape[1])  # [W*32, C]
    stream = stream[: count * bits].reshape(count, bits, -1)
    return (stream << torch.arange(bits).view(1, bits, 1)).sum(dim=1)  # [count, C]


def gptq_dequantize(state: dict, name: str, bits: int, in_features: int, v1: bool) -> torch.Tensor:
    """``[out, in]`` float weight of one GPTQ module, as GPTQ kernels compute it."""
    q = unpack_int32(state[f"{name}.qweight"], bits, in_features)  # [K, N]
    zeros = unpack_int32(state[f"{name}.qzeros"].T, bits, state[f"{name}.scales"].shape[1]).T  # [G, N]
    if v1:
        zeros = zeros + 1
    g = state[f"{name}.g_idx"].long()
    scales = state[f"{name}.scales"].float()
    return ((q.float() - zeros[g].float()) * scales[g]).T


def dynamic_bits(config: dict, name: str):
    """The bits a GPTQModel / vLLM loader gives module ``name``: the first matching rule, else the base."""
    for pattern, override in config["dynamic"].items():
        negative = pattern.startswith("-:")
        if re.match(pattern[2:] if pattern[:2] in ("-:", "+:") else pattern, name):
            return None if negative else override.get("bits", config["bits"])
    return config["bits"]


def _quantized(sym: bool, attn_bits=None):
    m = tiny_mixtral(hidden=32, ffn=64)
    batches = lm_batches(3)
    qc = QuantConfig(avg_bits=3.0, levels=[4, 3, 2], group_size=16, min_tokens=4, sym=sym, attn_bits=attn_bits)
    res = quantize_in_memory(m, qc, None, calib=batches)
    return m, res, batches


@pytest.mark.parametrize("sym,attn_bits", [(False, None), (True, 4)])
def test_gptq_tensors_dequantize_to_affectkit_weights(sym, attn_bits, tmp_path):
    from transformers import MixtralForCausalLM

    m, res, batches = _quantized(sym, attn_bits)
    saved = save_gptq(m, tmp_path, res["qcfg"])
    state = load_file(str(tmp_path / "model.safetensors"))
    config = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert config == json.loads((tmp_path / "quantize_config.json").read_text())
    assert config["quant_method"] == "gptq" and config["desc_act"] is False and config["sym"] is sym
    v1 = config["checkpoint_format"] == "gptq"
    assert saved["checkpoint_format"] == config["checkpoint_format"]
    if sym:
        assert v1  # symmetric zero points are 2**(bits-1) >= 1: the v1 format holds them

    # a float transformers-5 Mixtral built from the GPTQ tensors alone
    ref = MixtralForCausalLM(m.config).eval()
    sd = ref.state_dict()
    for key in sd:
        if key in state:
            sd[key] = state[key]
    for v in moe_layers(m):
        layer = v.name.split(".")[2]
        prefix = f"model.layers.{layer}.block_sparse_moe"
        sd[f"{v.name}.gate.weight"] = state[f"{prefix}.gate.weight"]
        gate_up, down = [], []
        for e, mods in enumerate(v.block.experts.experts):
            w = {}
            for p in ("w1", "w3", "w2"):
                name = f"{prefix}.experts.{e}.{p}"
                bits = dynamic_bits(config, name)
                assert bits == mods[p].bits, name  # the dynamic config gives each expert its own width
                w[p] = gptq_dequantize(state, name, bits, mods[p].in_features, v1)
                assert torch.equal(w[p], mods[p].dequantize()), name  # exact: the same codes, scales, zeros
            gate_up.append(torch.cat([w["w1"], w["w3"]]))
            down.append(w["w2"])
        sd[f"{v.name}.experts.gate_up_proj"] = torch.stack(gate_up)
        sd[f"{v.name}.experts.down_proj"] = torch.stack(down)
    for n, mod in m.named_modules():
        if n.endswith(("q_proj", "k_proj", "v_proj", "o_proj")):
            if attn_bits is None:
                assert dynamic_bits(config, n) is None and torch.equal(state[f"{n}.weight"], mod.weight)
            else:
                assert dynamic_bits(config, n) == attn_bits
                sd[f"{n}.weight"] = gptq_dequantize(state, n, attn_bits, mod.in_features, v1)
                assert torch.equal(sd[f"{n}.weight"], mod.dequantize())
    ref.load_state_dict(sd)
    with torch.no_grad():
        for b in batches:
            torch.testing.assert_close(forward(ref, b).logits, forward(m, b).logits, rtol=1e-5, atol=1e-5)


def test_pack_rows_int32_matches_the_reader():
    from affectkit.tasks.moe_quant.gptq_format import pack_rows_int32

    g = torch.Generator().manual_seed(0)
    for bits in (2, 3, 4, 8):
        codes = torch.randint(0, 1 << bits, (5, 64), generator=g)
        words = pack_rows_int32(codes, bits)
        assert words.dtype == torch.int32 and words.shape == (5, 64 * bits // 32)
        assert torch.equal(unpack_int32(words.T, bits, 64).T, codes)


@pytest.fixture
def float_model(float_model_dir):
    return float_model_dir


def test_quantize_format_gptq_cli(float_model, tmp_path):
    out = tmp_path / "q"
    res = invoke("--json", "quantize", "mixtral", "--model", str(float_model), "--bits", "auto", "--avg-bits", "3",
                 "--levels", "4,2", "--group-size", "16", "--nsamples", "4", "--seqlen", "16", "--no-eval",
                 "--format", "gptq", "--out", str(out))
    assert res.exit_code == 0, res.stderr
    conf = json.loads((out / "config.json").read_text())["quantization_config"]
    assert conf["quant_method"] == "gptq" and conf["bits"] in (4, 2) and (out / "report.json").exists()
    keys = load_file(str(out / "model.safetensors")).keys()
    assert "model.layers.0.block_sparse_moe.experts.3.w2.qweight" in keys
    assert "model.layers.0.block_sparse_moe.gate.weight" in keys and not any(".mlp." in k for k in keys)


@pytest.mark.parametrize("args,needle", [
    (["mixtral", "--bits", "auto", "--avg-bits", "2", "--levels", "3,1"], "1-bit"),
    (["mixtral", "--bits", "5"], "5-bit"),
    (["mixtral", "--bits", "4", "--attn-bits", "6"], "6-bit"),
    (["switch", "--bits", "4"], "only Mixtral"),
    (["mixtral", "--bits", "4", "--format", "gguf"], "--format 'gguf'"),
])
def test_gptq_usage_errors(args, needle, tmp_path):
    fmt = [] if "--format" in args else ["--format", "gptq"]
    res = invoke("quantize", *args, *fmt, "--out", str(tmp_path / "q"))
    assert res.exit_code == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0], res.stderr


def test_gptq_group_size_must_divide_the_model(float_model, tmp_path):
    res = invoke("quantize", "mixtral", "--model", str(float_model), "--bits", "4", "--group-size", "24",
                 "--format", "gptq", "--out", str(tmp_path / "q"))
    assert res.exit_code == 2 and "--group-size 24" in res.stderr


def test_gptqmodel_loads_the_export(tmp_path):
    gptqmodel = pytest.importorskip(
        "gptqmodel", reason="gptqmodel is not installed: its only release (7.7.0, an sdist) needs torch>=2.14.1 and "
                            "the venv pins torch 2.13.0; the tensors are checked against affectkit's dequantization above")
    m, res, batches = _quantized(sym=True)
    save_gptq(m, tmp_path, res["qcfg"])
    loaded = gptqmodel.GPTQModel.load(str(tmp_path), device="cpu", backend=gptqmodel.BACKEND.TORCH)
    with torch.no_grad():
        for b in batches:
            got = loaded.model(input_ids=b["input_ids"]).logits.float()
            torch.testing.assert_close(got, forward(m, b).logits, rtol=2e-2, atol=2e-2)
