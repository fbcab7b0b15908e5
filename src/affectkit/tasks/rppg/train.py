"""FreqPhys on the shared loop: MSTmap clips as samples, the diffusion loss as the training step, DDIM
sampling as the evaluation step, and per-video heart-rate metrics (the release's protocol: per clip
HR, per video the mean of rounded clip HRs) selecting the best epoch on RMSE."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.task import DataBundle, LoopTask, MetricSpec
from affectkit.tasks.rppg.config import METRICS

# the release keeps the checkpoint with the lowest RMSE
LOOP_METRICS = (METRICS[1], METRICS[0], *METRICS[2:4])


@dataclass
class ClipSet:
    """Map-style clips: uint8 maps are turned into tensors per batch (the float tensors of a clip
    take 1.4 MB, the maps 113 KB)."""

    clips: list[Any]
    videos: list[str]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.clips[i], self.videos.index(self.clips[i].video)


class Collate:
    def __init__(self, cfg: Any):
        self.mean, self.std = cfg.model.norm_mean, cfg.model.norm_std

    def __call__(self, items: list[tuple[Any, int]]) -> dict[str, Any]:
        import torch

        from affectkit.tasks.rppg.mstmap import bvp_target, clip_tensors

        st, phys, bvp, video, hr = [], [], [], [], []
        for clip, v in items:
            s, p = clip_tensors(clip, mean=(self.mean,) * 6, std=(self.std,) * 6)
            st.append(s)
            phys.append(p)
            bvp.append(bvp_target(clip) if clip.bvp is not None else np.zeros(s.shape[-1], np.float32))
            video.append(v)
            hr.append(clip.hr if clip.hr is not None else float("nan"))
        return {"st": torch.from_numpy(np.stack(st)), "phys": torch.from_numpy(np.stack(phys)),
                "bvp": torch.from_numpy(np.stack(bvp)), "video": torch.tensor(video),
                "hr": torch.tensor(hr, dtype=torch.float64)}


def build_network(cfg: Any) -> Any:
    from affectkit.tasks.rppg.model import FreqPhys

    m = cfg.model
    return FreqPhys(dim=m.dim, depth=m.depth, heads=m.heads, dim_head=m.dim_head, mlp_dim=m.mlp_dim,
                    dropout=m.dropout, frequency=m.frequency, abs_irfft=m.abs_irfft)


def diffusion_of(cfg: Any) -> Any:
    from affectkit.tasks.rppg.method_diffusion import Diffusion

    d = cfg.diffusion
    return Diffusion(timesteps=d.timesteps, scale=d.scale, clamp=d.clamp)


def sample_clips(model: Any, batch: dict[str, Any], cfg: Any, seed: int = 0) -> Any:
    """DDIM samples of the clips' pulse, seeded per batch so evaluation is repeatable."""
    import torch

    g = torch.Generator(device=batch["st"].device).manual_seed(seed)
    return diffusion_of(cfg).sample(model, batch["st"], batch["phys"], steps=cfg.diffusion.sample_steps,
                                    eta=cfg.diffusion.eta, generator=g)


def clip_hr(pred: np.ndarray) -> np.ndarray:
    """The release's per-clip HR: standardise, Butterworth order 1 0.66-3.0 Hz, periodogram nfft 3600."""
    from affectkit.tasks.rppg.metrics import PRESETS, hr_of

    return np.array([hr_of(p, 30.0, PRESETS["freqphys"]) for p in pred])


def video_metrics(pred_hr: np.ndarray, gt_hr: np.ndarray, video: np.ndarray) -> dict[str, float]:
    """Per video the mean of its clip HRs rounded to an integer (prediction and truth alike, as the
    release's ``round(sum / count)``), then MAE, RMSE, MAPE and Pearson r over videos."""
    from affectkit.tasks.rppg.postprocess import mae, mape, pearson, rmse

    vids = np.unique(video)
    p = np.array([np.round(pred_hr[video == v].mean()) for v in vids])
    g = np.array([np.round(gt_hr[video == v].mean()) for v in vids])
    out = {"mae": mae(p, g)[0], "rmse": rmse(p, g)[0], "mape": mape(p, g)[0]}
    out["pearson"] = pearson(p, g)[0] if len(vids) > 2 else float("nan")
    return out


class FreqPhysLoop(LoopTask):
    """The shared loop's view of FreqPhys training. ``train_clips``/``eval_clips`` are set by the
    recipe, which reads the videos."""

    name = "rppg"
    summary = "FreqPhys training"
    metrics: tuple[MetricSpec, ...] = LOOP_METRICS

    def __init__(self, train_clips: list[Any], eval_clips: list[Any] | None):
        self.train_clips, self.eval_clips = train_clips, eval_clips

    def build_data(self, cfg: Any, data_dir: Path) -> DataBundle:
        def videos(clips: list[Any]) -> list[str]:
            return sorted({c.video for c in clips})

        ev = ClipSet(self.eval_clips, videos(self.eval_clips)) if self.eval_clips else None
        return DataBundle(train=ClipSet(self.train_clips, videos(self.train_clips)), eval=ev, collate_fn=Collate(cfg),
                          info={"train_clips": len(self.train_clips), "eval_clips": len(self.eval_clips or [])})

    def build_model(self, cfg: Any) -> Any:
        return build_network(cfg)

    def train_step(self, model: Any, batch: dict[str, Any], cfg: Any) -> Any:
        loss, parts = diffusion_of(cfg).training_loss(model, batch["bvp"], batch["st"], batch["phys"])
        return loss, {k: float(v) for k, v in parts.items()}

    def eval_step(self, model: Any, batch: dict[str, Any], cfg: Any) -> dict[str, Any]:
        return {"pred": sample_clips(model, batch, cfg), "video": batch["video"], "hr": batch["hr"]}

    def evaluate(self, outputs: dict[str, np.ndarray], cfg: Any) -> dict[str, float]:
        return video_metrics(clip_hr(outputs["pred"]), outputs["hr"], outputs["video"])
