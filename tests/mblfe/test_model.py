"""MBLFE's pieces against hand computations: graph propagation, the gate's three modes, the losses,
the network's masking of absent behaviors, and cached full-item scoring."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from affectkit.components.graph import bipartite_adjacency, propagate
from affectkit.core.config import apply_overrides
from affectkit.tasks.mblfe.baselines import build_recommender
from affectkit.tasks.mblfe.config import MBLFEConfig
from affectkit.tasks.mblfe.method_gate import NoisyAboveMeanGate, cv_squared
from affectkit.tasks.mblfe.method_losses import bpr_loss, embedding_loss, expert_infonce
from affectkit.tasks.mblfe.model import MBLFE, Graph

R = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32))  # 2 users x 3 items


def _dense_adjacency(r):
    a = np.block([[np.zeros((r.shape[0],) * 2), r], [r.T, np.zeros((r.shape[1],) * 2)]])
    d = 1 / np.sqrt(a.sum(1) + 1e-7)
    return d[:, None] * a * d[None, :]


def test_adjacency_is_the_symmetric_normalisation_without_self_loops():
    got = bipartite_adjacency(R).to_dense().numpy()
    np.testing.assert_allclose(got, _dense_adjacency(R.toarray()), rtol=1e-6)


def test_standard_lightgcn_is_the_mean_and_the_official_variant_normalises_and_sums():
    a = torch.tensor(_dense_adjacency(R.toarray()), dtype=torch.float32)
    e0 = torch.randn(5, 4)
    adj = bipartite_adjacency(R)
    e1, e2 = a @ e0, a @ (a @ e0)
    torch.testing.assert_close(propagate(adj, e0, 2, "standard"), (e0 + e1 + e2) / 3)
    n1 = torch.nn.functional.normalize(a @ e0, dim=1)
    n2 = torch.nn.functional.normalize(a @ n1, dim=1)
    torch.testing.assert_close(propagate(adj, e0, 2, "official"), e0 + n1 + n2)


def test_random_subset_gate_keeps_all_experts_at_inference_and_a_random_half_in_training():
    torch.manual_seed(0)
    gate = NoisyAboveMeanGate(8, 10, "random_subset")
    assert not list(gate.parameters())  # the release's gate gets no gradient: constant zeros
    h = torch.randn(4000, 8)
    gate.eval()
    w, kept, load = gate(h)
    assert kept.all() and torch.equal(w, torch.ones_like(w)) and load == 0
    gate.train()
    w, kept, _ = gate(h)
    share = kept.float().mean().item()
    assert 0.3 < share < 0.6  # about half above the mean of a softmax of i.i.d. noise
    assert set(w.unique().tolist()) <= {0.0, 1.0}  # slots are not scaled (multiply_by_gates=False)
    assert kept.any(1).all()


def test_learned_gate_scales_slots_by_renormalised_gates_and_trains():
    torch.manual_seed(0)
    gate = NoisyAboveMeanGate(8, 6, "learned")
    with torch.no_grad():
        gate.w_gate.normal_()
    h = torch.randn(64, 8)
    w, kept, load = gate(h)
    torch.testing.assert_close(w.sum(1), torch.ones(64))
    assert torch.all((w > 0) == kept) and load > 0
    (w[:, 0].sum() + load).backward()
    assert gate.w_gate.grad.abs().sum() > 0 and gate.w_noise.grad.abs().sum() > 0


def test_all_gate_keeps_every_expert():
    w, kept, _ = NoisyAboveMeanGate(8, 5, "all")(torch.randn(3, 8))
    assert kept.all() and torch.equal(w, torch.ones(3, 5))


def test_cv_squared_by_hand():
    x = torch.tensor([1.0, 2.0, 3.0])
    assert cv_squared(x).item() == pytest.approx(1.0 / 4.0)  # var 1 (n-1), mean 2


def test_bpr_masks_absent_rows_and_emb_loss_is_the_row_scaled_frobenius_norm():
    pos, neg = torch.tensor([2.0, 0.0, 5.0]), torch.tensor([1.0, 0.0, -3.0])
    mask = torch.tensor([True, True, False])
    want = (-math.log(1e-10 + 1 / (1 + math.exp(-1.0))) - math.log(1e-10 + 0.5)) / 2
    assert bpr_loss(pos, neg, mask).item() == pytest.approx(want, rel=1e-6)
    a, b = torch.ones(4, 3), 2 * torch.ones(2, 3)
    assert embedding_loss(a, b).item() == pytest.approx(math.sqrt(12) / 4 + math.sqrt(24) / 2)


def test_infonce_by_hand_with_two_experts():
    # two rows, both routed to both experts: the draw for expert k is rows (0, 1) or (1, 0)
    torch.manual_seed(0)
    out = torch.nn.functional.normalize(torch.randn(2, 2, 3), dim=-1)
    routed = torch.ones(2, 2, dtype=torch.bool)
    tau = 0.5

    def term(k, a, b):
        pos = out[a, k] @ out[b, k] / tau
        negs = torch.stack([out[a, k] @ out[x, 1 - k] / tau for x in range(2)])
        return -(pos - torch.logsumexp(torch.cat([pos[None], negs]), 0))

    possible = {round(float((term(0, a0, 1 - a0) + term(1, a1, 1 - a1)) / 2), 5) for a0 in (0, 1) for a1 in (0, 1)}
    got = round(float(expert_infonce(out, routed, tau, repeats=1)), 5)
    assert got in possible


def test_infonce_is_zero_without_two_rows_per_expert_or_a_second_expert():
    assert expert_infonce(torch.randn(1, 3, 4), torch.ones(1, 3, dtype=torch.bool), 0.7, 4) == 0
    assert expert_infonce(torch.randn(5, 1, 4), torch.ones(5, 1, dtype=torch.bool), 0.7, 4) == 0


def _graph(seed=0, users=30, items=20):
    rng = np.random.default_rng(seed)
    mats = tuple(sp.csr_matrix((rng.random((users, items)) < p).astype(np.float32)) for p in (0.3, 0.15, 0.1))
    return Graph(users, items, ("view", "cart", "buy"), mats)


def _batch(graph, users, neg=4, seed=0):
    rng = np.random.default_rng(seed)
    n_b = len(graph.behaviors)
    pos = np.zeros((len(users), n_b), np.int64)
    has = np.zeros((len(users), n_b), bool)
    for b, m in enumerate(graph.matrices):
        for r, u in enumerate(users):
            items = m.indices[m.indptr[u] : m.indptr[u + 1]]
            if len(items):
                has[r, b], pos[r, b] = True, rng.choice(items)
    return {"users": torch.tensor(users), "pos": torch.from_numpy(pos),
            "neg": torch.from_numpy(rng.integers(0, graph.n_items, (len(users), n_b, neg))),
            "has": torch.from_numpy(has)}


def _cfg(*overrides):
    return apply_overrides(MBLFEConfig(), ["model.dim=8", "model.label_size=4", "model.num_experts=3", *overrides])


@pytest.mark.parametrize("mode", ["random_subset", "learned", "all"])
def test_mblfe_loss_is_finite_and_reaches_every_trained_part(mode):
    g = _graph()
    torch.manual_seed(0)
    model = MBLFE(g, _cfg(f"model.gate_mode={mode}"))
    loss, logs = model(_batch(g, list(range(12))))
    assert torch.isfinite(loss) and set(logs) >= {"l1", "l_bce", "l_ssl", "l3", "l_emb"}
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_absent_behavior_rows_do_not_change_the_loss():
    g = _graph()
    model = MBLFE(g, _cfg("model.gate_mode=all"))
    batch = _batch(g, list(range(12)))
    batch["has"][3, 1] = False  # user 3 has no cart: whatever its row holds must not count
    torch.manual_seed(1)
    a, _ = model(batch)
    batch["pos"][3, 1], batch["neg"][3, 1] = 7, torch.tensor([1, 2, 3, 4])
    torch.manual_seed(1)
    b, _ = model(batch)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_inference_scores_are_the_target_projection_over_all_experts():
    g = _graph()
    model = MBLFE(g, _cfg("model.gate_mode=random_subset")).eval()
    scores = model.score_users(torch.tensor([0, 5]))
    t_user, z_item, w = model.expert_outputs()
    want = torch.einsum("ukd,ikd->ui", t_user[[0, 5]] * w[[0, 5], :, None], z_item)
    torch.testing.assert_close(scores, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(w, torch.ones_like(w))


def test_the_score_cache_is_dropped_when_training_resumes():
    g = _graph()
    model = MBLFE(g, _cfg()).eval()
    before = model.score_users(torch.tensor([1]))
    assert model._cache is not None
    model.train()
    assert model._cache is None
    with torch.no_grad():
        model.embedding.weight.add_(1.0)
    model.eval()
    assert not torch.allclose(before, model.score_users(torch.tensor([1])))


@pytest.mark.parametrize("name", ["lightgcn-target", "lightgcn-merged", "mf-bpr", "crgcn"])
def test_baselines_train_and_score_on_the_same_batches(name):
    g = _graph()
    model = build_recommender(g, _cfg(f"model.name={name}"))
    loss, _ = model(_batch(g, list(range(12))))
    loss.backward()
    assert torch.isfinite(loss) and model.embedding.weight.grad.abs().sum() > 0
    assert model.eval().score_users(torch.tensor([0, 1, 2])).shape == (3, g.n_items)


def test_target_only_lightgcn_propagates_the_target_graph_only():
    g = _graph()
    model = build_recommender(g, _cfg("model.name=lightgcn-target"))
    dense = model.adjacency(0).to_dense()
    np.testing.assert_allclose(dense.numpy(), _dense_adjacency(g.matrices[-1].toarray()), rtol=1e-5, atol=1e-7)
