"""PRIME's two stages on the shared loop, one fold at a time: label-free pretraining (alignment,
imputation alignment and post-fusion consistency with the prototype bank) on the training fold's
patients, and the downstream stage (a survival or horizon head; linear probe, LoRA or full
fine-tuning) selected on the fold's validation patients and scored on its test patients."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError
from affectkit.core.seeding import attach_generator, keep_generator_state
from affectkit.core.task import DataBundle, LoopTask, MetricSpec
from affectkit.tasks.prime.config import METRICS


@dataclass
class Prepared:
    """A loaded cohort with its folds, availability after ``data.missing``, and report embeddings."""

    cohort: Any
    folds: np.ndarray
    text_emb: dict[str, np.ndarray]
    text_mask: dict[str, np.ndarray]
    text_dims: dict[str, int]


def data_keys(cfg: Any) -> dict[str, Any]:
    d = cfg.data
    return {
        "manifest": d.manifest,
        "modalities": d.modalities,
        "matrices": d.matrices,
        "columns": d.columns,
        "endpoints": d.endpoints,
        "orientation": d.orientation,
        "log2p1": d.log2p1,
        "clinical": d.clinical,
    }


def prepare(cfg: Any, data_dir: Path, seed: int) -> Prepared:
    """Read the cohort as the config says, apply ``data.missing``, make the folds (the manifest's fold
    column when present, else stratified on the first endpoint's event), encode the reports."""
    from affectkit.tasks.prime.data import load_cohort, make_folds
    from affectkit.tasks.prime.features import encode_texts
    cohort = load_cohort(data_dir, **data_keys(cfg))
    if cfg.data.missing:
        cohort = cohort.with_observed(pattern_observed(cohort, cfg.data.missing, seed))
    if cohort.folds is not None:
        folds = np.asarray(cohort.folds, int)
    else:
        first = next(iter(cohort.endpoints))
        folds = make_folds(cohort.endpoints[first][1], cfg.data.folds, seed)
    emb, masks, dims = encode_texts(cohort, cfg.model.text_encoder, cfg.model.text_chunks)
    return Prepared(cohort, folds, emb, masks, dims)


def pattern_observed(cohort: Any, pattern: str, seed: int) -> np.ndarray:
    """What stays observed [n, M] after hiding modalities by a missingness pattern (drawn with
    ``seed``; ``mnar`` keyed on age where a vector modality has it); a patient the pattern would
    empty keeps the first modality it had."""
    from affectkit.tasks.prime.missingness import pattern_mask

    mask = pattern_mask(pattern, cohort.case_ids, len(cohort.modalities), seed, covariate=_covariate(cohort))
    return cohort.observed & (mask | _keep_one(cohort.observed & mask, cohort.observed))


def _keep_one(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Where a pattern leaves a patient with nothing observed, give back the first modality it had."""
    extra = np.zeros_like(before)
    for i in np.flatnonzero(~after.any(1) & before.any(1)):
        extra[i, int(np.flatnonzero(before[i])[0])] = True
    return extra


def _covariate(cohort: Any) -> np.ndarray | None:
    """Age where a vector modality has it (the covariate of the ``mnar`` pattern), else None."""
    for name, names in cohort.feature_names.items():
        if "age" in names:
            return cohort.vectors[name][:, names.index("age")]
    return None


def folds_to_run(cfg: Any, prepared: Prepared) -> list[int]:
    k = sorted(set(prepared.folds.tolist()))
    if cfg.data.fold >= 0:
        if cfg.data.fold not in k:
            raise UsageError(f"data.fold={cfg.data.fold}: the data have folds {k}")
        return [cfg.data.fold]
    return k


def split(
    prepared: Prepared, fold: int, valid_fraction: float, seed: int, event: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, valid, test) patient indices of a fold; valid is a stratified share of the training fold."""
    test = np.flatnonzero(prepared.folds == fold)
    rest = np.flatnonzero(prepared.folds != fold)
    if not valid_fraction:
        return rest, np.zeros(0, int), test
    rng = np.random.default_rng((seed, fold, 17))
    strata = np.nan_to_num(event[rest], nan=2.0) if event is not None else np.zeros(len(rest))
    valid: list[int] = []
    for s in np.unique(strata):
        members = rest[strata == s]
        take = int(round(valid_fraction * len(members)))
        valid.extend(rng.choice(members, take, replace=False).tolist())
    valid_arr = np.sort(np.array(valid, int))
    return np.setdiff1d(rest, valid_arr), valid_arr, test


# ---------------------------------------------------------------- targets


def endpoint_of(cfg: Any, cohort: Any) -> str:
    name = cfg.finetune.endpoint or next(iter(cohort.endpoints))
    if name not in cohort.endpoints:
        raise UsageError(
            f"finetune.endpoint={name!r} is not an endpoint of the data",
            f"the data have {', '.join(cohort.endpoints)}",
        )
    return name


def targets(cfg: Any, cohort: Any, train_idx: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-patient target arrays (``y:*``) of the downstream head and what defines them (bin edges
    from the training fold's event times)."""
    from affectkit.tasks.prime.metrics import assign_bins, horizon_labels, quantile_bins

    time, event = cohort.endpoints[endpoint_of(cfg, cohort)]
    known = np.isfinite(time) & np.isfinite(event)
    ys: dict[str, np.ndarray] = {
        "y:time": np.nan_to_num(time, nan=0.0).astype(np.float32),
        "y:event": np.nan_to_num(event, nan=0.0).astype(np.float32),
        "y:known": known,
    }
    info: dict[str, Any] = {}
    if cfg.finetune.target == "horizon":
        labels, keep = horizon_labels(time, event, cfg.finetune.horizon_days)
        ys["y:label"], ys["y:known"] = labels.astype(np.float32), keep
    elif cfg.finetune.head == "nll":
        tr = train_idx[known[train_idx]]
        edges = quantile_bins(time[tr], event[tr], cfg.finetune.bins)
        ys["y:bin"] = assign_bins(np.nan_to_num(time, nan=0.0), edges).astype(np.int64)
        info["edges"] = [float(e) for e in edges]
    return ys, info


def label_subset(idx: np.ndarray, event: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified share of labelled patients (label-efficiency runs); at least one per stratum."""
    if fraction >= 1.0:
        return idx
    rng = np.random.default_rng((seed, 29))
    keep: list[int] = []
    for s in np.unique(event[idx]):
        members = idx[event[idx] == s]
        keep.extend(rng.choice(members, max(1, int(round(fraction * len(members)))), replace=False).tolist())
    return np.sort(np.array(keep, int))


# ---------------------------------------------------------------- models


def build_encoder(cfg: Any, feat: Any) -> Any:
    from affectkit.tasks.prime.model import PrimeModel

    return PrimeModel(feat.specs(), cfg.model, cfg.bank, cfg.pretrain)


def pretrain_module(cfg: Any, feat: Any, seed: int, observed: np.ndarray | None = None) -> Any:
    """The encoder inside a module whose forward is the pretraining loss, so DDP sees one call;
    ``observed`` (the training patients' availability) gives the augmentation its empirical patterns."""
    import torch

    from affectkit.tasks.prime.method_losses import MissingnessSampler, pretrain_step

    class Objective(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = build_encoder(cfg, feat)
            attach_generator(self, seed)
            self.sampler = (MissingnessSampler.from_config(feat.specs(), torch.from_numpy(observed), cfg.pretrain)
                            if observed is not None else None)

        def forward(self, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
            loss, logs = pretrain_step(self.model, batch, cfg, self.generator, self.sampler)
            # every parameter takes part (a modality absent from a batch), so DDP never waits on one
            loss = loss + 0.0 * sum(p.sum() for p in self.parameters() if p.requires_grad)
            return loss, logs

    return Objective()


def downstream_module(cfg: Any, feat: Any, encoder_weights: Path | None) -> Any:
    """The encoder (pretrained weights when given) with the head, prepared for the mode."""
    from affectkit.core.loop import load_weights

    if encoder_weights is None:
        return with_head(cfg, build_encoder(cfg, feat))
    holder = pretrain_module(cfg, feat, 0)
    try:
        load_weights(holder, encoder_weights)
    except (RuntimeError, KeyError) as exc:
        raise DataError(
            encoder_weights, f"pretrained weights do not fit this config ({str(exc).splitlines()[0]})"
        ) from None
    return with_head(cfg, holder.model)


def with_head(cfg: Any, encoder: Any) -> Any:
    """A downstream model around ``encoder``: the head of ``finetune.target`` / ``head``, LoRA adapters
    in lora mode, and the encoder frozen in linear mode."""
    from affectkit.tasks.prime.heads import DownstreamModel
    from affectkit.tasks.prime.model import set_mode

    model = DownstreamModel.from_config(encoder, cfg.finetune)
    return set_mode(model, cfg.finetune.mode, cfg.finetune.lora_r, cfg.finetune.lora_alpha)


def downstream_loss(model: Any, batch: dict[str, Any], cfg: Any, generator: Any) -> Any:
    import torch

    from affectkit.tasks.prime.heads import cox_ph_loss, modality_dropout, nll_surv_loss

    observed = batch["observed"]
    if cfg.finetune.modality_dropout > 0 and model.training:
        observed = modality_dropout(observed, cfg.finetune.modality_dropout, generator)
    logits = model(batch, observed=observed)
    known = batch["y:known"].bool()
    # every trainable parameter takes part (the bank's or a missing modality's may not), so DDP never
    # waits on one
    unused = 0.0
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        unused = 0.0 * sum(p.sum() for p in model.parameters() if p.requires_grad)
    if not known.any():
        return logits.sum() * 0.0 + unused
    logits = logits[known]
    if cfg.finetune.target == "horizon":
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["y:label"][known].float())
    elif cfg.finetune.head == "nll":
        loss = nll_surv_loss(logits, batch["y:bin"][known], 1.0 - batch["y:event"][known].float(),
                             alpha=cfg.finetune.alpha)
    else:
        loss = cox_ph_loss(logits, batch["y:time"][known].float(), batch["y:event"][known].float())
    return loss + unused


def risk_of(logits: Any, cfg: Any) -> Any:
    from affectkit.tasks.prime.heads import risk_from_logits

    if cfg.finetune.target == "survival" and cfg.finetune.head == "nll":
        return risk_from_logits(logits)
    return logits  # Cox: the linear predictor; horizon: the logit


# ---------------------------------------------------------------- loops


class PretrainLoop(LoopTask):
    """The shared loop's view of pretraining (no labels, no evaluation: the last step is kept)."""

    name = "prime"
    summary = "PRIME pretraining"
    metrics: tuple[MetricSpec, ...] = METRICS

    def __init__(self, prepared: Prepared, feat: Any, train_idx: np.ndarray, seed: int):
        self.prepared, self.feat, self.train_idx, self.seed = prepared, feat, train_idx, seed

    def build_data(self, cfg: Any, data_dir: Path) -> DataBundle:
        from affectkit.tasks.prime.features import Collate, PatientSet

        p = self.prepared
        ds = PatientSet(
            p.cohort, self.train_idx, self.feat, p.text_emb, p.text_mask, cfg.model.max_patches, self.seed
        )
        return DataBundle(
            train=ds, eval=None, collate_fn=Collate(self.feat.modalities), info={"train_patients": len(ds)}
        )

    def build_model(self, cfg: Any) -> Any:
        return pretrain_module(cfg, self.feat, self.seed, self.prepared.cohort.observed[self.train_idx])

    def train_step(self, model: Any, batch: dict[str, Any], cfg: Any) -> Any:
        return model(batch)

    def after_step(self, model: Any, cfg: Any, step: int) -> None:
        from affectkit.tasks.prime.method_losses import after_pretrain_step

        after_pretrain_step(model.model, step, cfg, self.seed)
        keep_generator_state(model)


class FinetuneLoop(LoopTask):
    """The shared loop's view of the downstream stage: the head's loss, and C-index (or AUROC) of the
    fold's validation patients selecting the best step."""

    name = "prime"
    summary = "PRIME downstream"
    metrics: tuple[MetricSpec, ...] = METRICS

    def __init__(
        self,
        prepared: Prepared,
        feat: Any,
        train_idx: np.ndarray,
        valid_idx: np.ndarray,
        ys: dict[str, np.ndarray],
        encoder_weights: Path | None,
        seed: int,
    ):
        self.prepared, self.feat, self.ys = prepared, feat, ys
        self.train_idx, self.valid_idx = train_idx, valid_idx
        self.encoder_weights, self.seed = encoder_weights, seed

    def dataset(self, idx: np.ndarray, cfg: Any, train: bool) -> Any:
        from affectkit.tasks.prime.features import PatientSet

        p = self.prepared
        return PatientSet(
            p.cohort,
            idx,
            self.feat,
            p.text_emb,
            p.text_mask,
            cfg.model.max_patches if train else 0,
            self.seed,
            targets=self.ys,
        )

    def build_data(self, cfg: Any, data_dir: Path) -> DataBundle:
        from affectkit.tasks.prime.features import Collate

        labelled = self.train_idx[self.ys["y:known"][self.train_idx]]
        if len(labelled) == 0:
            raise DataError(
                data_dir, f"no training patient has a known {endpoint_of(cfg, self.prepared.cohort)} label"
            )
        ev = self.dataset(self.valid_idx, cfg, False) if len(self.valid_idx) else None
        return DataBundle(
            train=self.dataset(labelled, cfg, True),
            eval=ev,
            collate_fn=Collate(self.feat.modalities),
            info={"train_patients": len(labelled), "valid_patients": len(self.valid_idx)},
        )

    def build_model(self, cfg: Any) -> Any:
        model = downstream_module(cfg, self.feat, self.encoder_weights)
        attach_generator(model, self.seed)
        return model

    def train_step(self, model: Any, batch: dict[str, Any], cfg: Any) -> Any:
        inner = getattr(model, "module", model)
        return downstream_loss(model, batch, cfg, inner.generator)

    def after_step(self, model: Any, cfg: Any, step: int) -> None:
        keep_generator_state(model)

    def eval_step(self, model: Any, batch: dict[str, Any], cfg: Any) -> dict[str, Any]:
        out = {
            "risk": risk_of(model(batch), cfg),
            "time": batch["y:time"],
            "event": batch["y:event"],
            "known": batch["y:known"],
        }
        if "y:label" in batch:
            out["label"] = batch["y:label"]
        return out

    def evaluate(self, outputs: dict[str, np.ndarray], cfg: Any) -> dict[str, float]:
        return selection_metrics(outputs, cfg)


def selection_metrics(outputs: dict[str, np.ndarray], cfg: Any) -> dict[str, float]:
    """Validation metric of the downstream stage: C-index, or AUROC for horizon labels (NaN when
    undefined: no comparable pair, one class)."""
    from sklearn.metrics import roc_auc_score

    from affectkit.tasks.prime.metrics import harrell_cindex

    known = outputs["known"].astype(bool)
    if cfg.finetune.target == "horizon":
        y = outputs["label"][known]
        if len(np.unique(y)) < 2:
            return {"auroc": float("nan")}
        return {"auroc": float(roc_auc_score(y, outputs["risk"][known]))}
    try:
        return {
            "c_index": harrell_cindex(outputs["time"][known], outputs["event"][known], outputs["risk"][known])
        }
    except ValueError:
        return {"c_index": float("nan")}
