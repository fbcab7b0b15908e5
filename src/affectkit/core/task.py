"""The interface every task implements: a loose Protocol, no base class.

A task module exposes one object (``TASK``) with these attributes. Tasks that fit the shared
training loop implement ``build_data``/``build_model``/``train_step``/``eval_step``/``evaluate``;
tasks whose shape does not fit implement ``run(request)`` instead and still use runs/output/errors.

Optional hooks, looked up with ``hasattr``:

- ``run(request: TrainRequest) -> dict``: ``affectkit train TASK`` calls it instead of the shared
  loop. The run directory is already created (config.yaml, meta.json written); the returned dict is
  merged into results.json and the final ``{"event": "result"}`` line (``run_dir``, ``task`` and
  ``seed`` are added by the CLI).
- ``evaluate_command(request: EvaluateRequest) -> dict``: ``affectkit evaluate TASK`` calls it
  instead of loading a loop checkpoint (``--model DIR``, ``--judgments DIR``, ``--run``, ``--data``,
  ``--set``...). Return ``{"metrics": {...}, ...}``; the CLI prints it and adds ``task``.
- ``resolve_config(cfg, data_dir) -> cfg``: fill values that depend on the data directory (e.g. a
  pretrained model shipped with an embedded benchmark); the resolved config is what the run saves.
- ``configure_optimizer(model, cfg)`` (loop tasks): parameter groups with their own learning rates.
- ``before_step(model, cfg, step, epoch)`` (loop tasks): called before each optimizer step with the
  number of steps done and the epoch (e.g. a loss ramp or per-epoch state kept in model buffers, so
  that it is checkpointed with the weights).
- ``after_step(model, cfg, step)`` (loop tasks): e.g. a weight-EMA update after each optimizer step.
- ``data_version: int``: bumped when the embedded generator changes; ``core.cache.embedded_data``
  keys the cached benchmark by it, so a stale one is never reused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # torch is imported only inside commands
    import numpy as np
    import torch

    from affectkit.core.output import Output
    from affectkit.core.runs import RunDir


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool = True
    description: str = ""


@dataclass
class DataBundle:
    """What ``build_data`` returns: map-style datasets and how to batch them."""

    train: Any
    eval: Any | None = None
    collate_fn: Callable[[list[Any]], Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainRequest:
    """Everything ``train`` (or a task's own ``run``) needs; built by the CLI."""

    cfg: Any
    data_dir: Path
    run: RunDir | None
    seed: int
    output: Output
    precision: str = "auto"
    resume: bool = False
    max_steps: int | None = None


@dataclass
class EvaluateRequest:
    """What ``affectkit evaluate`` passes to a task's own ``evaluate_command`` (when it has one)."""

    run: Path | None
    data_dir: Path | None
    model: Path | None
    judgments: Path | None
    config_file: Path | None
    overrides: list[str]
    checkpoint: str
    seed: int
    output: Output
    precision: str = "auto"


@dataclass
class BenchContext:
    out_dir: Path
    quick: bool
    seed: int
    output: Output
    data_root: Path
    precision: str = "auto"


@dataclass
class BenchResult:
    """Tables of rows (one per method or setting); numeric columns are plotted by ``bench``."""

    task: str
    tables: dict[str, list[dict[str, Any]]]
    metrics: tuple[MetricSpec, ...] = ()
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    name: str
    summary: str
    verbs: tuple[str, ...]
    Config: type
    metrics: tuple[MetricSpec, ...]

    def make_data(self, out: Path, seed: int, quick: bool) -> Mapping[str, Any]:
        """Write the embedded benchmark in the task's real on-disk format; return what was written."""
        ...

    def bench(self, ctx: BenchContext) -> BenchResult:
        """Run the method and its baselines on the embedded benchmark."""
        ...


class LoopTask(Task, Protocol):
    """A task trained by ``affectkit.core.loop.fit``."""

    def build_data(self, cfg: Any, data_dir: Path) -> DataBundle: ...

    def build_model(self, cfg: Any) -> torch.nn.Module: ...

    def train_step(self, model: torch.nn.Module, batch: Any, cfg: Any) -> torch.Tensor | tuple[torch.Tensor, dict[str, float]]:
        """Return the mean loss of the (per-process) batch, optionally with extra scalars to log."""
        ...

    def eval_step(self, model: torch.nn.Module, batch: Any, cfg: Any) -> dict[str, torch.Tensor]:
        """Per-sample tensors (batch first); the loop gathers them across processes."""
        ...

    def evaluate(self, outputs: dict[str, np.ndarray], cfg: Any) -> dict[str, float]:
        """Metrics from the gathered per-sample outputs of the whole eval set."""
        ...


def primary_metric(task: Task) -> MetricSpec:
    """The metric that selects the best checkpoint: the first one the task declares."""
    if not task.metrics:
        raise ValueError(f"task {task.name} declares no metrics")
    return task.metrics[0]


def supports(task: Task, verb: str) -> bool:
    return verb in task.verbs
