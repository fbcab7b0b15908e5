"""Per-value policies on filtered data, their soups over the weight grid, the front and its hypervolume.

``train_policies(cfg, data_dir, out_dir)`` is what ``affectkit train vc-soup`` runs;
``evaluate_policies`` is what ``affectkit evaluate vc-soup`` runs; ``run_setting`` is one seed of the
embedded benchmark (every filtering method, same reference, same steps).
"""

from __future__ import annotations

import copy
import json
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.vc_soup.config import Config
from affectkit.tasks.vc_soup.filtering import FilterSpec, filter_prefs
from affectkit.tasks.vc_soup.pareto import hypervolume, lmc_barrier, pareto_mask, weight_grid
from affectkit.tasks.vc_soup.prefdata import read_rows

METHODS = ("vc", "unfiltered", "random", "denoise")


# ---- data ---------------------------------------------------------------------------------------


def setting_dir(data_dir: Path, cfg: Config) -> Path:
    """``data_dir`` itself, or its ``cfg.setting`` sub-directory when it holds several settings."""
    d = Path(data_dir)
    if not (d / f"{cfg.values[0]}_train.jsonl").is_file() and (d / cfg.setting).is_dir():
        return d / cfg.setting
    return d


def load_setting(data_dir: Path, values: list[str]) -> dict[str, Any]:
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(d, "data directory not found", "make one with `affectkit data make vc-soup --out DIR`")
    rows = {}
    for v in values:
        f = d / f"{v}_train.jsonl"
        if not f.is_file():
            raise DataError(f, f"no training pairs for value {v!r}", f"expected {v}_train.jsonl (canonical prompt/chosen/rejected JSONL)")
        rows[v] = read_rows(f)
    sft = read_rows(d / "sft.jsonl") if (d / "sft.jsonl").is_file() else []
    evals = read_rows(d / "eval_prompts.jsonl") if (d / "eval_prompts.jsonl").is_file() else []
    truth = json.loads((d / "truth.json").read_text()) if (d / "truth.json").is_file() else {}
    return {"rows": rows, "sft": sft, "evals": evals, "truth": truth, "dir": d}


def select_pairs(rows: dict[str, list[dict[str, Any]]], cfg: Config, method: str, seed: int) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The training pairs of each value under a filtering method, and what was kept."""
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}", "methods: " + ", ".join(METHODS))
    values = tuple(cfg.values)
    spec = FilterSpec(values=values, rewards=dict(cfg.rewards), cost_models=tuple(cfg.cost_models),
                      threshold=None if cfg.keep_ratio > 0 else cfg.threshold,
                      keep_ratio=cfg.keep_ratio if cfg.keep_ratio > 0 else None, keep_all=True)
    out, info = {}, {}
    for v in values:
        scored, stats = filter_prefs(rows[v], spec, source=f"{v}_train.jsonl")
        kept = [r for r in scored if r["kept"]]
        rng = np.random.default_rng([seed, zlib.crc32(f"{method}/{v}".encode())])
        if method == "vc":
            chosen = kept
        elif method == "unfiltered":
            chosen = scored
        elif method == "random":
            idx = np.sort(rng.choice(len(scored), size=len(kept), replace=False))
            chosen = [scored[i] for i in idx]
        else:  # denoise: label agrees with the pair's own value reward, subsampled to the vc size
            agree = [r for r in scored if r["gap_z"][v] > 0]
            if len(agree) > len(kept):
                idx = np.sort(rng.choice(len(agree), size=len(kept), replace=False))
                agree = [agree[i] for i in idx]
            chosen = agree
        flipped = sum(bool(r.get("label_flipped")) for r in chosen)
        info[v] = {"n_total": len(scored), "n_train": len(chosen), "vc_kept": len(kept), "flipped_in_train": flipped,
                   "consistency_mean_train": float(np.mean([r["consistency"] for r in chosen])) if chosen else math.nan}
        out[v] = chosen
    return out, info


# ---- models -------------------------------------------------------------------------------------


def build_reference(cfg: Config, setting: dict[str, Any], seed: int) -> tuple[Any, Any, dict[str, Any]]:
    from affectkit.tasks.vc_soup.policy import build_policy, build_tokenizer, train_sft

    words: set[str] = set()
    for rows in setting["rows"].values():
        for r in rows:
            for key in ("prompt", "chosen", "rejected"):
                words.update(str(r.get(key) or "").split())
    for r in setting["sft"]:
        words.update(str(r.get("prompt", "")).split())
        words.update(str(r.get("response", "")).split())
    for e in setting["evals"]:
        words.update(str(e.get("prompt", "")).split())
        for c in e.get("candidates", []):
            words.update(c.split())
    tok = build_tokenizer(sorted(words))
    p = cfg.policy
    ref = build_policy(len(tok), p.n_layer, p.n_head, p.n_embd, p.n_positions, seed=seed)
    info: dict[str, Any] = {"vocab": len(tok), "params": sum(t.numel() for t in ref.parameters())}
    if cfg.sft.steps > 0 and setting["sft"]:
        losses = train_sft(ref, tok, [r["prompt"] for r in setting["sft"]], [r["response"] for r in setting["sft"]],
                           cfg.sft.steps, cfg.sft.lr, cfg.sft.batch_size, seed)
        info["sft_loss_last"] = float(np.mean(losses[-10:]))
    return tok, ref, info


def train_value_policy(cfg: Config, ref: Any, tok: Any, rows: list[dict[str, Any]], seed: int, work_dir: Path | None = None) -> tuple[Any, dict[str, Any]]:
    from affectkit.tasks.vc_soup.policy import train_dpo_native, train_dpo_trl

    d = cfg.dpo
    policy = copy.deepcopy(ref)
    if d.trainer == "native":
        info = train_dpo_native(policy, ref, tok, rows, d.steps, d.lr, d.batch_size, d.beta, seed, d.label_smoothing)
        return policy, info
    lora = {"r": d.lora_r, "alpha": d.lora_alpha} if d.lora_r > 0 else None
    info = train_dpo_trl(policy, None if lora else copy.deepcopy(ref), tok, rows, d.steps, d.lr, d.batch_size, d.beta, seed,
                         Path(work_dir or ".") / "trl", lora)
    model = info.pop("model")
    if lora:
        model = model.merge_and_unload()
    return model.eval(), info


def quiet_transformers() -> None:
    """No per-file progress bars from transformers on stderr (our own logs say what happens)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def save_policy(model: Any, tok: Any, path: Path) -> None:
    quiet_transformers()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    tok.save_pretrained(str(path))


def _load_policy(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    return AutoModelForCausalLM.from_pretrained(str(path)).eval(), AutoTokenizer.from_pretrained(str(path))


def train_policies(cfg: Config, data_dir: Path, out_dir: Path, seed: int = 0, output: Any = None, resume: bool = False) -> dict[str, Any]:
    """Filter each value dataset, warm up the reference, train one DPO policy per value, save all.

    Each policy is saved as soon as it is trained; with ``resume`` the reference and the policies
    already on disk are loaded instead of trained again (a killed run continues with the next value).
    """
    from affectkit.core.runs import atomic_write_json, read_json
    from affectkit.core.seeding import seed_everything

    seed_everything(seed)
    out_dir = Path(out_dir)
    setting = load_setting(setting_dir(data_dir, cfg), cfg.values)
    selected, sel_info = select_pairs(setting["rows"], cfg, cfg.method, seed)
    log = output.log if output is not None else (lambda m: None)
    ref_dir = out_dir / "reference"
    done_file = out_dir / "policies" / "progress.json"
    done = read_json(done_file) if (resume and done_file.is_file()) else {}
    if resume and "reference" in done and (ref_dir / "model.safetensors").is_file():
        ref, tok = _load_policy(ref_dir)
        ref_info = done["reference"]
        log("resume: loaded the reference policy")
    else:
        tok, ref, ref_info = build_reference(cfg, setting, seed)
        save_policy(ref, tok, ref_dir)
        done = {"reference": ref_info}
        atomic_write_json(done_file, done)
    summary: dict[str, Any] = {"method": cfg.method, "reference": ref_info, "values": {}}
    for v in cfg.values:
        vdir = out_dir / "policies" / v
        if resume and v in done and (vdir / "model.safetensors").is_file():
            log(f"resume: the {v} policy is already trained")
            summary["values"][v] = done[v]
            continue
        log(f"training the {v} policy on {len(selected[v])} pairs ({cfg.method})")
        policy, info = train_value_policy(cfg, ref, tok, selected[v], seed, out_dir)
        save_policy(policy, tok, vdir)
        summary["values"][v] = done[v] = {**sel_info[v], **info}
        atomic_write_json(done_file, done)
    atomic_write_json(out_dir / "policies" / "summary.json", summary)
    return summary


# ---- evaluation ---------------------------------------------------------------------------------


def expected_rewards(model: Any, tok: Any, evals: list[dict[str, Any]], values: list[str], norm: dict[str, Any]) -> np.ndarray:
    """Mean over held-out prompts of the policy's expected (normalised) reward per value, with the
    policy's distribution restricted to each prompt's candidate responses (exact, no sampling)."""
    from affectkit.tasks.vc_soup.policy import candidate_distribution

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
    norm = (setting.get("truth") or {}).get("reward_norm")
    if norm:
        return {v: tuple(norm[v]) for v in values}
    out = {}
    for v in values:
        allr = np.concatenate([np.asarray(e["rewards"][v], float) for e in setting["evals"]])
        out[v] = (float(allr.mean()), float(allr.std() + 1e-12))
    return out


def soup_curve(states: list[dict[str, Any]], ref_state: dict[str, Any] | None, model: Any, tok: Any, evals: list[dict[str, Any]], values: list[str], norm: dict[str, Any], grid: list[tuple[float, ...]], space: str = "full", scorer: Any = None) -> np.ndarray:
    """Objective vector of the soup at each weight vector of the grid (``scorer(model)`` overrides
    the exact candidate-set expectation)."""
    from affectkit.tasks.vc_soup.merging import linear_combine

    pts = []
    for w in grid:
        if space == "delta" and ref_state is not None:
            merged = linear_combine(states, w, base=ref_state, base_weight=1.0 - sum(w))
        else:
            merged = linear_combine(states, w)
        model.load_state_dict(merged, strict=True)
        pts.append(scorer(model) if scorer is not None else expected_rewards(model, tok, evals, values, norm))
    return np.array(pts)


def front_summary(points: np.ndarray, ref_point: np.ndarray, extra_ref: np.ndarray | None = None) -> dict[str, Any]:
    mask = pareto_mask(points)
    out = {"hv_ref_policy": hypervolume(points, ref_point), "n_pareto": int(mask.sum())}
    if extra_ref is not None:
        out["hv_pooled_min"] = hypervolume(points, extra_ref)
    if points.shape[1] == 2:
        bars = [lmc_barrier(points[:, k]) for k in range(points.shape[1])]
        out["barrier_per_value"] = bars
        out["barrier_worst"] = float(max(bars))
    return out


def plot_front(curves: dict[str, np.ndarray], ref_point: np.ndarray, values: list[str], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, pts in curves.items():
        m = pareto_mask(pts)
        ax.plot(pts[:, 0], pts[:, 1], "-o", ms=3, label=name, alpha=0.8)
        ax.plot(pts[m, 0], pts[m, 1], "o", ms=6, mfc="none", color="k")
    ax.plot([ref_point[0]], [ref_point[1]], "kx", label="reference policy")
    ax.set_xlabel(f"mean {values[0]} (z)")
    ax.set_ylabel(f"mean {values[1]} (z)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_policies(cfg: Config, data_dir: Path, policy_dir: Path, out_dir: Path | None = None) -> dict[str, Any]:
    """Grid of soups of the saved per-value policies: points, Pareto set, hypervolume, barrier, PNG."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    setting = load_setting(setting_dir(data_dir, cfg), cfg.values)
    if not setting["evals"]:
        raise DataError(Path(data_dir) / "eval_prompts.jsonl", "no held-out prompts with candidates")
    norm = reward_norm(setting, cfg.values)
    pdir = Path(policy_dir)
    ref_path = pdir / "reference"
    if not (ref_path / "model.safetensors").is_file():
        raise DataError(ref_path, "no reference policy", "pass the --out of `affectkit train vc-soup`")
    tok = AutoTokenizer.from_pretrained(str(ref_path))
    model = AutoModelForCausalLM.from_pretrained(str(ref_path)).eval()
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
            raise DataError(f, f"no policy for value {v!r}")
        m = AutoModelForCausalLM.from_pretrained(str(f.parent))
        states.append(m.state_dict())
    grid = weight_grid(len(cfg.values), cfg.grid_steps)
    pts = soup_curve(states, ref_state, model, tok, setting["evals"], cfg.values, norm, grid, cfg.merge_space, scorer)
    summ = front_summary(pts, ref_point)
    mask = pareto_mask(pts)
    result = {"values": cfg.values, "eval_mode": cfg.eval_mode, "reference_point": ref_point.tolist(),
              "grid": [{"weights": list(w), **{v: float(p[k]) for k, v in enumerate(cfg.values)}, "pareto": bool(m)}
                       for w, p, m in zip(grid, pts, mask, strict=True)], **summ}
    if out_dir is not None and len(cfg.values) == 2:
        plot_front({cfg.method: pts}, ref_point, cfg.values, Path(out_dir) / "front.png", f"vc-soup ({cfg.method})")
        result["plot"] = str(Path(out_dir) / "front.png")
    return result


def run_setting(cfg: Config, data_dir: Path, seed: int, methods: tuple[str, ...] = METHODS, log: Any = None) -> dict[str, Any]:
    """One seed of the benchmark in one setting: every method from the same reference, same steps."""
    setting = load_setting(data_dir, cfg.values)
    norm = reward_norm(setting, cfg.values)
    tok, ref, ref_info = build_reference(cfg, setting, seed)
    ref_state = {k: v.clone() for k, v in ref.state_dict().items()}
    ref_point = expected_rewards(ref, tok, setting["evals"], cfg.values, norm)
    grid = weight_grid(len(cfg.values), cfg.grid_steps)
    model = copy.deepcopy(ref)
    curves, infos = {}, {}
    for method in methods:
        selected, sel_info = select_pairs(setting["rows"], cfg, method, seed)
        states = []
        for v in cfg.values:
            policy, info = train_value_policy(cfg, ref, tok, selected[v], seed)
            states.append({k: t.detach().clone() for k, t in policy.state_dict().items()})
            sel_info[v].update(info)
        curves[method] = soup_curve(states, ref_state, model, tok, setting["evals"], cfg.values, norm, grid, cfg.merge_space)
        infos[method] = sel_info
        if log:
            log(f"seed {seed} {Path(data_dir).name} {method}: " + ", ".join(f"{v} n={sel_info[v]['n_train']}" for v in cfg.values))
        del states
    pooled_min = np.min(np.concatenate([*curves.values(), ref_point[None]]), axis=0)
    rows = []
    for method, pts in curves.items():
        s = front_summary(pts, ref_point, pooled_min)
        rows.append({"method": method, "seed": seed, "hv_ref_policy": s["hv_ref_policy"], "hv_pooled_min": s["hv_pooled_min"],
                     "barrier_worst": s.get("barrier_worst", math.nan), "n_pareto": s["n_pareto"],
                     **{f"n_train_{v}": infos[method][v]["n_train"] for v in cfg.values},
                     **{f"flipped_{v}": infos[method][v]["flipped_in_train"] for v in cfg.values},
                     **{f"dpo_loss_{v}": infos[method][v]["loss_last"] for v in cfg.values}})
    return {"rows": rows, "curves": {m: c.tolist() for m, c in curves.items()}, "reference_point": ref_point.tolist(),
            "pooled_min": pooled_min.tolist(), "reference": ref_info, "truth": setting["truth"]}
