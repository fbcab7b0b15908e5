"""news-rec's recipe around the shared loop: train with validation selection, score a run or a
prediction file, write prediction.txt, dataset statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError
from affectkit.core.task import EvaluateRequest, PredictRequest, TrainRequest
from affectkit.tasks.news_rec.train import _PREPARED, NewsRecLoop, impression_scores, load


def train_run(request: TrainRequest) -> dict[str, Any]:
    from affectkit.core.device import get_accelerator
    from affectkit.core.loop import fit

    loop = NewsRecLoop("valid")
    bundle = loop.build_data(request.cfg, request.data_dir)
    if bundle.info.get("valid_is_test"):
        request.output.warn("no validation impressions (data.valid_hours): the best epoch is chosen on the test split")
    fitted = fit(loop, request.cfg, bundle, get_accelerator(request.precision), request.output, request.seed,
                 run=request.run, resume=request.resume)
    return {"step": fitted.step, "metrics": fitted.metrics, "best": fitted.best, "stopped_early": fitted.stopped_early,
            "data": bundle.info}


def _model(cfg: Any, weights: Path) -> Any:
    """The network with a run's weights; tables that grew (users and news of a new split) keep the
    trained rows first."""
    from safetensors.torch import load_file

    model = NewsRecLoop().build_model(cfg)
    state = load_file(str(weights))
    own = model.state_dict()
    for key, value in state.items():
        if key not in own:
            raise DataError(weights, f"weights do not fit the config: unexpected tensor {key!r}")
        if own[key].shape != value.shape:
            if key in ("user.weight", "news_id.weight") and value.shape[0] <= own[key].shape[0]:
                own[key][: value.shape[0]] = value
                continue
            raise DataError(weights, f"tensor {key!r} has shape {tuple(value.shape)}, the config builds {tuple(own[key].shape)}")
        own[key] = value
    model.load_state_dict(own)
    return model.eval().requires_grad_(False)


def _score_impressions(cfg: Any, model: Any, imps: Any, output: Any) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from affectkit.tasks.news_rec.train import Collate, eval_rows

    rows = eval_rows(imps)
    collate = Collate(next(iter(_PREPARED.values())), cfg.data.npratio)
    scores = []
    with torch.no_grad():
        for lo in output.track(range(0, len(rows), 512), "scoring impressions", total=-(-len(rows) // 512)):
            batch = collate(rows[lo : lo + 512])
            scores.append(model.score(batch, cfg.model.stage_hours * 3600.0).numpy())
    return np.concatenate(scores) if scores else np.zeros((0, 0)), imps.labels


def evaluate_request(request: EvaluateRequest) -> dict[str, Any]:
    from affectkit.tasks.news_rec.scoring import score

    opts = request.options
    if opts is not None and (opts.predictions is not None or opts.truth is not None):
        if opts.predictions is None or opts.truth is None:
            raise UsageError("--predictions and --truth go together")
        result = score(opts.truth, opts.predictions)
        return {"metrics": {k: result[k] for k in ("auc", "mrr", "ndcg@5", "ndcg@10")}, **result}
    run = request.run
    if run is None:
        raise UsageError("--run, or --predictions with --truth, is required",
                         "pass the --out of `affectkit train news-rec`, or score a prediction.txt")
    data_dir = request.data_dir or Path(run.meta().get("data_dir", ""))
    if not Path(data_dir).is_dir():
        raise DataError(data_dir, "the run's data directory is gone", "pass --data DIR")
    split = (opts.split if opts is not None and opts.split else "test")
    if split not in ("valid", "test"):
        raise UsageError(f"--split: expected valid or test, got {split!r}")
    prep = load(request.cfg, data_dir)
    imps = prep.test if split == "test" else prep.valid
    if not imps.labeled:
        raise DataError(Path(data_dir) / request.cfg.data.eval_dir / "behaviors.tsv",
                        "the split has no labels (bare news ids): it cannot be scored",
                        "write a prediction.txt with `affectkit predict news-rec SPLIT_DIR --run RUN` instead")
    model = _model(request.cfg, run.weights(request.checkpoint))
    scores, labels = _score_impressions(request.cfg, model, imps, request.output)
    metrics = impression_scores(scores, labels)
    return {"run_dir": str(run.path), "split": split, "data_dir": str(data_dir), "metrics": metrics}


def predict_run(request: PredictRequest) -> dict[str, Any]:
    """Rank the candidates of every impression of the split folder ``request.input`` and write
    ``prediction.txt`` (official format) into the run directory."""
    from affectkit.core.output import get_output
    from affectkit.core.runs import RunDir
    from affectkit.tasks.news_rec.config import NewsRecConfig
    from affectkit.tasks.news_rec.prepare import prepare
    from affectkit.tasks.news_rec.scoring import write_prediction

    run = RunDir.existing(request.run)
    cfg = run.load_config(NewsRecConfig)
    data_dir = Path(run.meta().get("data_dir", ""))
    if not data_dir.is_dir():
        raise DataError(data_dir, "the run's data directory is gone (its training split is needed)")
    folder = Path(request.input)
    _PREPARED.clear()
    prep = prepare(cfg, data_dir, extra=folder)
    _PREPARED[("predict", str(folder))] = prep
    model = _model(cfg, run.weights(request.checkpoint))
    scores, _ = _score_impressions(cfg, model, prep.extra, get_output())
    keep = prep.extra.candidates >= 0
    per_imp = [s[k] for s, k in zip(scores, keep, strict=True)]
    out = run.path / "prediction.txt"
    write_prediction(out, prep.extra.impression_ids.tolist(), per_imp)
    rows = [{"impression_id": str(i), "candidates": int(k.sum())} for i, k in zip(prep.extra.impression_ids, keep, strict=True)]
    return {"rows": rows, "prediction": str(out), "impressions": len(rows)}


def statistics_of(cfg: Any, data_dir: Path) -> dict[str, Any]:
    from affectkit.tasks.news_rec.data import read_behaviors, statistics
    from affectkit.tasks.news_rec.prepare import read_split

    out: dict[str, Any] = {"data_dir": str(data_dir)}
    train = None
    for name in (cfg.data.train_dir, cfg.data.eval_dir):
        news, path = read_split(Path(data_dir) / name)
        b = read_behaviors(path, news)
        out[name] = statistics(b, news, train=train)
        train = train or b
    return out
