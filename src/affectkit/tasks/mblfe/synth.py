"""The embedded benchmark: seeded multi-behavior data with known latent factors and a funnel.

Generative story (spec 4.3; defaults in ``SynthConfig``):

1. ``factors`` latent factors. User mixture pi_u ~ Dirichlet(alpha): one to three active factors,
   the experts a user's gate should pick. Item main factor c_i ~ Uniform(F), loading
   v_i = onehot(c_i) + N(0, 0.15^2), affinity s_ui = pi_u . v_i, popularity
   rho_i = log(1 + min(Zipf(1.6), 1e4)).
2. Views: n_u = max(5, Poisson(n_view)) items without replacement, P ∝ exp(3 s_ui + 0.8 rho_i).
3. Cart | view ~ Bernoulli(sigmoid(-2 + 4 s)); collect | view ~ Bernoulli(sigmoid(-2.5 + 3 s)),
   independent of cart; buy | cart ~ Bernoulli(sigmoid(-1 + 3 s)), plus direct buys of a viewed
   item with probability 0.01. So buy ⊂ view and collect ⊂ view always, buy ⊂ cart but for the
   direct buys.
4. Held out: one random buy of every user with >= 2 buys is the test pair; one more buy of every
   user with >= 3 buys is the validation pair. A held-out pair is removed from every behavior
   (view, collect, cart and buy), or a "rank carted items first" rule solves the task.

Written in the CRGCN/MBLFE folder format (``data.write_folder``: behaviors view, collect, cart, buy)
plus ``truth.npz`` (pi, item_factor, loading, popularity; user row k is id k + 1, item column j
is id j + 1) and ``README.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from affectkit.core.runs import atomic_save, atomic_write_json
from affectkit.tasks.mblfe.data import MultiBehaviorData, write_folder

DATA_VERSION = 1  # bump when the generator's output changes (the cache keys the embedded data by it)
BEHAVIORS = ("view", "collect", "cart", "buy")


@dataclass
class SynthConfig:
    users: int = 3000
    items: int = 2000
    factors: int = 8
    alpha: float = 0.2
    loading_noise: float = 0.15
    zipf_a: float = 1.6
    n_view: float = 20.0
    min_view: int = 5
    direct_buy: float = 0.01
    validation: bool = True


SIZES = {"quick": SynthConfig(users=300, items=200), "full": SynthConfig()}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate(cfg: SynthConfig, seed: int) -> tuple[MultiBehaviorData, dict[str, np.ndarray]]:
    """The data set (0-based rows; ids row + 1) and its ground truth."""
    rng = np.random.default_rng(seed)
    n_users, n_items, F = cfg.users, cfg.items, cfg.factors
    pi = rng.dirichlet(np.full(F, cfg.alpha), size=n_users)
    item_factor = rng.integers(0, F, size=n_items)
    loading = np.eye(F)[item_factor] + rng.normal(0.0, cfg.loading_noise, size=(n_items, F))
    popularity = np.log1p(np.minimum(rng.zipf(cfg.zipf_a, size=n_items), 1e4))
    affinity = pi @ loading.T  # (n_users, n_items)

    # views: n_u items without replacement, P ∝ exp(logit), by the Gumbel top-k trick
    n_view = np.minimum(np.maximum(cfg.min_view, rng.poisson(cfg.n_view, size=n_users)), n_items)
    keys = 3.0 * affinity + 0.8 * popularity[None, :] + rng.gumbel(size=(n_users, n_items))
    order = np.argsort(-keys, axis=1, kind="stable")
    view = np.zeros((n_users, n_items), dtype=bool)
    for u in range(n_users):
        view[u, order[u, : n_view[u]]] = True

    cart = view & (rng.random((n_users, n_items)) < _sigmoid(-2.0 + 4.0 * affinity))
    collect = view & (rng.random((n_users, n_items)) < _sigmoid(-2.5 + 3.0 * affinity))
    buy = cart & (rng.random((n_users, n_items)) < _sigmoid(-1.0 + 3.0 * affinity))
    direct = view & ~buy & (rng.random((n_users, n_items)) < cfg.direct_buy)
    buy |= direct

    # held-out buys, removed from every behavior
    test, validation = [], []
    for u in range(n_users):
        items = np.flatnonzero(buy[u])
        if len(items) < 2:
            continue
        picked = rng.permutation(items)
        test.append((u, int(picked[0])))
        if cfg.validation and len(items) >= 3:
            validation.append((u, int(picked[1])))
    held = np.array(test + validation, dtype=np.int64).reshape(-1, 2)
    for m in (view, collect, cart, buy):
        m[held[:, 0], held[:, 1]] = False

    mats = {"view": view, "collect": collect, "cart": cart, "buy": buy}
    train = {b: sp.csr_matrix(mats[b].astype(np.float32)) for b in BEHAVIORS}
    ds = MultiBehaviorData(BEHAVIORS, np.arange(1, n_users + 1), np.arange(1, n_items + 1), train,
                           np.array(validation, dtype=np.int64).reshape(-1, 2),
                           np.array(test, dtype=np.int64).reshape(-1, 2), None, "crgcn", 1,
                           {"direct_buys": int(direct.sum())})
    truth = {"pi": pi.astype(np.float32), "item_factor": item_factor.astype(np.int64),
             "loading": loading.astype(np.float32), "popularity": popularity.astype(np.float32)}
    return ds, truth


def make(out: Path, seed: int, quick: bool) -> dict[str, Any]:
    """Write the embedded benchmark to ``out``; returns its summary (counts and ground-truth file)."""
    out = Path(out)
    cfg = SIZES["quick" if quick else "full"]
    ds, truth = generate(cfg, seed)
    write_folder(ds, out)

    def save_truth(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **truth)

    atomic_save(out / "truth.npz", save_truth)
    summary = {
        "data_version": DATA_VERSION, "seed": seed, "quick": quick, "config": asdict(cfg),
        "behaviors": list(BEHAVIORS), "target": BEHAVIORS[-1], "users": cfg.users, "items": cfg.items,
        "interactions": {b: int(ds.train[b].nnz) for b in BEHAVIORS},
        "validation_pairs": len(ds.validation), "test_pairs": len(ds.test),
        "direct_buys": ds.notes["direct_buys"], "truth": "truth.npz",
    }
    atomic_write_json(out / "README.json", {
        "what": "affectkit mblfe embedded benchmark: CRGCN/MBLFE folder format; truth.npz holds the latent factors",
        **summary})
    return summary
