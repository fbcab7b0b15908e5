"""`train tqd` and `evaluate tqd`: training runs the shared loop (:class:`TqdLoop`) in the run directory;
evaluation scores a run's checkpoint on the held-out golden clips per noise band, generates clips for the
sample metrics (motion, sharpness and optical flow against the held-out golden clips, random-feature
Frechet distance) and, with ``--gradsim``, runs the gradient-similarity diagnostic on the meta CSV's
golden / degraded / static pairs; ``--plots DIR`` draws them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from affectkit.core.errors import DataError, UsageError
from affectkit.core.task import EvaluateRequest, TrainRequest

PAIR_VARIANTS = ("golden", "degraded", "static")


def train_run(request: TrainRequest) -> dict[str, Any]:
    from affectkit.core.device import get_accelerator
    from affectkit.core.loop import fit
    from affectkit.tasks.tqd.train import TqdLoop

    cfg, out = request.cfg, request.output
    loop = TqdLoop(request.seed)
    bundle = loop.build_data(cfg, request.data_dir)
    info = bundle.info
    out.log(f"sampler {cfg.sampler.mode}; train clips {info['train_clips']} {info['train_types']}; "
            f"held-out golden clips {info['eval_clips']}")
    fitted = fit(loop, cfg, bundle, get_accelerator(request.precision), out, request.seed, run=request.run,
                 resume=request.resume)
    return {"step": fitted.step, "metrics": fitted.metrics, "best": fitted.best, "stopped_early": fitted.stopped_early,
            "sampler": cfg.sampler.mode, "train_clips": info["train_clips"], "train_types": info["train_types"]}


def stack_clips(dataset: Any) -> Any:
    """Every clip of a ClipDataset as one float tensor ``[N, C, T, H, W]``."""
    import torch

    return torch.stack([dataset[i]["clip"] for i in range(len(dataset))])


def generate(model: Any, cfg: Any, shape: tuple[int, ...], n: int, batch_size: int = 32) -> Any:
    """``n`` clips by Euler sampling from seeded noise (``eval.seed``): the same noise for every run."""
    import torch

    from affectkit.tasks.tqd.method_flow import euler_sample

    gen = torch.Generator().manual_seed(int(cfg.eval.seed) + 17)
    noise = torch.randn((n, *shape), generator=gen)
    model.eval()
    return torch.cat([euler_sample(model, noise[i:i + batch_size].shape, cfg.eval.sample_steps,
                                   noise=noise[i:i + batch_size]).cpu() for i in range(0, n, batch_size)])


def sample_report(model: Any, cfg: Any, reference: Any) -> tuple[dict[str, float], Any]:
    """(scalar sample metrics of ``eval.samples`` generated clips against ``reference``, the samples)."""
    from affectkit.tasks.tqd.diagnostics import sample_metrics

    samples = generate(model, cfg, tuple(reference.shape[1:]), cfg.eval.samples)
    found = sample_metrics(samples, reference, flow=True, feature_seed=cfg.eval.seed)
    return {f"sample {k}": float(v) for k, v in found.items() if k != "per_clip" and not k.startswith("n_")}, samples


def pair_clips(cfg: Any, data_dir: Path) -> dict[str, Any]:
    """The meta CSV's paired clips as tensors: variant (golden, degraded, static) -> ``[P, C, T, H, W]``,
    rows matched by ``pair`` (only pairs that have the variant and a golden clip)."""
    from affectkit.tasks.tqd.data import ClipDataset, read_meta

    meta = data_dir / cfg.data.meta
    table = read_meta(meta, need_types=False)
    if "pair" not in table.columns or "variant" not in table.columns:
        raise DataError(meta, "no pair / variant columns: --gradsim needs clips of the same content rendered golden "
                        "and degraded (and static)", "the embedded benchmark has them (affectkit data make tqd)")
    by_variant: dict[str, dict[str, int]] = {v: {} for v in PAIR_VARIANTS}
    for i, (pair, variant) in enumerate(zip(table.columns["pair"], table.columns["variant"], strict=True)):
        if pair.strip() and variant in by_variant:
            by_variant[variant][pair.strip()] = i
    golden = by_variant["golden"]
    if not golden:
        raise DataError(meta, "no row with variant=golden and a pair id: nothing to compare against")
    size = cfg.data.size or None
    out: dict[str, Any] = {}
    for variant in PAIR_VARIANTS[1:]:
        keys = sorted(k for k in by_variant[variant] if k in golden)
        if keys:
            a = ClipDataset(table.take([golden[k] for k in keys]), frames=cfg.data.frames, size=size)
            b = ClipDataset(table.take([by_variant[variant][k] for k in keys]), frames=cfg.data.frames, size=size)
            out[variant] = (stack_clips(a), stack_clips(b))
    if not out:
        raise DataError(meta, "no golden pair has a degraded or static partner")
    return out


def gradsim(model: Any, cfg: Any, pairs: dict[str, Any]) -> dict[str, dict[float, dict[str, float]]]:
    """variant -> {s: {mean, std, sem, n}} of the gradient cosine between golden and variant clips."""
    from affectkit.tasks.tqd.diagnostics import gradient_similarity_stats

    return {variant: gradient_similarity_stats(model, a, b, seed=cfg.eval.seed, n_draws=cfg.eval.gradsim_draws)
            for variant, (a, b) in pairs.items()}


def evaluate_request(request: EvaluateRequest) -> dict[str, Any]:
    from affectkit.core.device import get_accelerator
    from affectkit.core.loop import evaluate_model, load_weights
    from affectkit.core.seeding import seed_everything
    from affectkit.tasks.tqd.train import TqdLoop

    if request.run is None:
        raise UsageError("--run is required", "pass the --out of `affectkit train tqd`")
    cfg, out, options = request.cfg, request.output, request.options
    data_dir = request.trained_data_dir()
    weights = request.run.weights(request.checkpoint)
    accelerator = get_accelerator(request.precision)
    seed_everything(request.seed)
    loop = TqdLoop()
    bundle = loop.build_data(cfg, data_dir)
    if bundle.eval is None:
        raise DataError(data_dir / cfg.data.meta, "no held-out golden clip (split test, type golden"
                        + (f", subset {cfg.data.eval_subset}" if cfg.data.eval_subset else "") + ")",
                        "set --set data.eval_subset='' or add test-split golden rows")
    model = load_weights(loop.build_model(cfg), weights).eval()
    metrics = evaluate_model(loop, accelerator.prepare(model), bundle, cfg, accelerator, out)
    result: dict[str, Any] = {"run_dir": str(request.run.path), "checkpoint": weights.parent.name,
                              "data_dir": str(data_dir)}
    plots: list[str] = []
    plot_dir = Path(options.plots) if options is not None and options.plots else None
    if plot_dir is not None and accelerator.is_main_process:
        from affectkit.tasks.tqd.diagnostics import plot_band_losses

        bands = {k.removeprefix("loss "): v for k, v in metrics.items() if k.startswith("loss ")}
        plots.append(str(plot_band_losses(plot_dir / "band_losses.png", {request.run.path.name: bands},
                                          "held-out golden flow loss per noise band")))
    if cfg.eval.samples and accelerator.is_main_process:
        reference = stack_clips(bundle.eval)
        out.log(f"generating {cfg.eval.samples} clips ({cfg.eval.sample_steps} Euler steps)")
        found, samples = sample_report(model, cfg, reference)
        metrics.update(found)
        if plot_dir is not None:
            from affectkit.tasks.tqd.diagnostics import plot_samples

            plots.append(str(plot_samples(plot_dir / "samples.png", samples, reference)))
    if options is not None and options.gradsim and accelerator.is_main_process:
        pairs = pair_clips(cfg, data_dir)
        out.log(f"gradient similarity on {', '.join(f'{len(a)} {v}' for v, (a, _) in pairs.items())} pairs")
        stats = gradsim(model, cfg, pairs)
        result["gradient_similarity"] = {v: {f"{s:g}": d for s, d in curve.items()} for v, curve in stats.items()}
        for variant, curve in stats.items():
            metrics.update({f"gradsim {variant} s={s:g}": d["mean"] for s, d in curve.items()})
        if plot_dir is not None:
            from affectkit.tasks.tqd.diagnostics import plot_gradient_similarity

            curves = {f"golden vs {v}": {s: d["mean"] for s, d in c.items()} for v, c in stats.items()}
            errors = {f"golden vs {v}": {s: d["sem"] for s, d in c.items()} for v, c in stats.items()}
            plots.append(str(plot_gradient_similarity(plot_dir / "gradient_similarity.png", curves, errors)))
    result["metrics"] = metrics
    if plots:
        result["plots"] = plots
    return result
