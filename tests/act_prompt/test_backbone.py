"""Backbone: block indexing, shapes, the norm used by placement "norm", save/load, one-line errors."""

import json

import pytest
import torch

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.act_prompt.backbone import build_backbone, load_backbone, save_backbone


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return build_backbone("resnet").eval()


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return build_backbone("vit").eval()


def test_resnet_blocks_shapes_and_features(resnet):
    assert resnet.kind == "cnn" and resnet.num_layers == 4
    assert resnet.block_names == [f"encoder.stages.{i}.layers.0" for i in range(4)]
    shapes = resnet.activation_shapes()
    assert shapes == [(3, 32, 32), (16, 8, 8), (32, 4, 4), (64, 2, 2), (128, 1, 1)]
    assert resnet(torch.randn(2, 3, 32, 32)).shape == (2, resnet.feature_dim) == (2, 128)


def test_vit_blocks_shapes_and_features(vit):
    assert vit.kind == "vit" and vit.num_layers == 6
    assert vit.block_names == [f"layers.{i}" for i in range(6)]
    assert vit.activation_shapes() == [(3, 32, 32)] + [(65, 64)] * 6  # 1 CLS + 8x8 patches
    x = torch.randn(2, 3, 32, 32)
    out = vit.model(x).last_hidden_state[:, 0]
    assert torch.equal(vit(x), out) and out.shape == (2, 64)


def test_layer_k_is_the_output_of_block_k(resnet):
    seen = []
    handle = resnet.blocks[1].register_forward_hook(lambda m, a, o: seen.append(tuple(o.shape[1:])))
    resnet(torch.randn(1, 3, 32, 32))
    handle.remove()
    assert seen == [resnet.activation_shapes()[2]]


def test_block_norm_is_the_last_main_branch_norm(resnet, vit):
    for k, block in enumerate(resnet.blocks, start=1):
        assert resnet.block_norm(k) is block.layer[-1].normalization  # not the shortcut's BatchNorm
    for k, block in enumerate(vit.blocks, start=1):
        assert vit.block_norm(k) is block.layernorm_after
    with pytest.raises(UsageError, match="layer 0 is the input image"):
        vit.block_norm(0)


def test_norm_modules(resnet, vit):
    bn = resnet.norm_modules("batchnorm")
    assert len(bn) == 1 + 2 * 4 + 3 and resnet.norm_modules("layernorm") == []  # stem, 2 per block, 3 shortcuts
    assert len(vit.norm_modules()) == 2 * 6 + 1
    with pytest.raises(UsageError, match="norm kind 'groupnorm'"):
        vit.norm_modules("groupnorm")


def test_layer_out_of_range_names_the_range(vit):
    with pytest.raises(UsageError, match=r"layer 7 is out of range 0\.\.6"):
        vit.check_layer(7)


def test_build_errors():
    with pytest.raises(UsageError, match="unknown architecture 'vitt'") as e:
        build_backbone("vitt")
    assert "'vit'" in e.value.hint
    with pytest.raises(UsageError, match="unknown ViTConfig option 'hiden_size'") as e:
        build_backbone("vit", hiden_size=32)
    assert "hidden_size" in e.value.hint
    with pytest.raises(UsageError, match="not a multiple of the patch size"):
        build_backbone("vit", image_size=30)


@pytest.mark.parametrize("arch", ["resnet", "vit"])
def test_save_load_round_trip_with_head(tmp_path, arch):
    torch.manual_seed(1)
    backbone = build_backbone(arch).eval()
    head = torch.nn.Linear(backbone.feature_dim, 5)
    save_backbone(backbone, tmp_path / "m", head=head, classes=list("abcde"))
    loaded = load_backbone(tmp_path / "m").eval()
    assert loaded.image_size == 32 and loaded.block_names == backbone.block_names
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), backbone(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(loaded.source_head.weight, head.weight)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["id2label"]["4"] == "e"


def test_save_load_without_head(tmp_path, resnet):
    save_backbone(resnet, tmp_path / "plain")
    loaded = load_backbone(tmp_path / "plain").eval()
    assert loaded.source_head is None and loaded.image_size == 32
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), resnet(x))


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match="nope: model directory not found"):
        load_backbone(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"config\.json.*not found"):
        load_backbone(empty)
    (empty / "config.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_backbone(empty)
    (empty / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(DataError, match="model_type 'bert' is not supported") as e:
        load_backbone(empty)
    assert str(empty) in e.value.message and "\n" not in e.value.message


def test_missing_or_corrupt_weights_are_data_errors(tmp_path, vit):
    vit.model.config.save_pretrained(tmp_path / "cfg")
    with pytest.raises(DataError, match="could not load the weights") as e:
        load_backbone(tmp_path / "cfg")
    assert "\n" not in e.value.message
    (tmp_path / "cfg" / "model.safetensors").write_bytes(b"not safetensors" * 4)
    with pytest.raises(DataError, match="cfg: could not load the weights"):
        load_backbone(tmp_path / "cfg")


def test_timm_without_timm_is_a_usage_error():
    try:
        import timm  # noqa: F401
    except Exception:
        with pytest.raises(UsageError, match="timm is not installed"):
            load_backbone("timm:resnet18")
    else:
        pytest.skip("timm is installed")


def test_timm_backbone_when_available():
    pytest.importorskip("timm")
    backbone = load_backbone("timm:resnet18", image_size=32)
    assert backbone.kind == "cnn" and backbone.num_layers == 8
    assert backbone(torch.randn(1, 3, 32, 32)).shape == (1, backbone.feature_dim)
