"""The task contract: two families, declared capabilities, and the conformance check.

Every task module exposes one object, ``TASK``, an instance of one of two families:

- ``LoopTask``: trained and evaluated by the shared loop (``core/loop``). It implements
  ``build_data``, ``build_model``, ``train_step``, ``eval_step`` and ``evaluate(outputs, cfg)``, and
  may override the hooks ``configure_optimizer``, ``before_step`` and ``after_step``.
- ``RecipeTask``: runs its own recipe, ``train(request)`` and ``evaluate(request)``, and still uses
  runs, output and errors from core.

Both declare what they support: ``verbs`` (the shared verbs: data, train, evaluate, bench,
predict), ``commands`` (the task's own verbs, mounted on the root lazily: ``affectkit quantize``)
and ``TrainOptions`` / ``EvaluateOptions`` / ``PredictOptions`` (dataclasses of the task's own flags
on ``train TASK`` / ``evaluate TASK`` / ``predict TASK``; a field made with ``flag(..., key=...)``
sets that config key, the others travel to the task in ``request.options``). The CLI dispatches on these declarations; ``check_task`` verifies
them whenever a task is loaded.

A method that only calls a function of another module is written ``train = lazy("pkg.recipe:train_run")``:
the function is imported on the method's first call, so task objects load without torch.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from affectkit.core.errors import AffectkitError, DataError

if TYPE_CHECKING:  # torch is imported only inside commands
    import numpy as np
    import torch

    from affectkit.core.output import Output
    from affectkit.core.runs import RunDir

CORE_VERBS = ("data", "train", "evaluate", "bench", "predict")
# Shared groups that take task verbs, with the subcommands of their own that a task verb cannot shadow.
SHARED_SUBCOMMANDS: dict[str, tuple[str, ...]] = {"data": ("make", "stats")}


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool = True
    description: str = ""


@dataclass(frozen=True)
class TaskVerb:
    """A verb a task adds to the CLI: on the root (``affectkit quantize``), or with ``group="data"``
    under the shared ``data`` group (``affectkit data score-videos``). ``target`` ("module:attr") names
    a Typer app holding one command; it is imported only when the verb runs (or its help is shown)."""

    name: str
    target: str
    help: str
    group: str | None = None


def flag(decl: str, help: str, key: str | None = None, default: Any = None) -> Any:  # noqa: A002
    """A field of a task's ``TrainOptions`` / ``EvaluateOptions`` / ``PredictOptions``: the option
    ``decl`` (``--data-au``); with ``key``, its value sets that config key (``data.au_dir``) instead of
    travelling as an option. A ``Path`` field must name an existing file (outputs are ``str``)."""
    return dataclasses.field(default=default, metadata={"flag": decl, "help": help, "key": key})


def lazy(target: str, with_task: bool = False) -> Any:
    """A task method implemented by the function ``target`` ("module:function"), imported when the
    method is first called, so task objects load without torch or the method's dependencies. The
    function gets the method's arguments, preceded by the task object when ``with_task``.

    A target that does not import raises its ImportError at the call (and at the next one); one that
    is not "module:function" raises ValueError at once."""
    module_name, sep, attr = target.partition(":")
    if not (module_name and sep and attr):
        raise ValueError(f"lazy target {target!r} is not module:function")
    resolved: Callable[..., Any] | None = None

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal resolved
        fn = resolved
        if fn is None:
            try:
                fn = resolved = getattr(importlib.import_module(module_name), attr)
            except AttributeError:
                raise ImportError(f"cannot import name {attr!r} from {module_name!r}", name=module_name) from None
        return fn(self, *args, **kwargs) if with_task else fn(*args, **kwargs)

    method.__name__ = attr
    method.__qualname__ = f"{module_name}.{attr}"
    method.__doc__ = f"Calls {target} (imported on first use)."
    return method


@dataclass
class DataBundle:
    """What ``build_data`` returns: map-style datasets and how to batch them."""

    train: Any
    eval: Any | None = None
    collate_fn: Callable[[list[Any]], Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainRequest:
    """What ``RecipeTask.train`` gets. The run directory exists and holds the config that runs."""

    cfg: Any
    data_dir: Path
    run: RunDir
    seed: int
    output: Output
    precision: str = "auto"
    resume: bool = False
    options: Any = None


@dataclass
class EvaluateRequest:
    """What ``RecipeTask.evaluate`` gets: the resolved config (the run's, when ``--run`` is given,
    with ``--config``/``--set`` on top) and the task's own options."""

    cfg: Any
    run: RunDir | None
    data_dir: Path | None
    checkpoint: str
    seed: int
    output: Output
    precision: str = "auto"
    options: Any = None

    def trained_data_dir(self) -> Path:
        """``--data`` if given, else the data directory the run was trained on (recorded in its meta.json);
        a DataError when neither is there."""
        if self.data_dir is not None:
            return self.data_dir
        saved = self.run.meta().get("data_dir") if self.run is not None else None
        if not saved or not Path(saved).is_dir():
            raise DataError(saved or (self.run.path if self.run is not None else "--data"),
                            "the run's data directory is gone", "pass --data DIR")
        return Path(saved)


@dataclass
class PredictRequest:
    """What ``predict`` gets: a trained run (None where the task's ``predict_needs_run`` is false)
    and one input, plus the task's own options (its ``PredictOptions``)."""

    run: Path | None
    input: Path
    checkpoint: str = "best"
    options: Any = None


@dataclass
class BenchContext:
    out_dir: Path
    quick: bool
    seed: int
    output: Output
    precision: str = "auto"


@dataclass
class BenchResult:
    """Tables of rows (one per method or setting); numeric columns are plotted by ``bench``."""

    task: str
    tables: dict[str, list[dict[str, Any]]]
    metrics: tuple[MetricSpec, ...] = ()
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Task:
    """What both families share. Subclasses set the class attributes and override what they support."""

    family: ClassVar[str] = ""
    name: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type]
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    verbs: ClassVar[tuple[str, ...]] = ("data", "bench")
    commands: ClassVar[tuple[TaskVerb, ...]] = ()
    TrainOptions: ClassVar[type | None] = None
    EvaluateOptions: ClassVar[type | None] = None
    PredictOptions: ClassVar[type | None] = None
    # False where ``predict`` runs without a trained run (rppg's classical methods)
    predict_needs_run: ClassVar[bool] = True
    # The config key that ``train --max-steps N`` sets (None: the flag does not apply).
    max_steps_key: ClassVar[str | None] = None
    # Bumped whenever the embedded generator changes: the cache keys its data by it.
    data_version: ClassVar[int] = 1

    def make_data(self, out: Path, seed: int, quick: bool) -> Mapping[str, Any]:
        """Write the embedded benchmark in the task's real on-disk format; return what was written."""
        raise NotImplementedError

    def bench(self, ctx: BenchContext) -> BenchResult:
        """Run the method and its baselines on the embedded benchmark (the protocol in bench.py)."""
        raise NotImplementedError

    def data_stats(self, data_dir: Path, cfg: Any) -> Mapping[str, Any]:
        """Statistics of a dataset in one of the task's formats, with its known issues warned about
        (``affectkit data stats TASK --data DIR``); tasks without it leave this unimplemented."""
        raise NotImplementedError

    def resolve_config(self, cfg: Any, data_dir: Path) -> Any:
        """Fill values that depend on the data directory; the result is what the run saves."""
        return cfg

    def configured_data(self, cfg: Any) -> Path | None:
        """The dataset directory the config names by itself (au-fe's two roots), if any; then
        ``train`` needs neither ``--data`` nor the embedded benchmark."""
        return None

    def predict(self, request: PredictRequest) -> dict[str, Any]:
        """Apply a trained run to one input: ``{"rows": iterable of dicts, ...summary}``; optional keys
        ``finish`` (a callable giving more summary once the rows are consumed), ``message`` (the
        human summary line) and ``row_event`` (the JSON event name of a row, default frame)."""
        raise NotImplementedError

    def verb_names(self) -> tuple[str, ...]:
        return (*self.verbs, *(f"{c.group} {c.name}" if c.group else c.name for c in self.commands))


class LoopTask(Task):
    """A task trained by ``affectkit.core.loop.fit`` and evaluated from its checkpoints."""

    family = "loop"
    max_steps_key = "train.max_steps"

    def build_data(self, cfg: Any, data_dir: Path) -> DataBundle:
        raise NotImplementedError

    def build_model(self, cfg: Any) -> torch.nn.Module:
        raise NotImplementedError

    def train_step(self, model: torch.nn.Module, batch: Any, cfg: Any) -> torch.Tensor | tuple[torch.Tensor, dict[str, float]]:
        """The mean loss of the (per-process) batch, optionally with extra scalars to log."""
        raise NotImplementedError

    def eval_step(self, model: torch.nn.Module, batch: Any, cfg: Any) -> dict[str, torch.Tensor]:
        """Per-sample tensors (batch first); the loop gathers them across processes."""
        raise NotImplementedError

    def evaluate(self, outputs: dict[str, np.ndarray], cfg: Any) -> dict[str, float]:
        """Metrics from the gathered per-sample outputs of the whole eval set."""
        raise NotImplementedError

    def configure_optimizer(self, model: torch.nn.Module, cfg: Any) -> torch.optim.Optimizer | None:
        """An optimizer of the task's own (parameter groups); None: AdamW at ``train.lr``."""
        return None

    def before_step(self, model: torch.nn.Module, cfg: Any, step: int, epoch: int) -> None:
        """Called before each optimizer step with the steps done and the epoch."""

    def after_step(self, model: torch.nn.Module, cfg: Any, step: int) -> None:
        """Called after each optimizer step (e.g. a weight-EMA update)."""


class RecipeTask(Task):
    """A task that runs its own recipe for ``train`` and ``evaluate``."""

    family = "recipe"

    def train(self, request: TrainRequest) -> dict[str, Any]:
        """Train into ``request.run``; the dict joins results.json and the result line."""
        raise NotImplementedError

    def evaluate(self, request: EvaluateRequest) -> dict[str, Any]:
        """``{"metrics": {...}, ...}``; the CLI prints it."""
        raise NotImplementedError


# What each shared verb needs a task to implement, by family.
_NEEDS: dict[str, dict[str, tuple[str, ...]]] = {
    "loop": {"data": ("make_data",), "bench": ("bench",), "predict": ("predict",),
             "train": ("build_data", "build_model", "train_step", "eval_step", "evaluate"),
             "evaluate": ("build_data", "build_model", "eval_step", "evaluate")},
    "recipe": {"data": ("make_data",), "bench": ("bench",), "predict": ("predict",),
               "train": ("train",), "evaluate": ("evaluate",)},
}


class TaskContractError(AffectkitError):
    """A task (built-in or plugin) that does not keep the contract it declares."""


def check_task(task: Any, source: str) -> None:
    """Raise TaskContractError unless ``task`` keeps the contract it declares: a known family, every
    declared verb implemented, task verbs that shadow no shared verb, options that are dataclasses of
    flags, a config that round-trips through YAML, and a ``max_steps_key`` the config has."""
    from affectkit.core.config import all_keys, from_dict, load_yaml_text, to_yaml

    where = f"task {getattr(task, 'name', '?')!r} ({source})"
    if not isinstance(task, (LoopTask, RecipeTask)):
        raise TaskContractError(f"{where}: is neither a LoopTask nor a RecipeTask")
    base = LoopTask if isinstance(task, LoopTask) else RecipeTask
    for verb in task.verbs:
        if verb not in CORE_VERBS:
            raise TaskContractError(f"{where}: unknown verb {verb!r} in verbs",
                                    f"shared verbs are {', '.join(CORE_VERBS)}; a task's own go in commands")
        missing = [m for m in _NEEDS[base.family][verb] if getattr(type(task), m) is getattr(base, m, None)]
        if missing:
            raise TaskContractError(f"{where}: declares `{verb}` but does not implement {', '.join(missing)}")
    for cmd in task.commands:
        shared = SHARED_SUBCOMMANDS.get(cmd.group) if cmd.group else (*CORE_VERBS, "tasks", "config")
        if shared is None:
            raise TaskContractError(f"{where}: task verb {cmd.name!r} names an unknown group {cmd.group!r}",
                                    f"groups that take task verbs: {', '.join(SHARED_SUBCOMMANDS)}")
        if cmd.name in shared or ":" not in cmd.target:
            raise TaskContractError(f"{where}: task verb {cmd.name!r} ({cmd.target}) shadows a shared verb "
                                    "or is not module:attr")
    for options in (task.TrainOptions, task.EvaluateOptions, task.PredictOptions):
        if options is not None and not all("flag" in f.metadata for f in dataclasses.fields(options)):
            raise TaskContractError(f"{where}: {options.__name__} fields must be made with core.task.flag")
    cfg = task.Config()
    if from_dict(task.Config, load_yaml_text(to_yaml(cfg), f"{task.name} config")) != cfg:
        raise TaskContractError(f"{where}: its Config does not round-trip through YAML")
    if "train" in task.verbs and task.max_steps_key and task.max_steps_key not in all_keys(task.Config):
        raise TaskContractError(f"{where}: max_steps_key {task.max_steps_key!r} is not a config key")


def primary_metric(task: Task) -> MetricSpec:
    """The metric that selects the best checkpoint: the first one the task declares."""
    if not task.metrics:
        raise ValueError(f"task {task.name} declares no metrics")
    return task.metrics[0]
