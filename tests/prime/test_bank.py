"""The prototype bank (spec 5.3) and the missing-modality fills of the PRIME encoder."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from affectkit.tasks.prime.config import BankConfig, ModelConfig, PretrainConfig
from affectkit.tasks.prime.method_bank import PrototypeBank
from affectkit.tasks.prime.model import ModalitySpec, PrimeModel

D = 16


def _specs():
    return [ModalitySpec("wsi", "bag", 6), ModalitySpec("rna", "vector", 9, [[0, 1, 2], [3, 4, 5], [6, 7, 8]]),
            ModalitySpec("report", "text", 5)]


def _model(fill="learned", **bank):
    torch.manual_seed(0)
    mcfg = ModelConfig(dim=D, layers=1, heads=2, dropout=0.0, fill=fill, text_chunks=3)
    return PrimeModel(_specs(), mcfg, BankConfig(size=4, topk=2, **bank), PretrainConfig()).eval()


def _batch(B=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"observed": torch.ones(B, 3, dtype=torch.bool),
            "wsi": torch.randn(B, 7, 6, generator=g), "wsi:mask": torch.ones(B, 7, dtype=torch.bool),
            "rna": torch.randn(B, 9, generator=g),
            "report": torch.randn(B, 2, 5, generator=g), "report:mask": torch.ones(B, 2, dtype=torch.bool)}


def _ready(model, seed=1):
    """Initialise the model's bank from random tokens so that bank fill is active."""
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(20, D, generator=g), dim=-1)
    values = {n: (z[:10], torch.randn(10, k, D, generator=g)) for n, k in zip(model.names, model.n_tokens, strict=True)}
    model.bank.initialise(z, values, method="kmeans", seed=0)
    assert model.bank.is_ready


def _bank(K=3, names=("a", "b", "c"), slots=(1, 2, 1), dim=4, **cfg):
    return PrototypeBank(list(names), list(slots), dim, BankConfig(size=K, **cfg))


def _set_keys(bank, keys):
    keys = F.normalize(torch.as_tensor(keys, dtype=torch.float32), dim=-1)
    bank.keys.data.copy_(keys)
    bank.key_sums.copy_(keys)
    bank.key_counts.fill_(1.0)
    bank.ready.fill_(True)


# ---------------------------------------------------------------------------- fills
@pytest.mark.parametrize("fill", ["bank", "zero", "mean", "learned"])
def test_observed_patient_never_altered_by_fill(fill):
    model = _model()
    _ready(model)
    model.train()
    model.encode(_batch(seed=3))                     # fill=mean: give the running mean something
    model.eval()
    batch = _batch()
    ref = model.encode(batch)                        # everyone complete
    model.fill = fill
    missing = dict(batch)
    obs = torch.ones(5, 3, dtype=torch.bool)
    obs[1, 0] = obs[2, 1] = obs[3, 2] = False
    obs[4, :2] = False
    missing["observed"] = obs
    enc = model.encode(missing)
    for name in model.names:
        assert torch.equal(enc["tokens"][name][0], ref["tokens"][name][0])
        assert torch.equal(enc["raw"][name][0], ref["raw"][name][0])
    assert torch.equal(enc["h"][0], ref["h"][0])
    # observed modalities of incomplete patients are untouched too
    for i, name in enumerate(model.names):
        rows = obs[:, i]
        assert torch.equal(enc["tokens"][name][rows], ref["tokens"][name][rows])
    if fill != "zero":
        assert not torch.equal(enc["h"][1], ref["h"][1])


def test_imputed_tokens_are_tagged():
    model = _model(fill="bank")
    _ready(model)
    batch = _batch()
    obs = torch.ones(5, 3, dtype=torch.bool)
    obs[1, 0] = obs[2, 2] = False
    batch["observed"] = obs
    enc = model.encode(batch)
    assert torch.equal(enc["imputed"], ~obs)
    for i, name in enumerate(model.names):
        status = enc["tokens"][name] - enc["raw"][name] - model.type_emb[i]
        for b in range(5):
            want = model.status_emb[1] if not obs[b, i] else model.status_emb[0]
            assert torch.allclose(status[b], want.expand_as(status[b]), atol=1e-6)
        assert bool(enc["masks"][name][~obs[:, i]].all())         # imputed slots are all attended


def test_bank_not_ready_falls_back_to_zero():
    model = _model(fill="bank")
    batch = _batch()
    batch["observed"][1, 0] = False
    enc = model.encode(batch)
    assert not model.bank.is_ready
    assert torch.count_nonzero(enc["raw"]["wsi"][1]) == 0


def test_bank_fill_is_the_retrieval():
    model = _model(fill="bank")
    _ready(model)
    batch = _batch()
    batch["observed"][2, 1] = False
    enc = model.encode(batch)
    tokens, w, _ = model.bank.retrieve(enc["z"], enc["observed"], "rna")
    assert torch.allclose(enc["raw"]["rna"][2], tokens[2], atol=1e-6)


# ---------------------------------------------------------------------------- consensus
def test_consensus_hand_computed_mean_of_cosines():
    bank = _bank(tau=0.5)
    keys = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0.6, 0.8, 0, 0]])
    _set_keys(bank, keys)
    z = {"a": F.normalize(torch.tensor([[1.0, 1.0, 0, 0]]), dim=-1),
         "b": F.normalize(torch.tensor([[1.0, 0.0, 1.0, 0]]), dim=-1),
         "c": F.normalize(torch.tensor([[0.0, 1.0, 0, 1.0]]), dim=-1)}
    obs = torch.tensor([[True, True, True]])
    s = bank.scores(z, obs)
    want = torch.zeros(3)
    for name in "abc":
        want += torch.tensor([float(z[name][0] @ keys[k]) for k in range(3)]) / 3
    assert torch.allclose(s[0], want, atol=1e-6)
    # product of experts: sum of log-softmax(cos / tau) over the observed modalities
    bank.consensus = "poe"
    s = bank.scores(z, obs)
    want = sum(F.log_softmax(z[n][0] @ keys.T / 0.5, dim=-1) for n in "abc")
    assert torch.allclose(s[0], want, atol=1e-5)


@pytest.mark.parametrize("consensus", ["mean", "poe"])
def test_consensus_uses_every_observed_modality(consensus):
    bank = _bank(consensus=consensus)
    g = torch.Generator().manual_seed(0)
    _set_keys(bank, torch.randn(3, 4, generator=g))
    z = {n: F.normalize(torch.randn(2, 4, generator=g), dim=-1) for n in "abc"}
    obs = torch.tensor([[True, True, True], [True, True, False]])
    base = bank.scores(z, obs)
    for n in "abc":
        z2 = dict(z)
        z2[n] = F.normalize(torch.randn(2, 4, generator=g), dim=-1)
        s = bank.scores(z2, obs)
        assert not torch.allclose(s[0], base[0])           # patient 0 observes all three
        if n == "c":
            assert torch.equal(s[1], base[1])              # patient 1 does not observe c
        else:
            assert not torch.allclose(s[1], base[1])
    # retrieving a modality never scores with that modality itself
    tok, _, s = bank.retrieve(z, obs, "a")
    assert torch.allclose(s, bank.scores(z, obs & torch.tensor([False, True, True])))


def test_retrieval_weights_sum_to_one_over_topk():
    bank = _bank(K=6, topk=3, tau=0.2)
    g = torch.Generator().manual_seed(1)
    _set_keys(bank, torch.randn(6, 4, generator=g))
    bank.value_1.copy_(torch.randn(6, 2, 4, generator=g))
    z = {n: F.normalize(torch.randn(5, 4, generator=g), dim=-1) for n in "abc"}
    obs = torch.tensor([[True, False, True]] * 5)
    tokens, w, s = bank.retrieve(z, obs, "b")
    assert tokens.shape == (5, 2, 4) and w.shape == (5, 6) and s.shape == (5, 6)
    assert torch.allclose(w.sum(1), torch.ones(5), atol=1e-6)
    assert bool(((w > 0).sum(1) == 3).all())
    top = s.topk(3, dim=1).indices
    assert torch.equal(torch.sort(top, 1).values, torch.sort((w > 0).nonzero()[:, 1].view(5, 3), 1).values)
    assert torch.allclose(w.gather(1, top), torch.softmax(s.gather(1, top) / 0.2, dim=1), atol=1e-6)
    assert torch.allclose(tokens, torch.einsum("bk,ksd->bsd", w, bank.value_1), atol=1e-6)


@pytest.mark.parametrize("through", [True, False])
def test_retrieval_gradient_option(through):
    bank = _bank(grad_through=through)
    g = torch.Generator().manual_seed(2)
    _set_keys(bank, torch.randn(3, 4, generator=g))
    bank.value_1.copy_(torch.randn(3, 2, 4, generator=g))
    za = torch.randn(2, 4, generator=g, requires_grad=True)
    tokens, _, _ = bank.retrieve({"a": F.normalize(za, dim=-1)}, torch.tensor([[True, False, False]] * 2), "b")
    if through:
        tokens.sum().backward()
        assert za.grad is not None and za.grad.abs().sum() > 0
    else:
        assert not tokens.requires_grad


# ---------------------------------------------------------------------------- initialise
def test_kmeans_init_puts_keys_at_cluster_centres():
    g = torch.Generator().manual_seed(0)
    dirs = torch.eye(8)[:3]
    z = torch.cat([F.normalize(dirs[c] + 0.05 * torch.randn(30, 8, generator=g), dim=-1) for c in range(3)])
    bank = _bank(K=3, names=("a", "b"), slots=(1, 2), dim=8)
    tok_a = torch.stack([torch.full((1, 8), float(c)) for c in range(3) for _ in range(30)])
    # modality b only observed by patients of clusters 0 and 1
    tok_b = torch.randn(60, 2, 8, generator=g)
    bank.initialise(z, {"a": (z, tok_a), "b": (z[:60], tok_b)}, method="kmeans", seed=0)
    centres = torch.stack([F.normalize(z[30 * c:30 * (c + 1)].mean(0), dim=-1) for c in range(3)])
    match = (bank.keys @ centres.T).argmax(0)              # key nearest to each true centre
    assert sorted(match.tolist()) == [0, 1, 2]
    assert torch.allclose(bank.keys[match], centres, atol=1e-4)
    assert torch.allclose(bank.keys.norm(dim=-1), torch.ones(3), atol=1e-6)
    # value slots: mean tokens of the assigned patients; the global mean where nobody is assigned
    for c in range(3):
        assert torch.allclose(bank.value_0[match[c]], torch.full((1, 8), float(c)), atol=1e-6)
    for c in range(2):
        assert torch.allclose(bank.value_1[match[c]], tok_b[30 * c:30 * (c + 1)].mean(0), atol=1e-5)
    assert torch.allclose(bank.value_1[match[2]], tok_b.mean(0), atol=1e-5)


def test_random_init_uses_embeddings():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(10, 4, generator=g), dim=-1)
    bank = _bank(K=3)
    bank.initialise(z, {}, method="random", seed=0)
    assert bank.is_ready
    assert bool(((bank.keys @ z.T).max(1).values > 1 - 1e-5).all())


# ---------------------------------------------------------------------------- EMA update
def test_ema_moves_key_toward_assigned_embedding():
    bank = _bank(K=2, names=("a",), slots=(1,), decay=0.9)
    keys = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    _set_keys(bank, keys)
    e = F.normalize(torch.tensor([[1.0, 0, 1.0, 0]]), dim=-1)
    bank.update({"a": e}, {"a": torch.zeros(1, 1, 4)}, torch.tensor([[True]]))
    assert torch.allclose(bank.keys[0], F.normalize(0.9 * keys[0] + 0.1 * e[0], dim=0), atol=1e-6)
    assert torch.allclose(bank.keys[1], keys[1], atol=1e-6)        # nothing assigned: direction kept
    assert torch.allclose(bank.key_counts, torch.tensor([0.9 + 0.1, 0.9]), atol=1e-6)


def test_keys_use_every_observed_modality_and_only_observed():
    bank = _bank(K=2, names=("a", "b"), slots=(1, 1), decay=0.5)
    keys = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    _set_keys(bank, keys)
    za = F.normalize(torch.tensor([[1.0, 0, 1.0, 0]]), dim=-1)
    zb = F.normalize(torch.tensor([[1.0, 0, 0, 1.0]]), dim=-1)
    junk = F.normalize(torch.tensor([[1.0, 0, -1.0, -1.0]]), dim=-1)
    t = torch.zeros(1, 1, 4)
    bank.update({"a": za, "b": zb}, {"a": t, "b": t}, torch.tensor([[True, True]]))
    want = F.normalize(0.5 * keys[0] + 0.5 * (za[0] + zb[0]), dim=0)
    assert torch.allclose(bank.keys[0], want, atol=1e-6)
    before = bank.keys.clone()
    bank.update({"a": za, "b": junk}, {"a": t, "b": t}, torch.tensor([[True, False]]))
    # counts: 1 -> 0.5 * 1 + 0.5 * 2 = 1.5 -> 0.5 * 1.5 + 0.5 * 1 (za only: b is not observed)
    sums = 0.5 * (0.5 * keys[0] + 0.5 * (za[0] + zb[0])) + 0.5 * za[0]
    assert torch.allclose(bank.key_counts[0], torch.tensor(1.25), atol=1e-6)
    assert torch.allclose(bank.keys[0], F.normalize(sums, dim=0), atol=1e-6)
    assert not torch.allclose(bank.keys[0], before[0])


def test_value_slots_only_from_patients_observing_the_modality():
    bank = _bank(K=2, names=("a", "b"), slots=(1, 2), decay=0.8)
    _set_keys(bank, torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    bank.value_1.zero_()
    bank.value_sums_1.zero_()
    bank.value_counts_1.zero_()
    z = {"a": F.normalize(torch.tensor([[1.0, 0.1, 0, 0], [1.0, 0.0, 0.1, 0]]), dim=-1),
         "b": F.normalize(torch.tensor([[0.0, 0, 0, 0], [1.0, 0.0, 0.0, 0.1]]), dim=-1)}
    tb = torch.stack([torch.full((2, 4), 1000.0), torch.arange(8.0).view(2, 4)])
    tokens = {"a": torch.randn(2, 1, 4), "b": tb}
    obs = torch.tensor([[True, False], [True, True]])                  # patient 0 lacks b (junk tokens)
    bank.update(z, tokens, obs)
    assert torch.allclose(bank.value_1[0], tb[1], atol=1e-5)           # only patient 1's tokens
    assert torch.count_nonzero(bank.value_1[1]) == 0                   # nobody assigned: untouched
    # a masked token slot does not enter the template: patient 0 now has b with only slot 1 valid
    bank.update(z, tokens, torch.ones(2, 2, dtype=torch.bool),
                token_masks={"b": torch.tensor([[False, True], [True, True]])})
    assert torch.allclose(bank.value_1[0, 0], tb[1, 0], atol=1e-4)
    assert not torch.allclose(bank.value_1[0, 1], tb[1, 1], atol=1.0)


def test_dead_prototype_reset():
    bank = _bank(K=3, names=("a",), slots=(1,), decay=0.5, dead_after=1e-3)
    _set_keys(bank, torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]))
    bank.key_counts[2] = 1e-4
    z = F.normalize(torch.tensor([[1.0, 0.2, 0, 0.3], [0.1, 1.0, 0.0, 0.2]]), dim=-1)
    tok = torch.randn(2, 1, 4)
    out = bank.update({"a": z}, {"a": tok}, torch.ones(2, 1, dtype=torch.bool))
    assert out["reset"] == 1
    assert float(bank.key_counts[2]) == 1.0
    hit = (bank.keys[2] @ z.T).argmax()
    assert torch.allclose(bank.keys[2], z[hit], atol=1e-6)
    assert torch.allclose(bank.value_0[2], tok[hit], atol=1e-6)
    assert bank.key_counts[0] > 1e-3 and bank.key_counts[1] > 1e-3


def test_grad_mode_bank_has_parameters():
    bank = _bank(update="grad")
    names = {n for n, _ in bank.named_parameters()}
    assert {"keys", "value_0", "value_1", "value_2"} <= names
    assert bank.update({"a": torch.randn(1, 4)}, {}, torch.ones(1, 3, dtype=torch.bool))["assigned"] == 0
    assert math.isclose(float(bank.unit_keys().detach().norm(dim=-1).mean()), 1.0, rel_tol=1e-5)
