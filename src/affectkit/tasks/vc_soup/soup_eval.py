"""What ``affectkit evaluate vc-soup`` runs: every soup of the grid of weights over the saved
per-value policies, its objective vector (mean normalised reward per value), the Pareto set, the
front's hypervolume over the reference policy, the barrier along the merge path, and front.png.

A policy's reward is exact by default: its expected reward over each held-out prompt's candidate
responses (``eval_mode: candidates``); ``eval_mode: sample`` scores sampled responses instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.vc_soup.config import Config
from affectkit.tasks.vc_soup.data import load_setting, setting_dir
from affectkit.tasks.vc_soup.method_merging import linear_combine
from affectkit.tasks.vc_soup.method_pareto import pareto_mask, weight_grid
from affectkit.tasks.vc_soup.metrics import front_summary
from affectkit.tasks.vc_soup.model import candidate_distribution, load_policy, policy_state


def expected_rewards(model: Any, tok: Any, evals: list[dict[str, Any]], values: list[str], norm: dict[str, Any]) -> np.ndarray:
    """Mean over held-out prompts of the policy's expected (normalised) reward per value, with the
    policy's distribution restricted to each prompt's candidate responses (exact, no sampling)."""
    tot = np.zeros(len(values))
    for e in evals:
        p = candidate_distribution(model, tok, e["prompt"], e["candidates"])
        for k, v in enumerate(values):
            r = np.asarray(e["rewards"][v], dtype=np.float64)
            mu, sd = norm.get(v, (0.0, 1.0))
            tot[k] += float(p @ ((r - mu) / sd))
    return tot / max(1, len(evals))


def sampled_rewards(model: Any, tok: Any, evals: list[dict[str, Any]], values: list[str], backends: dict[str, str], norm: dict[str, Any], cfg: Config) -> np.ndarray:
    """Mean normalised reward per value of sampled responses (top-p, top-k off) to the held-out prompts,
    scored by the values' reward backends."""
    import torch

    from affectkit.tasks.vc_soup.rewards import make_scorer

    prompts = [e["prompt"] for e in evals]
    by_len: dict[int, list[int]] = {}
    enc = [tok.encode(p, add_special_tokens=False) + [tok.sep_token_id] for p in prompts]
    for i, ids in enumerate(enc):
        by_len.setdefault(len(ids), []).append(i)
    texts: list[tuple[str, str]] = []
    gen = torch.Generator().manual_seed(cfg.eval_seed)
    torch.manual_seed(cfg.eval_seed)
    for _, idx in sorted(by_len.items()):  # equal lengths: no padding needed
        ids = torch.tensor([enc[i] for i in idx]).repeat_interleave(cfg.eval_samples, 0)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_p=cfg.eval_top_p, top_k=0,
                                 max_new_tokens=cfg.eval_max_new_tokens, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        for row, i in zip(out[:, ids.shape[1]:], np.repeat(idx, cfg.eval_samples), strict=True):
            texts.append((prompts[i], tok.decode(row, skip_special_tokens=True).strip()))
    del gen
    res = np.zeros(len(values))
    for k, v in enumerate(values):
        spec = backends.get(v)
        if not spec or spec.startswith("precomputed"):
            raise UsageError(f"eval_mode sample needs a reward backend for {v!r}", f"set rewards.{v}=vader (or another backend)")
        scorer = _SCORERS.setdefault(spec, make_scorer(spec))
        r = scorer([p for p, _ in texts], [t for _, t in texts])
        mu, sd = norm.get(v, (0.0, 1.0))
        res[k] = float(np.mean((r - mu) / sd))
    return res


_SCORERS: dict[str, Any] = {}


def reward_norm(setting: dict[str, Any], values: list[str]) -> dict[str, Any]:
    """Mean and std per value to z-normalise rewards with: the training pool's (``truth.json``) when
    known, else those of the held-out candidates' rewards."""
    norm = (setting.get("truth") or {}).get("reward_norm")
    if norm:
        for v in values:
            pair = norm.get(v) if isinstance(norm, dict) else None
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, (int, float)) for x in pair) and pair[1] > 0):
                raise DataError(Path(setting.get("dir", ".")) / "truth.json", f"reward_norm[{v!r}]: expected [mean, std > 0], got {pair!r}")
        return {v: tuple(norm[v]) for v in values}
    out = {}
    for v in values:
        allr = np.concatenate([np.asarray(e["rewards"][v], float) for e in setting["evals"]])
        out[v] = (float(allr.mean()), float(allr.std() + 1e-12))
    return out


def soup_curve(states: list[dict[str, Any]], ref_state: dict[str, Any] | None, model: Any, tok: Any, evals: list[dict[str, Any]], values: list[str], norm: dict[str, Any], grid: list[tuple[float, ...]], space: str = "full", scorer: Any = None) -> np.ndarray:
    """Objective vector of the soup at each weight vector of the grid (``scorer(model)`` overrides
    the exact candidate-set expectation)."""
    pts = []
    for w in grid:
        if space == "delta" and ref_state is not None:
            merged = linear_combine(states, w, base=ref_state, base_weight=1.0 - sum(w))
        else:
            merged = linear_combine(states, w)
        model.load_state_dict(merged, strict=True)
        pts.append(scorer(model) if scorer is not None else expected_rewards(model, tok, evals, values, norm))
    return np.array(pts)


def evaluate_policies(cfg: Config, data_dir: Path, policy_dir: Path, out_dir: Path | None = None) -> dict[str, Any]:
    """Grid of soups of the saved per-value policies: points, Pareto set, hypervolume, barrier, PNG."""
    setting = load_setting(setting_dir(data_dir, cfg), cfg.values)
    if not setting["evals"]:
        raise DataError(Path(data_dir) / "eval_prompts.jsonl", "no held-out prompts with candidates")
    norm = reward_norm(setting, cfg.values)
    pdir = Path(policy_dir)
    ref_path = pdir / "reference"
    if not (ref_path / "model.safetensors").is_file():
        raise DataError(ref_path, "no reference policy", "pass the --out of `affectkit train vc-soup`")
    model, tok = load_policy(ref_path)
    ref_state = {k: v.clone() for k, v in model.state_dict().items()}
    scorer = None
    if cfg.eval_mode == "sample":
        backends = {**(setting["truth"].get("backends") or {}), **cfg.rewards}
        scorer = lambda m: sampled_rewards(m, tok, setting["evals"], cfg.values, backends, norm, cfg)  # noqa: E731
    ref_point = scorer(model) if scorer else expected_rewards(model, tok, setting["evals"], cfg.values, norm)
    states = []
    for v in cfg.values:
        f = pdir / "policies" / v / "model.safetensors"
        if not f.is_file():
            raise DataError(f, f"no policy for value {v!r}",
                            "train it with `affectkit train vc-soup` (--resume finishes a run that was stopped)")
        state = policy_state(f.parent)
        for k, t in ref_state.items():
            if k not in state or tuple(state[k].shape) != tuple(t.shape):
                got = "missing" if k not in state else f"shape {tuple(state[k].shape)}"
                raise DataError(f.parent, f"{k}: {got}, but the reference policy has shape {tuple(t.shape)}",
                                "every policy must be trained from this run's reference")
        states.append(state)
    grid = weight_grid(len(cfg.values), cfg.grid_steps)
    pts = soup_curve(states, ref_state, model, tok, setting["evals"], cfg.values, norm, grid, cfg.merge_space, scorer)
    summ = front_summary(pts, ref_point)
    mask = pareto_mask(pts)
    result = {"values": cfg.values, "eval_mode": cfg.eval_mode, "reference_point": ref_point.tolist(),
              "grid": [{"weights": list(w), **{v: float(p[k]) for k, v in enumerate(cfg.values)}, "pareto": bool(m)}
                       for w, p, m in zip(grid, pts, mask, strict=True)], **summ}
    if out_dir is not None and len(cfg.values) == 2:
        from affectkit.tasks.vc_soup.bench import plot_front

        plot_front({cfg.method: pts}, ref_point, cfg.values, Path(out_dir) / "front.png", f"vc-soup ({cfg.method})")
        result["plot"] = str(Path(out_dir) / "front.png")
    return result
