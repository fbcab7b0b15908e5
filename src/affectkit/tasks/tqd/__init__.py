"""Task ``tqd``: timestep-aware quality decoupling for video diffusion training (arXiv 2603.25527; spec
6-7; only the abstract is public, so every inferred choice is a config key). Clips are scored for
motion and visual quality and typed (``data score-videos``, an Open-Sora meta CSV); during training
each clip's noise level is drawn from its type's density (motion-rich clips noisier, high-quality
clips less noisy, with the p_skew mix of the base density); a pixel-space video denoiser learns the
rectified-flow objective; evaluation is the held-out golden loss per noise band, sample metrics and
the gradient-similarity diagnostic. The samplers plug into a diffusers training script in three
lines (``method_sampler.tqd_timesteps``)."""

from __future__ import annotations

from dataclasses import dataclass

from affectkit.core.task import RecipeTask, TaskVerb, flag, lazy
from affectkit.tasks.tqd.config import METRICS, TqdConfig


@dataclass
class TrainOptions:
    sampler: str | None = flag("--sampler", "uniform | logit-normal | mode | tqd-categorical | tqd-beta | "
                               "tqd-truncated | tqd-continuous", key="sampler.mode")
    p_skew: float | None = flag("--p-skew", "share of draws from the type's density (the rest: the base)",
                                key="sampler.p_skew")


@dataclass
class EvaluateOptions:
    samples: int | None = flag("--samples", "clips to generate for the sample metrics (0: none)", key="eval.samples")
    gradsim: bool = flag("--gradsim", "run the gradient-similarity diagnostic on the meta CSV's pairs", default=False)
    plots: str | None = flag("--plots", "write band_losses.png, samples.png (and gradient_similarity.png) here")


SCORE_VIDEOS = TaskVerb("score-videos", "affectkit.tasks.tqd.cli:app",
                        "Score videos (motion, visual quality) and type them into an Open-Sora meta CSV (tqd).",
                        group="data")


class TqdTask(RecipeTask):
    name = "tqd"
    summary = "TQD: typed timestep sampling for video diffusion (scoring, samplers, held-out golden loss)"
    verbs = ("data", "train", "evaluate", "bench")
    commands = (SCORE_VIDEOS,)
    Config = TqdConfig
    TrainOptions = TrainOptions
    EvaluateOptions = EvaluateOptions
    max_steps_key = "train.max_steps"
    data_version = 1  # bump when synth.py's output changes (the cache keys the embedded data by it)
    metrics = METRICS

    make_data = lazy("affectkit.tasks.tqd.synth:make")
    train = lazy("affectkit.tasks.tqd.recipe:train_run")
    evaluate = lazy("affectkit.tasks.tqd.recipe:evaluate_request")
    bench = lazy("affectkit.tasks.tqd.bench:run_bench", with_task=True)


TASK = TqdTask()
