"""Task ``au-fe``: SSM, bidirectional facial action unit detection and expression recognition
across heterogeneous datasets (Li et al., IEEE TAFFC 2026; arXiv 2604.10541)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectkit.core.task import LoopTask, MetricSpec, PredictRequest, flag, lazy
from affectkit.tasks.au_fe.config import AUFEConfig


@dataclass
class TrainOptions:
    data_au: Path | None = flag("--data-au", "The AU dataset root (BP4D / DISFA layout).", key="data.au_dir")
    data_fe: Path | None = flag("--data-fe", "The FE dataset root (DFEW / FERV39K / MAFW layout).", key="data.fe_dir")


class AUFETask(LoopTask):
    name = "au-fe"
    summary = "SSM: joint AU detection (BP4D/DISFA) and dynamic expression recognition (DFEW/FERV39K/MAFW)"
    verbs = ("data", "train", "evaluate", "bench", "predict")
    Config = AUFEConfig
    TrainOptions = TrainOptions
    # 2: BP4D occurrence rates in the AU source, FE clips trimmed around the expression;
    # 3: the FE source grows to 2000 clips over 100 identities (test folds of about 400 clips);
    # 4: the AU source takes BP4D's layout, 41 subjects x 8 tasks (the real AU-to-FE proportion)
    data_version = 4
    metrics = (
        MetricSpec("fe_uar", True, "expression UAR (mean per-class recall)"),
        MetricSpec("au_f1", True, "mean per-AU F1 at threshold 0.5 (strict)"),
        MetricSpec("fe_war", True, "expression WAR (accuracy)"),
        MetricSpec("au_auc", True, "mean per-AU ROC-AUC"),
    )

    make_data = lazy("affectkit.tasks.au_fe.synth:make")

    def resolve_config(self, cfg: AUFEConfig, data_dir: Path) -> AUFEConfig:
        """Check every input first (options that depend on each other, both datasets: roots, label files,
        a clip per split; local model paths), then ``model.vision: embedded`` -> the pretrained tiny tower, trained
        into the task cache on first use (never into the data directory)."""
        from affectkit.tasks.au_fe.model import check_config, check_model_paths
        from affectkit.tasks.au_fe.train import check_data, forget_checked

        check_config(cfg)
        check_data(cfg, data_dir)
        try:
            check_model_paths(cfg)
            if cfg.model.vision != "embedded":
                return cfg
            from dataclasses import replace

            from affectkit.tasks.au_fe.pretrain import ensure_pretrained_vision

            path = ensure_pretrained_vision(image_size=cfg.data.image_size)
            return replace(cfg, model=replace(cfg.model, vision=str(path)))
        except BaseException:
            forget_checked()  # no build_data follows
            raise

    def configured_data(self, cfg: AUFEConfig) -> Path | None:
        """Both roots set (``--data-au`` and ``--data-fe``): the AU root stands for the dataset."""
        return Path(cfg.data.au_dir) if cfg.data.au_dir and cfg.data.fe_dir else None

    build_data = lazy("affectkit.tasks.au_fe.train:build_data")
    build_model = lazy("affectkit.tasks.au_fe.train:build_model")

    def configure_optimizer(self, model, cfg: AUFEConfig):
        import torch

        from affectkit.tasks.au_fe.model import parameter_groups

        return torch.optim.AdamW(parameter_groups(model, cfg), weight_decay=cfg.optim.weight_decay)

    def before_step(self, model, cfg: AUFEConfig, step: int, epoch: int) -> None:
        model.balancer.set_position(step, epoch)

    def after_step(self, model, cfg: AUFEConfig, step: int) -> None:
        if model.weight_ema is not None:
            model.weight_ema.update(model.ssm)

    train_step = lazy("affectkit.tasks.au_fe.train:train_step")
    eval_step = lazy("affectkit.tasks.au_fe.train:eval_step")
    evaluate = lazy("affectkit.tasks.au_fe.train:evaluate")
    bench = lazy("affectkit.tasks.au_fe.bench:run_bench", with_task=True)

    def predict(self, request: PredictRequest) -> dict[str, Any]:
        from affectkit.tasks.au_fe.predict import predict_video

        return predict_video(self, request.run, request.input, checkpoint=request.checkpoint)


TASK = AUFETask()
