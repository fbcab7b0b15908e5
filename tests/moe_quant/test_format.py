"""Save / reload through from_pretrained and load_quantized; bytes on disk; report contents."""

import json

import pytest
import torch
from tests.moe_quant.conftest import lm_batches, s2s_batches, tiny_mixtral, tiny_switch

from affectkit.tasks.moe_quant.config import QuantConfig
from affectkit.tasks.moe_quant.hf_format import load_quantized, register_with_transformers, save_quantized
from affectkit.tasks.moe_quant.model import forward
from affectkit.tasks.moe_quant.quantize import quantize_in_memory
from affectkit.tasks.moe_quant.quantize_pass import packed_tensor_census


@pytest.mark.parametrize("arch", ["mixtral", "switch"])
def test_roundtrip_from_pretrained_and_load_quantized(arch, tmp_path):
    m = tiny_mixtral() if arch == "mixtral" else tiny_switch()
    batches = lm_batches(3) if arch == "mixtral" else s2s_batches(3)
    qc = QuantConfig(avg_bits=3.0, levels=[4, 3, 2], group_size=16, min_tokens=4, attn_bits=4)
    res = quantize_in_memory(m, qc, None, calib=batches)
    save_quantized(m, tmp_path, res["qcfg"], res["report"])
    conf = json.loads((tmp_path / "config.json").read_text())
    q = conf["quantization_config"]
    assert q["quant_method"] == "affectkit_moe_mp" and q["group_size"] == 16 and q["method"] == "gptq"
    assert q["allocation"]["achieved_avg_bits"] == pytest.approx(3.0)
    assert set(q["expert_bits"]) == set(res["qcfg"]["expert_bits"])
    rep = json.loads((tmp_path / "report.json").read_text())
    row = rep["layers"][0]["experts"][0]
    assert {"lambda", "maxvar", "rank", "bits", "calib_tokens"} <= set(row)

    register_with_transformers()
    if arch == "mixtral":
        from transformers import AutoModelForCausalLM as Auto
    else:
        from transformers import SwitchTransformersForConditionalGeneration as Auto
    hf = Auto.from_pretrained(tmp_path).eval()
    ak = load_quantized(tmp_path)
    with torch.no_grad():
        for b in batches:
            ref = forward(m, b).logits
            assert torch.equal(forward(hf, b).logits, ref)
            assert torch.equal(forward(ak, b).logits, ref)
    assert packed_tensor_census(hf)["layers"] == packed_tensor_census(m)["layers"]


def test_expert_bytes_on_disk_match_bits(tmp_path):
    from safetensors import safe_open

    m = tiny_mixtral(hidden=64, ffn=128)
    qc = QuantConfig(avg_bits=2.5, levels=[3, 2], group_size=64, method="rtn")
    res = quantize_in_memory(m, qc, None, calib=lm_batches(1))
    save_quantized(m, tmp_path, res["qcfg"], res["report"])
    expert_bytes, expected = 0, 0
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        for k in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
            if ".experts." not in k:
                continue
            t = f.get_tensor(k)
            expert_bytes += t.numel() * t.element_size()
            if k.endswith("qweight"):
                mod = m.get_submodule(k.rsplit(".", 1)[0])
                expected += mod.in_features * mod.out_features * mod.bits / 8
            else:  # scales and zeros (fp16)
                expected += t.numel() * 2
    assert abs(expert_bytes - expected) / expected < 0.05
    assert packed_tensor_census(m)["expert_param_bits"] / packed_tensor_census(m)["expert_params"] == pytest.approx(2.5)


def test_load_quantized_rejects_plain_dirs(tmp_path):
    from affectkit.core.errors import DataError

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mixtral"}))
    with pytest.raises(DataError, match="quantization_config"):
        load_quantized(tmp_path)
    with pytest.raises(DataError):
        load_quantized(tmp_path / "missing")


def test_package_import_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, affectkit; f = affectkit.load_quantized; "
            "import affectkit.tasks.moe_quant as t; assert t.TASK.name == 'moe-quant'; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_external_model_with_its_own_tokenizer(tmp_path):
    """A checkpoint not trained by affectkit: calibration and evaluation go through its tokenizer,
    and the quantized directory carries the tokenizer files."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import MixtralConfig, MixtralForCausalLM, PreTrainedTokenizerFast

    from affectkit.tasks.moe_quant.metrics import evaluate_model
    from affectkit.tasks.moe_quant.quantize import run_quantize
    from affectkit.tasks.moe_quant.synth import pydoc_bytes

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([pydoc_bytes()[:50_000].decode("utf-8", "ignore")],
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"]))
    src = tmp_path / "ext"
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(src)
    torch.manual_seed(0)
    cfg = MixtralConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                        max_position_embeddings=256, tie_word_embeddings=False)
    MixtralForCausalLM(cfg).save_pretrained(src)
    qc = QuantConfig(avg_bits=2.5, levels=[3, 2], nsamples=8, seqlen=32, group_size=16)
    res = run_quantize("mixtral", src, qc, tmp_path / "q")
    assert res["achieved_avg_bits"] == pytest.approx(2.5)
    assert (tmp_path / "q" / "tokenizer.json").exists()
    ev = evaluate_model(tmp_path / "q")
    assert ev["metrics"]["ppl"] == pytest.approx(res["quantized"]["ppl"], rel=1e-6)
    assert json.loads((tmp_path / "q" / "config.json").read_text())["quantization_config"]["allocation"]["router_ref"] == "none"
