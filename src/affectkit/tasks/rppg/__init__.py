"""Task ``rppg``: heart rate from face video. FreqPhys (frequency-guided conditional diffusion on
multi-scale spatial-temporal maps; arXiv 2604.00534, spec 2) and the classical methods GREEN, ICA,
CHROM, POS, LGI, PBV and OMIT, scored with the rPPG-Toolbox's post-processing and metrics or the
FreqPhys release's, on UBFC-rPPG, PURE, COHFACE, MMPD and VIPL-HR as released; ``predict`` gives the
heart rate of any video (or a camera stream) with no ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectkit.core.task import RecipeTask, flag, lazy
from affectkit.tasks.rppg.config import METRICS, RppgConfig


@dataclass
class TrainOptions:
    dataset: str | None = flag("--dataset", "ubfc-rppg | pure | cohface | mmpd | vipl-hr (default: detected)",
                               key="data.dataset")


@dataclass
class EvaluateOptions:
    method: str | None = flag("--method", "pos | chrom | green | ica | lgi | pbv | omit | freqphys (needs --run)",
                              key="method")
    dataset: str | None = flag("--dataset", "ubfc-rppg | pure | cohface | mmpd | vipl-hr (default: detected)",
                               key="data.dataset")
    preset: str | None = flag("--preset", "toolbox | freqphys post-processing and aggregation", key="eval.preset")
    split: str | None = flag("--split", "train | valid | test | all (default test)")
    report: str | None = flag("--report", "folder for windows.csv, bland_altman.png and results.json")


@dataclass
class PredictOptions:
    method: str | None = flag("--method", "pos | chrom | green | ica | lgi | pbv | omit | freqphys "
                              "(default: freqphys with --run, else pos)")
    preset: str | None = flag("--preset", "toolbox | freqphys heart-rate post-processing (default: the run's, "
                                 "else freqphys: nfft 3600, a 0.5-bpm grid)")
    window: float | None = flag("--window", "seconds per heart-rate window (default 10; FreqPhys: 10)")
    hop: float | None = flag("--hop", "seconds between window starts (default: the window, no overlap)")
    fps: float | None = flag("--fps", "frame rate (needed for stdin; overrides the file's)")
    plot: str | None = flag("--plot", "write a PNG of the pulse trace and its spectrogram here")


class RppgTask(RecipeTask):
    name = "rppg"
    summary = "FreqPhys and classical rPPG: heart rate from face video, rPPG-Toolbox metrics"
    verbs = ("data", "train", "evaluate", "bench", "predict")
    Config = RppgConfig
    TrainOptions = TrainOptions
    EvaluateOptions = EvaluateOptions
    PredictOptions = PredictOptions
    predict_needs_run = False
    max_steps_key = "train.max_steps"
    data_version = 1  # bump when synth.py's output changes (the cache keys the embedded data by it)
    metrics = METRICS

    make_data = lazy("affectkit.tasks.rppg.synth:make")

    def data_stats(self, data_dir: Path, cfg: RppgConfig) -> dict[str, Any]:
        from affectkit.tasks.rppg.stats import statistics_of

        return statistics_of(cfg, data_dir)

    def resolve_config(self, cfg: RppgConfig, data_dir: Path) -> RppgConfig:
        # train's config: FreqPhys is the one trained method (model.frequency=false is its ablation), so
        # the run's saved config evaluates and predicts with it
        cfg.method = "freqphys"
        return cfg

    train = lazy("affectkit.tasks.rppg.recipe:train_run")
    evaluate = lazy("affectkit.tasks.rppg.recipe:evaluate_request")
    predict = lazy("affectkit.tasks.rppg.predict:predict_video")
    bench = lazy("affectkit.tasks.rppg.bench:run_bench", with_task=True)


TASK = RppgTask()
