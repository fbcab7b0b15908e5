"""A tiny test-only task (not shipped in the registry) that exercises the whole platform.

Data: Gaussian blobs in 8 dimensions, written as ``train.csv`` / ``test.csv`` with columns
``x0..x7,label``. Method: an MLP with dropout; baseline: a linear classifier, same budget.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from affectkit.core.config import TrainConfig, help_field
from affectkit.core.errors import DataError
from affectkit.core.task import (
    BenchContext,
    BenchResult,
    DataBundle,
    EvaluateRequest,
    LoopTask,
    MetricSpec,
    RecipeTask,
    TrainRequest,
    flag,
)

N_FEATURES = 8
COLUMNS = [f"x{i}" for i in range(N_FEATURES)] + ["label"]


@dataclass
class ModelConfig:
    hidden: int = help_field(32, "hidden units (0: a linear classifier)")
    dropout: float = help_field(0.1, "dropout probability", min=0.0, max=1.0)
    n_classes: int = help_field(3, "number of classes")


@dataclass
class ToyConfig:
    """Configuration of the toy task."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=40, batch_size=16, lr=0.01,
                                                                     eval_every=10, checkpoint_every=10))


def _write(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for row, label in zip(x, y, strict=True):
            w.writerow([f"{v:.6f}" for v in row] + [int(label)])


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(path, "file not found")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, f"missing columns: {', '.join(missing)}")
        xs, ys = [], []
        for lineno, row in enumerate(reader, start=2):
            try:
                label = float(row["label"])
            except ValueError:
                raise DataError(path, f"line {lineno}: label {row['label']!r} is not a number") from None
            if math.isnan(label):
                raise DataError(path, f"line {lineno}: label is NaN")
            xs.append([float(row[c]) for c in COLUMNS[:-1]])
            ys.append(int(label))
    return np.asarray(xs, dtype=np.float32), np.asarray(ys, dtype=np.int64)


class ToyTask(LoopTask):
    name = "toy"
    summary = "test-only: Gaussian blobs, MLP vs linear"
    verbs = ("data", "train", "evaluate", "bench")
    Config = ToyConfig
    metrics = (MetricSpec("accuracy", True, "top-1 accuracy"), MetricSpec("nll", False, "mean negative log-likelihood"))

    def make_data(self, out: Path, seed: int, quick: bool) -> dict:
        rng = np.random.default_rng(seed)
        centers = rng.normal(0, 1.5, size=(3, N_FEATURES))
        n = 120 if quick else 480
        y = rng.integers(0, 3, size=n)
        x = centers[y] + rng.normal(0, 1.0, size=(n, N_FEATURES))
        x[:, 0] = np.sin(3 * x[:, 1]) + x[:, 0]  # a little non-linearity
        cut = int(0.75 * n)
        _write(out / "train.csv", x[:cut], y[:cut])
        _write(out / "test.csv", x[cut:], y[cut:])
        return {"train": cut, "test": n - cut}

    def build_data(self, cfg: ToyConfig, data_dir: Path) -> DataBundle:
        import torch
        from torch.utils.data import TensorDataset

        xtr, ytr = read_csv(data_dir / "train.csv")
        xte, yte = read_csv(data_dir / "test.csv")
        return DataBundle(
            train=TensorDataset(torch.from_numpy(xtr), torch.from_numpy(ytr)),
            eval=TensorDataset(torch.from_numpy(xte), torch.from_numpy(yte)),
        )

    def build_model(self, cfg: ToyConfig):
        from torch import nn

        m = cfg.model
        if m.hidden == 0:
            return nn.Linear(N_FEATURES, m.n_classes)
        return nn.Sequential(nn.Linear(N_FEATURES, m.hidden), nn.ReLU(), nn.Dropout(m.dropout),
                             nn.Linear(m.hidden, m.n_classes))

    def train_step(self, model, batch, cfg):
        import torch.nn.functional as F

        x, y = batch
        return F.cross_entropy(model(x), y)

    def eval_step(self, model, batch, cfg):
        x, y = batch
        return {"logits": model(x), "label": y}

    def evaluate(self, outputs, cfg):
        logits, label = outputs["logits"], outputs["label"]
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return {"accuracy": float((logits.argmax(1) == label).mean()),
                "nll": float(-logp[np.arange(len(label)), label].mean())}

    def bench(self, ctx: BenchContext) -> BenchResult:
        from dataclasses import replace

        from affectkit.core.cache import embedded_data
        from affectkit.core.device import get_accelerator
        from affectkit.core.loop import fit

        data_dir = embedded_data(self, ctx.seed, ctx.quick)
        acc = get_accelerator(ctx.precision)
        rows = []
        base = ToyConfig()
        for method, hidden in (("mlp", 32), ("linear", 0)):
            cfg = replace(base, model=replace(base.model, hidden=hidden))
            res = fit(self, cfg, self.build_data(cfg, data_dir), acc, ctx.output, ctx.seed)
            rows.append({"method": method, **res.metrics})
        return BenchResult(task=self.name, tables={"toy blobs": rows}, metrics=self.metrics,
                           notes=["test-only task"])


TASK = ToyTask()


@dataclass
class RecipeConfig:
    """Configuration of the toy recipe task."""

    steps: int = help_field(5, "how many times the recipe counts")


@dataclass
class RecipeOptions:
    shout: bool = flag("--shout", "A task-owned flag that travels as an option.")
    steps_flag: int | None = flag("--count", "A task-owned flag that sets the config key steps.", key="steps")


class ToyRecipeTask(RecipeTask):
    """A test-only RecipeTask: its 'training' writes how far it counted; evaluate reads it back."""

    name = "toy-recipe"
    summary = "test-only: a recipe task (counts to steps)"
    verbs = ("data", "train", "evaluate")
    Config = RecipeConfig
    TrainOptions = RecipeOptions
    metrics = (MetricSpec("count", True, "how far it counted"),)
    max_steps_key = "steps"

    def make_data(self, out: Path, seed: int, quick: bool) -> dict:
        (out / "seed.txt").write_text(str(seed))
        return {"seed": seed}

    def train(self, request: TrainRequest) -> dict:
        (request.run.path / "count.txt").write_text(str(request.cfg.steps))
        return {"metrics": {"count": request.cfg.steps}, "shout": bool(request.options.shout)}

    def evaluate(self, request: EvaluateRequest) -> dict:
        return {"metrics": {"count": int((request.run.path / "count.txt").read_text())}}


RECIPE = ToyRecipeTask()
