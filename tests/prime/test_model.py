"""The PRIME encoder: tokenisers, key padding, fills, LoRA and the adaptation modes."""

from __future__ import annotations

import pytest
import torch

from affectkit.core.errors import UsageError
from affectkit.tasks.prime.config import BankConfig, ModelConfig, PretrainConfig
from affectkit.tasks.prime.heads import DownstreamModel
from affectkit.tasks.prime.model import ModalitySpec, PrimeModel, lora_wrap, set_mode

D = 16
GROUPS = [[0, 1, 2], [3, 4, 5, 6], [7, 8]]


def _specs():
    return [ModalitySpec("wsi", "bag", 6), ModalitySpec("rna", "vector", 9, GROUPS), ModalitySpec("report", "text", 5)]


def _model(fill="zero", pooling="abmil", seed=0, **kw):
    torch.manual_seed(seed)
    mcfg = ModelConfig(dim=D, layers=1, heads=2, dropout=0.1, fill=fill, bag_pooling=pooling, bag_queries=3,
                       text_chunks=3, **kw)
    return PrimeModel(_specs(), mcfg, BankConfig(size=4), PretrainConfig())


def _batch(B=4, N=7, C=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"observed": torch.ones(B, 3, dtype=torch.bool),
            "wsi": torch.randn(B, N, 6, generator=g), "wsi:mask": torch.ones(B, N, dtype=torch.bool),
            "rna": torch.randn(B, 9, generator=g),
            "report": torch.randn(B, C, 5, generator=g), "report:mask": torch.ones(B, C, dtype=torch.bool)}


@pytest.mark.parametrize("pooling,n_wsi", [("abmil", 1), ("query", 3)])
def test_shapes_every_tokeniser(pooling, n_wsi):
    model = _model(pooling=pooling).eval()
    enc = model.encode(_batch())
    assert enc["h"].shape == (4, D)
    assert enc["tokens"]["wsi"].shape == (4, n_wsi, D)
    assert enc["tokens"]["rna"].shape == (4, len(GROUPS), D)
    assert enc["tokens"]["report"].shape == (4, 3, D)                 # padded to text_chunks
    assert enc["masks"]["report"].tolist() == [[True, True, False]] * 4
    assert model.n_tokens == [n_wsi, 3, 3]
    for name in model.names:
        assert enc["z"][name].shape == (4, D)
        assert torch.allclose(enc["z"][name].norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.equal(model(_batch()), enc["h"])


def test_text_longer_than_chunks_is_cut():
    model = _model().eval()
    b = _batch(C=5)
    enc = model.encode(b)
    assert enc["tokens"]["report"].shape == (4, 3, D)
    b2 = dict(b)
    b2["report"] = b["report"].clone()
    b2["report"][:, 3:] = 99.0
    assert torch.allclose(model(b2), enc["h"])


def test_one_group_vector_without_groups():
    torch.manual_seed(0)
    model = PrimeModel([ModalitySpec("x", "vector", 4)], ModelConfig(dim=D, layers=1, heads=2), BankConfig(size=2))
    h = model.eval()(
        {"observed": torch.ones(3, 1, dtype=torch.bool), "x": torch.randn(3, 4)})
    assert h.shape == (3, D) and model.n_tokens == [1]


@pytest.mark.parametrize("pooling", ["abmil", "query"])
def test_padded_instances_and_chunks_do_not_change_output(pooling):
    model = _model(pooling=pooling).eval()
    b = _batch(N=5, C=2)
    ref = model(b)
    g = torch.Generator().manual_seed(9)
    padded = dict(b)
    padded["wsi"] = torch.cat([b["wsi"], 50 * torch.randn(4, 4, 6, generator=g)], 1)
    padded["wsi:mask"] = torch.cat([b["wsi:mask"], torch.zeros(4, 4, dtype=torch.bool)], 1)
    padded["report"] = torch.cat([b["report"], 50 * torch.randn(4, 1, 5, generator=g)], 1)
    padded["report:mask"] = torch.cat([b["report:mask"], torch.zeros(4, 1, dtype=torch.bool)], 1)
    assert torch.allclose(model(padded), ref, atol=1e-5)
    # different numbers of valid instances per patient
    ragged = dict(padded)
    ragged["wsi:mask"] = padded["wsi:mask"].clone()
    ragged["wsi:mask"][0, 2:] = False
    out = model(ragged)
    assert torch.allclose(out[1:], ref[1:], atol=1e-5) and not torch.allclose(out[0], ref[0], atol=1e-5)


def test_max_patches_subsamples_while_training_only():
    model = _model(max_patches=3)
    tok = model.tokenizers[0]
    x, mask = torch.randn(2, 8, 6), torch.ones(2, 8, dtype=torch.bool)
    mask[1, 2:] = False
    tok.train()
    xs, ms = tok._subsample(x, mask)
    assert xs.shape == (2, 3, 6) and ms[0].all() and int(ms[1].sum()) == 2
    tok.eval()
    assert tok._subsample(x, mask)[0].shape == (2, 8, 6)


def test_zero_fill():
    model = _model(fill="zero").eval()
    b = _batch()
    b["observed"][1, 0] = False
    b["observed"][2, 2] = False
    enc = model.encode(b)
    assert torch.count_nonzero(enc["raw"]["wsi"][1]) == 0
    assert torch.count_nonzero(enc["raw"]["report"][2]) == 0
    assert bool(enc["masks"]["report"][2].all())                       # all slots present and unmasked
    assert torch.equal(enc["z"]["wsi"][1], torch.zeros(D))


def test_mean_fill_tracks_observed_training_patients():
    model = _model(fill="mean")
    b = _batch()
    b["observed"][3, 1] = False
    model.train()
    model.tokenizers[1].eval()                                         # no AlphaDropout: exact tokens
    enc = model.encode(b)
    want = enc["raw"]["rna"][:3].detach().mean(0)                      # observed patients only
    assert torch.allclose(model.fill_mean_1, want, atol=1e-6)
    model.eval()
    enc = model.encode(b)
    assert torch.allclose(enc["raw"]["rna"][3], want, atol=1e-6)
    before = model.fill_mean_1.clone()
    model.encode(_batch(seed=5))
    assert torch.equal(model.fill_mean_1, before)                      # eval mode never updates


def test_learned_fill_is_trainable():
    model = _model(fill="learned").eval()
    b = _batch()
    b["observed"][0, 1] = False
    enc = model.encode(b)
    assert torch.allclose(enc["raw"]["rna"][0], model.mask_token_1)
    (enc["h"] * torch.randn(D)).sum().backward()             # a plain sum of a LayerNorm output is flat
    assert model.mask_token_1.grad is not None and model.mask_token_1.grad.abs().sum() > 0


def test_observed_override_must_be_subset():
    model = _model().eval()
    b = _batch()
    b["observed"][0, 0] = False
    obs = b["observed"].clone()
    obs[1, 2] = False
    enc = model.encode(b, obs)
    assert torch.equal(enc["observed"], obs)
    bad = b["observed"].clone()
    bad[0, 0] = True
    with pytest.raises(UsageError):
        model.encode(b, bad)


def test_lora_wrap_only_lora_trainable_and_output_unchanged():
    model = _model().eval()
    b = _batch()
    ref = model(b)
    lora_wrap(model, r=4, alpha=8.0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "k_proj", "v_proj"}
    assert torch.allclose(model(b), ref, atol=1e-6)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(0.5)
    assert not torch.allclose(model(b), ref, atol=1e-4)


def test_linear_mode_freezes_encoder():
    model = DownstreamModel(_model(), "nll", 4)
    set_mode(model, "linear")
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    assert not model.encoder.training and not any(m.training for m in model.encoder.modules())
    assert model.head.training
    b = _batch()
    (model(b) ** 2).sum().backward()
    assert model.head.weight.grad is not None


def test_lora_and_full_modes():
    model = DownstreamModel(_model(), "cox")
    set_mode(model, "lora", r=2, alpha=4.0)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"head.weight", "head.bias"} <= names and all("lora_" in n or n.startswith("head.") for n in names)
    model.train()
    assert model.encoder.training
    full = DownstreamModel(_model(), "binary")
    set_mode(full, "full")
    frozen = {n for n, p in full.named_parameters() if not p.requires_grad}
    assert frozen == {"encoder." + n for n, p in full.encoder.named_parameters()
                      if any(p is q for q in full.encoder.pretrain_parameters())}
    with pytest.raises(UsageError):
        set_mode(full, "adapter")


def test_unknown_kind_and_bad_groups():
    with pytest.raises(UsageError):
        PrimeModel([ModalitySpec("x", "image", 4)], ModelConfig(dim=D, layers=1, heads=2), BankConfig(size=2))
    with pytest.raises(UsageError):
        PrimeModel([ModalitySpec("x", "vector", 4, [[0, 9]])], ModelConfig(dim=D, layers=1, heads=2),
                   BankConfig(size=2))
