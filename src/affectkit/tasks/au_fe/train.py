"""Wiring SSM into the shared loop: data sources -> paired datasets, the training objective, and
evaluation on both test sets."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from affectkit.components.weight_ema import WeightEMA
from affectkit.core.errors import DataError, UsageError
from affectkit.core.task import DataBundle
from affectkit.tasks.au_fe import data as ds
from affectkit.tasks.au_fe import facs
from affectkit.tasks.au_fe.clips import AUClipDataset, EvalDataset, FEClipDataset, FrameReader, PairedDataset
from affectkit.tasks.au_fe.config import AUFEConfig
from affectkit.tasks.au_fe.method_losses import LossBalancer, masked_bce, mixup, ramp
from affectkit.tasks.au_fe.metrics import adaptive_f1, au_fe_metrics
from affectkit.tasks.au_fe.model import SSM, _vocab


class SSMTrainer(nn.Module):
    """SSM plus its training state (loss EMAs, weight EMA), all saved in the checkpoint."""

    def __init__(self, cfg: AUFEConfig):
        super().__init__()
        self.ssm = SSM(cfg)
        self.balancer = LossBalancer(cfg.loss.ema_momentum, enabled=cfg.loss.ema_normalize)
        self.weight_ema = WeightEMA(self.ssm, cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None

    def forward(self, fe=None, au=None):
        return self.ssm(fe=fe, au=au)


def build_model(cfg: AUFEConfig) -> SSMTrainer:
    return SSMTrainer(cfg)


def _root(configured: str, data_dir: Path, sub: str) -> Path:
    if configured:
        return Path(configured)
    return data_dir / sub if (data_dir / sub).is_dir() else data_dir


def load_au(cfg: AUFEConfig, root: Path, aus: list[int]) -> tuple[list[ds.AUClip], list[ds.AUClip], dict]:
    d = cfg.data
    if d.au_format == "bp4d":
        seqs, info = ds.load_bp4d(root, aus)
        train, test = ds.split_au(seqs, d.au_fold, "bp4d", root)
    elif d.au_format == "disfa":
        seqs, info = ds.load_disfa(root, aus, d.disfa_threshold, d.disfa_camera)
        train, test = ds.split_au(seqs, d.au_fold, "disfa", root)
    else:
        kind = d.au_format
        suffix = ".jsonl" if kind == "ssm-disfa" else ".txt"
        train = ds.load_ssm_au_manifest(root / f"train{suffix}", root, aus, kind)
        test = ds.load_ssm_au_manifest(root / f"test{suffix}", root, aus, kind)
        info = {"sequences": len(train) + len(test)}
    return ds.au_clips(train, d.n_frames), ds.au_clips(test, d.n_frames), info


def load_fe(cfg: AUFEConfig, root: Path, expressions: list[str]) -> tuple[list[ds.FEClip], list[ds.FEClip], dict]:
    d = cfg.data
    if d.fe_format == "dfew":
        train, p1 = ds.load_dfew(root, d.fe_fold, "train", expressions)
        test, p2 = ds.load_dfew(root, d.fe_fold, "test", expressions)
    elif d.fe_format == "ferv39k":
        train, p1 = ds.load_ferv39k(root, "train", expressions)
        test, p2 = ds.load_ferv39k(root, "test", expressions)
    elif d.fe_format == "mafw":
        train, p1 = ds.load_mafw(root, d.fe_fold, "train", expressions)
        test, p2 = ds.load_mafw(root, d.fe_fold, "test", expressions)
    else:
        train, p1 = ds.load_ssm_fe_manifest(root / "train.txt", root, len(expressions))
        test, p2 = ds.load_ssm_fe_manifest(root / "test.txt", root, len(expressions))
    missing = p1.get("missing_clips", 0) + p2.get("missing_clips", 0)
    return train, test, {"missing_clips": missing}


@dataclass
class Sources:
    """The clips of both sources, read and checked; ``None`` for a branch the config leaves out."""

    fe_train: list[ds.FEClip] | None = None
    fe_test: list[ds.FEClip] | None = None
    au_train: list[ds.AUClip] | None = None
    au_test: list[ds.AUClip] | None = None
    info: dict = field(default_factory=dict)


def _read_branch(kind: str, root: Path, load, what: str) -> tuple[list, list, dict]:
    """One source's (train, test, info) from ``load(root)``, refused when the root or either split is empty."""
    if not root.is_dir():
        flag = kind.lower()
        raise DataError(root, f"{kind} dataset root not found", f"pass --data-{flag} DIR (or --data DIR holding {flag}/)")
    train, test, info = load(root)
    if not train or not test:
        raise DataError(root, f"no {what} in the train or test split")
    return train, test, info


def read_sources(cfg: AUFEConfig, data_dir: Path) -> Sources:
    """Read and check every input the config names: the roots exist, the label files parse, and each
    split has at least one clip. Drops (subjects or clips without frames) are warned about by the readers."""
    d, m = cfg.data, cfg.model
    if d.au_format in ("disfa", "ssm-disfa") and d.au_vocab == "bp4d":
        raise UsageError("DISFA data with the BP4D AU vocabulary", "add --set data.au_vocab=disfa")
    prior = facs.prior(_vocab(d.au_vocab), _vocab(d.fe_vocab))
    aus, expressions = list(prior.aus), list(prior.expressions)
    src = Sources()
    if m.branches in ("both", "fe"):
        src.fe_train, src.fe_test, fe_info = _read_branch(
            "FE", _root(d.fe_dir, data_dir, "fe"), lambda root: load_fe(cfg, root, expressions), "FE clips with frames")
        src.info.update(fe_train=len(src.fe_train), fe_test=len(src.fe_test), **fe_info)
    if m.branches in ("both", "au"):
        src.au_train, src.au_test, au_info = _read_branch(
            "AU", _root(d.au_dir, data_dir, "au"), lambda root: load_au(cfg, root, aus), f"{d.n_frames}-frame AU clips")
        src.info.update(au_train=len(src.au_train), au_test=len(src.au_test),
                        **{f"au_{k}": v for k, v in au_info.items()})
    return src


# What ``resolve_config`` read and checked, handed to the ``build_data`` that follows it (one entry).
_CHECKED: dict[tuple, Sources] = {}


def _read_key(cfg: AUFEConfig, data_dir: Path) -> tuple:
    d = cfg.data
    return (str(Path(data_dir).resolve()), d.au_dir, d.fe_dir, d.au_format, d.fe_format, d.au_vocab, d.fe_vocab,
            d.au_fold, d.fe_fold, d.n_frames, d.disfa_threshold, d.disfa_camera, cfg.model.branches)


def check_data(cfg: AUFEConfig, data_dir: Path) -> Sources:
    """``read_sources``, kept for the ``build_data`` of the same command (read once, warned once)."""
    key = _read_key(cfg, data_dir)
    if key not in _CHECKED:
        sources = read_sources(cfg, data_dir)
        _CHECKED.clear()
        _CHECKED[key] = sources
    return _CHECKED[key]


def forget_checked() -> None:
    _CHECKED.clear()


def build_data(cfg: AUFEConfig, data_dir: Path) -> DataBundle:
    d = cfg.data
    src = _CHECKED.pop(_read_key(cfg, data_dir), None) or read_sources(cfg, data_dir)
    reader = FrameReader(cache=d.cache_frames)
    info = dict(src.info)
    fe_train = fe_test = au_train = au_test = None
    if src.fe_train is not None:
        keep = ds.labelled_subset(len(src.fe_train), d.fe_label_fraction, d.subset_seed, [c.label for c in src.fe_train])
        tr = [src.fe_train[i] for i in keep]
        fe_train = FEClipDataset(tr, d.image_size, d.n_frames, True, d.augment, reader)
        fe_test = FEClipDataset(src.fe_test, d.image_size, d.n_frames, False, False, reader)
        info["fe_train"] = len(tr)
    if src.au_train is not None:
        keep = ds.labelled_subset(len(src.au_train), d.au_label_fraction, d.subset_seed)
        tr = [src.au_train[i] for i in keep]
        au_train = AUClipDataset(tr, d.image_size, True, d.augment, reader)
        au_test = AUClipDataset(src.au_test, d.image_size, False, False, reader)
        info["au_train"] = len(tr)
    train = PairedDataset(fe_train, au_train, d.fe_per_item, d.au_per_item)
    n_aus = len(facs.prior(_vocab(d.au_vocab), _vocab(d.fe_vocab)).aus)
    evaluation = EvalDataset(fe_test, au_test, d.n_frames, d.image_size, n_aus)
    return DataBundle(train=train, eval=evaluation, info=info)


def _flat(x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else x.flatten(0, 1)


def train_step(model, batch: dict, cfg: AUFEConfig):
    core: SSMTrainer = getattr(model, "module", model)
    bal = core.balancer
    fe, y_e = _flat(batch.get("fe")), _flat(batch.get("fe_label"))
    au, y_a, mask = _flat(batch.get("au")), _flat(batch.get("au_label")), _flat(batch.get("au_mask"))
    perm, lam = None, 1.0
    if au is not None and cfg.loss.mixup_alpha > 0:
        au, perm, lam = mixup(au, cfg.loss.mixup_alpha)
    out = model(fe=fe, au=au)
    zero = next(core.parameters()).new_zeros(())
    if cfg.loss.ramp_steps > 0:
        r = ramp(float(bal.step), cfg.loss.ramp_steps)
    else:
        r = ramp(float(bal.epoch), cfg.loss.ramp_epochs)
    logs: dict[str, float] = {"ramp": r}
    total = zero
    if "z_e" in out:
        l1 = F.cross_entropy(out["z_e"], y_e)
        total = total + bal.normalise("fe_ce", l1)
        logs["fe_ce"] = float(l1.detach())
        if "s_e" in out:
            l3 = F.cross_entropy(out["s_e"], y_e)
            total = total + r * bal.normalise("fe_proto", l3)
    if "z_a" in out:
        def mixed_bce(z):
            loss = lam * masked_bce(z, y_a, mask)
            if perm is not None and lam < 1.0:
                loss = loss + (1 - lam) * masked_bce(z, y_a[perm], mask[perm])
            return loss

        l2 = mixed_bce(out["z_a"])
        total = total + cfg.loss.au_weight * bal.normalise("au_bce", l2)
        logs["au_bce"] = float(l2.detach())
        if "s_a" in out:
            l4 = mixed_bce(out["s_a"])
            total = total + r * bal.normalise("au_proto", l4)
    return total / 3.0, logs


def eval_step(model, batch: dict, cfg: AUFEConfig) -> dict[str, torch.Tensor]:
    core: SSMTrainer = getattr(model, "module", model)
    ctx = core.weight_ema.applied(core.ssm) if core.weight_ema is not None else nullcontext()
    with ctx:
        out = core.ssm(fe=batch.get("fe"), au=batch.get("au"))
    res: dict[str, torch.Tensor] = {}
    if "z_e" in out:
        res.update(fe_logits=out["z_e"].float(), fe_label=batch["fe_label"], fe_valid=batch["fe_valid"])
    if "z_a" in out:
        res.update(au_prob=torch.sigmoid(out["z_a"].float()), au_label=batch["au_label"], au_mask=batch["au_mask"],
                   au_valid=batch["au_valid"], au_index=batch["au_index"])
    return res


def evaluate(outputs: dict[str, np.ndarray], cfg: AUFEConfig) -> dict[str, float]:
    prior = facs.prior(_vocab(cfg.data.au_vocab), _vocab(cfg.data.fe_vocab))
    fe_pred = fe_label = au_prob = au_label = au_mask = None
    if "fe_logits" in outputs:
        ok = outputs["fe_valid"].astype(bool)
        fe_pred, fe_label = outputs["fe_logits"][ok].argmax(1), outputs["fe_label"][ok]
    if "au_prob" in outputs:
        ok = outputs["au_valid"].astype(bool)
        a = outputs["au_prob"].shape[-1]
        au_prob = outputs["au_prob"][ok].reshape(-1, a)
        au_label = outputs["au_label"][ok].reshape(-1, a)
        au_mask = outputs["au_mask"][ok].reshape(-1, a)
    metrics = au_fe_metrics(au_prob, au_label, au_mask, fe_pred, fe_label, list(prior.aus))
    if cfg.eval.adaptive_f1 and au_prob is not None:
        t = outputs["au_prob"].shape[1]
        segments = np.repeat(outputs["au_index"][outputs["au_valid"].astype(bool)], t)
        metrics.update(adaptive_f1(au_prob, au_label, segments, au_mask))
    return metrics
