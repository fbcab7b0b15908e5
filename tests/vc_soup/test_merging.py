import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.vc_soup.merge_io import merge_models, mergekit_yaml, read_mergekit_yaml, save_merged


def _model(d, tensors):
    d.mkdir(parents=True)
    save_file(tensors, str(d / "model.safetensors"))
    (d / "config.json").write_text("{}")
    return d


def _adapter(d, A, B, alpha=1, r=1, fan=False):
    d.mkdir(parents=True)
    save_file({"base_model.model.lin.lora_A.weight": A, "base_model.model.lin.lora_B.weight": B}, str(d / "adapter_model.safetensors"))
    (d / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": alpha, "fan_in_fan_out": fan}))
    return d


def test_linear_with_and_without_normalisation(tmp_path):
    a = _model(tmp_path / "a", {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([4.0])})
    b = _model(tmp_path / "b", {"w": torch.tensor([3.0, 6.0]), "b": torch.tensor([0.0])})
    raw, _ = merge_models([a, b], [0.1, 1.0], normalize=False)
    torch.testing.assert_close(raw["w"], torch.tensor([3.1, 6.2]))
    torch.testing.assert_close(raw["b"], torch.tensor([0.4]))
    norm, _ = merge_models([a, b], [0.1, 1.0], normalize=True)
    torch.testing.assert_close(norm["w"], torch.tensor([3.1, 6.2]) / 1.1)


def test_delta_space_equals_full_when_weights_sum_to_one(tmp_path):
    base = _model(tmp_path / "base", {"w": torch.tensor([1.0, 1.0])})
    a = _model(tmp_path / "a", {"w": torch.tensor([2.0, 0.0])})
    b = _model(tmp_path / "b", {"w": torch.tensor([0.0, 4.0])})
    full, _ = merge_models([a, b], [0.3, 0.7])
    delta, _ = merge_models([a, b], [0.3, 0.7], space="delta", base=base)
    torch.testing.assert_close(full["w"], delta["w"])
    # without normalisation and sum != 1 they differ: base + 1*(a-base) + 1*(b-base) = a + b - base
    d2, _ = merge_models([a, b], [1.0, 1.0], space="delta", base=base)
    torch.testing.assert_close(d2["w"], torch.tensor([1.0, 3.0]))


def test_factor_space_differs_from_delta_space(tmp_path):
    # 1x1 example of the brief: (A1,B1) = (2,1), (A2,B2) = (1,2), both deltas = 2
    base = _model(tmp_path / "base", {"lin.weight": torch.zeros(1, 1)})
    p1 = _adapter(tmp_path / "p1", torch.tensor([[2.0]]), torch.tensor([[1.0]]))
    p2 = _adapter(tmp_path / "p2", torch.tensor([[1.0]]), torch.tensor([[2.0]]))
    full, _ = merge_models([p1, p2], [0.5, 0.5], space="full", base=base)
    assert full["lin.weight"].item() == pytest.approx(2.0)
    fac, _ = merge_models([p1, p2], [0.5, 0.5], space="lora-factors")
    merged_delta = (fac["base_model.model.lin.lora_B.weight"] @ fac["base_model.model.lin.lora_A.weight"]).item()
    assert merged_delta == pytest.approx(2.25)


def test_dtype_kept_and_bytes_identical(tmp_path):
    a = _model(tmp_path / "a", {"w": torch.randn(8, 8, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)})
    b = _model(tmp_path / "b", {"w": torch.randn(8, 8, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)})
    merged, src = merge_models([a, b], [0.5, 0.5])
    assert merged["w"].dtype == torch.bfloat16
    expect = (0.5 * load_file(str(a / "model.safetensors"))["w"].float() + 0.5 * load_file(str(b / "model.safetensors"))["w"].float()).to(torch.bfloat16)
    torch.testing.assert_close(merged["w"], expect)
    p1 = save_merged(merged, tmp_path / "o1", src, adapter=False)
    merged2, src2 = merge_models([a, b], [0.5, 0.5])
    p2 = save_merged(merged2, tmp_path / "o2", src2, adapter=False)
    assert p1.read_bytes() == p2.read_bytes()
    assert (tmp_path / "o1" / "config.json").exists()


def test_errors(tmp_path):
    a = _model(tmp_path / "a", {"w": torch.zeros(2)})
    b = _model(tmp_path / "b", {"v": torch.zeros(2)})
    c = _model(tmp_path / "c", {"w": torch.zeros(3)})
    i = _model(tmp_path / "i", {"w": torch.zeros(2, dtype=torch.int64)})
    with pytest.raises(DataError, match="tensor names differ"):
        merge_models([a, b], [0.5, 0.5])
    with pytest.raises(DataError, match="shape"):
        merge_models([a, c], [0.5, 0.5])
    with pytest.raises(DataError, match="floating-point"):
        merge_models([a, i], [0.5, 0.5])
    with pytest.raises(UsageError, match="weights"):
        merge_models([a, a], [0.5])
    with pytest.raises(DataError, match="not found"):
        merge_models([a, tmp_path / "nope"], [0.5, 0.5])
    with pytest.raises(UsageError):
        merge_models([a, a], [0.5, 0.5], space="delta")


def test_mergekit_yaml_roundtrip(tmp_path):
    text = mergekit_yaml(["m1", "m2"], [0.3, 0.7], normalize=False)
    p = tmp_path / "m.yml"
    p.write_text(text)
    cfg = read_mergekit_yaml(p)
    assert cfg["models"] == ["m1", "m2"] and cfg["weights"] == [0.3, 0.7] and cfg["normalize"] is False
    p.write_text("merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 1}\n")
    assert read_mergekit_yaml(p)["normalize"] is True  # mergekit's default
    p.write_text("merge_method: ties\nmodels: []\n")
    with pytest.raises(DataError, match="not supported"):
        read_mergekit_yaml(p)
