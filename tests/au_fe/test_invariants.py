"""The spec's invariants of SSM's modules, priors and metrics."""

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from affectkit.core.config import apply_overrides
from affectkit.tasks.au_fe import facs
from affectkit.tasks.au_fe.config import AUFEConfig
from affectkit.tasks.au_fe.method_losses import LossBalancer, mixup, ramp
from affectkit.tasks.au_fe.method_modules import (
    AULocalTemporal,
    DynamicPriorMapping,
    FETemporalHead,
    MoEMLP,
    PairSmoother,
    patch_moe,
)
from affectkit.tasks.au_fe.metrics import adaptive_f1, auc_per_au, f1_per_au, temporal_vote, uar, war
from affectkit.tasks.au_fe.train import train_step


@pytest.mark.parametrize("key", ["bp4d/basic7", "bp4d/mafw11", "disfa/basic7", "disfa/mafw11"])
def test_prior_rows_equal_facs_sets_restricted_to_the_vocabulary(key):
    au_vocab, expr_vocab = key.split("/")
    p = facs.prior(au_vocab, expr_vocab)
    tables = facs.tables()
    deviations = tables["deviations"].get(key, {})
    vocab = set(facs.au_vocabulary(au_vocab))
    matrix = p.matrix()
    for i, expr in enumerate(p.expressions):
        expected = set(tables["prototypes"][expr]) & vocab
        dev = deviations.get(expr, {})
        expected = (expected | set(dev.get("add", []))) - set(dev.get("remove", []))
        on = {au for au, v in zip(p.aus, matrix[i], strict=True) if v == facs.PRIOR_ON}
        assert on == expected, (key, expr)
        assert np.isin(matrix[i], np.float32([facs.PRIOR_ON, facs.PRIOR_OFF])).all()
    assert (matrix[p.neutral_index] == np.float32(facs.PRIOR_OFF)).all()


def test_user_vocabulary_gets_prototypes_restricted():
    p = facs.prior([1, 2, 12, 26], ["happiness", "surprise", "neutral"])
    assert p.sets["surprise"] == {1, 2, 26} and p.sets["happiness"] == {12}


def test_descriptors_follow_ssm():
    p = facs.prior("bp4d", "basic7")
    assert facs.expression_descriptor("happiness", p) == "happiness, cheek raiser, lip corner puller"
    assert facs.au_descriptor(4) == "brow lowerer"


def _dpm(seed=0):
    p = torch.from_numpy(facs.prior("bp4d", "basic7").matrix())
    return DynamicPriorMapping(p, facs.prior("bp4d", "basic7").neutral_index), p


def test_dpm_maps_equal_the_prior_at_zero_residuals_and_gates_start_at_0_1():
    dpm, p = _dpm()
    m1, m2 = dpm.maps()
    assert torch.allclose(m1, p, atol=1e-5)
    assert torch.allclose(m2, p.t(), atol=1e-5)
    assert torch.sigmoid(dpm.alpha).item() == pytest.approx(0.1)
    assert torch.sigmoid(dpm.beta).item() == pytest.approx(0.1)


def test_dpm_preserves_row_mass_and_neutral_under_residuals():
    dpm, p = _dpm()
    torch.manual_seed(0)
    with torch.no_grad():
        dpm.delta1.normal_(0, 2.0)
        dpm.delta2.normal_(0, 2.0)
    m1, m2 = dpm.maps()
    assert torch.allclose(m1.sum(1), p.sum(1), atol=1e-4)
    assert torch.allclose(m2.sum(1), p.t().sum(1), atol=1e-4)
    n = dpm.neutral
    assert torch.equal(m1[n], p[n]) and torch.equal(m2[:, n], p.t()[:, n])
    assert not torch.allclose(m1, p, atol=1e-3)


def test_dpm_fusion_outputs_unit_vectors():
    dpm, p = _dpm()
    t_e, t_a = torch.randn(p.shape[0], 16), torch.randn(p.shape[1], 16)
    a, b = dpm(t_e, t_a)
    assert torch.allclose(a.norm(dim=-1), torch.ones(len(a))) and torch.allclose(b.norm(dim=-1), torch.ones(len(b)))


def test_au_temporal_module_is_identity_at_init_and_local():
    torch.manual_seed(0)
    mod = AULocalTemporal(32, heads=4)
    x = torch.randn(2, 16, 32)
    assert torch.equal(mod(x), x)
    assert torch.equal(mod.q.weight, mod.k.weight)
    assert mod.rel_bias[0].tolist() == [0.0, 1.0, 0.0]
    with torch.no_grad():
        mod.c.fill_(1.0)
    x2 = x.clone()
    x2[:, 10] += 5.0  # a change at frame 10 reaches only frames 9..11
    diff = (mod(x2) - mod(x)).abs().sum(dim=(0, 2))
    assert (diff[[9, 10, 11]] > 0).all() and (diff[:9] == 0).all() and (diff[12:] == 0).all()


def test_fe_head_shapes():
    head = FETemporalHead(32, n_frames=16, heads=4, mlp_dim=64)
    assert head(torch.randn(3, 16, 32)).shape == (3, 32)


def test_moe_top2_unnormalised_and_alpha():
    torch.manual_seed(0)
    shared = torch.nn.Linear(8, 8)
    moe = MoEMLP(shared, 8, n_experts=4, hidden=6, top_k=2, alpha=0.1).eval()
    x = torch.randn(5, 8)
    w = moe.routing(x)
    assert ((w > 0).sum(-1) == 2).all()
    assert (w.sum(-1) < 1).all()  # top-2 softmax weights, not renormalised
    assert moe.alpha.item() == pytest.approx(0.1)
    expected = shared(x) + 0.1 * sum(w[:, k : k + 1] * moe.experts[k](x) for k in range(4))
    assert torch.allclose(moe(x), expected, atol=1e-6)


def test_patch_moe_touches_only_the_last_blocks():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    tower = CLIPVisionModelWithProjection(CLIPVisionConfig(image_size=16, patch_size=8, hidden_size=16,
                                                           intermediate_size=32, num_hidden_layers=4,
                                                           num_attention_heads=2, projection_dim=8))
    layers = tower.vision_model.encoder.layers
    assert patch_moe(layers, 2, 16, hidden=8) == 2
    assert [type(layer.mlp).__name__ for layer in layers] == ["CLIPMLP", "CLIPMLP", "MoEMLP", "MoEMLP"]


def test_pair_smoother_matches_the_release_quirk():
    sm = PairSmoother(3)
    z = torch.randn(2, 16, 3)
    out = sm(z)
    pair_sum = (z[:, 0::2] + z[:, 1::2]) / 5
    assert torch.allclose(out[:, 0::2], pair_sum, atol=1e-6) and torch.allclose(out[:, 1::2], pair_sum, atol=1e-6)


def test_ramp_and_balancer():
    assert ramp(0, 30) == 0.0 and ramp(30, 30) == pytest.approx(0.9999, abs=1e-4)
    bal = LossBalancer(0.95)
    a = bal.normalise("fe_ce", torch.tensor(4.0))
    assert a.item() == pytest.approx(1.0)
    b = bal.normalise("fe_ce", torch.tensor(2.0))
    assert b.item() == pytest.approx(2.0 / (0.95 * 4 + 0.05 * 2))
    bal.set_position(7, 1)
    assert bal.normalise("fe_ce", torch.tensor(3.0)).item() == pytest.approx(1.0)  # reset each epoch


class _FEOnly(torch.nn.Module):
    """Just enough of SSMTrainer for train_step: a balancer and FE logits (linear and prototype)."""

    def __init__(self):
        super().__init__()
        self.balancer = LossBalancer(0.95)
        self.head = torch.nn.Linear(4, 3)

    def forward(self, fe=None, au=None):
        z = self.head(fe.mean(dim=(1, 2, 3, 4)).unsqueeze(1).expand(-1, 4))
        return {"z_e": z, "s_e": z}


@pytest.mark.parametrize("ramp_steps, expected", [(0, ramp(2, 30)), (100, ramp(50, 100))])
def test_ramp_runs_over_epochs_or_over_steps(ramp_steps, expected):
    cfg = apply_overrides(AUFEConfig(), [f"loss.ramp_steps={ramp_steps}"])
    model = _FEOnly()
    model.balancer.set_position(50, 2)
    batch = {"fe": torch.randn(2, 1, 4, 3, 2, 2), "fe_label": torch.tensor([[0], [2]])}
    _, logs = train_step(model, batch, cfg)
    assert logs["ramp"] == pytest.approx(expected)


def test_mixup_uses_one_lambda_for_all_frames():
    torch.manual_seed(0)
    clips = torch.randn(4, 16, 3, 2, 2)
    mixed, perm, lam = mixup(clips, 0.4)
    assert torch.allclose(mixed, lam * clips + (1 - lam) * clips[perm])


def test_strict_f1_and_auc_equal_sklearn():
    rng = np.random.default_rng(0)
    label = (rng.random((300, 5)) < 0.3).astype(float)
    prob = np.clip(label * 0.4 + rng.random((300, 5)) * 0.7, 0, 1)
    ours = f1_per_au(prob, label)
    ref = [f1_score(label[:, a], prob[:, a] >= 0.5) for a in range(5)]
    assert np.allclose(ours, ref)
    assert np.allclose(auc_per_au(prob, label), [roc_auc_score(label[:, a], prob[:, a]) for a in range(5)])
    mask = np.ones_like(label)
    mask[:50, 0] = 0  # not coded: left out
    assert f1_per_au(prob, label, mask)[0] == pytest.approx(f1_score(label[50:, 0], prob[50:, 0] >= 0.5))


def test_uar_is_balanced_accuracy_and_war_accuracy():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 7, 200))
    assert uar(pred, y) == pytest.approx(balanced_accuracy_score(y, pred))
    assert war(pred, y) == pytest.approx((pred == y).mean())


def test_temporal_vote_and_adaptive_f1_is_at_least_strict():
    binary = np.array([[0], [1], [0], [1], [1], [0], [0]], bool)
    seg = np.zeros(7, int)
    assert temporal_vote(binary, seg, 1, 2)[:, 0].tolist() == [False, False, True, True, True, False, False]
    rng = np.random.default_rng(0)
    label = (rng.random((64, 3)) < 0.3).astype(float)
    prob = np.clip(label * 0.3 + rng.random((64, 3)) * 0.6, 0, 1)
    res = adaptive_f1(prob, label, np.repeat(np.arange(4), 16), max_half_window=2)
    assert res["ssm_adaptive_f1"] >= np.nanmean(f1_per_au(prob, label)) - 1e-9
