"""core.task.lazy: task methods that import their implementation on first call."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

import pytest

from affectkit.core.task import RecipeTask, check_task, lazy

MODULE = "affectkit_lazy_probe"


@dataclass
class ProbeConfig:
    steps: int = 1


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A tiny module on sys.path whose functions record their calls; returns how often lazy imported it."""
    (tmp_path / f"{MODULE}.py").write_text(
        "calls = []\n"
        "def train_run(*args, **kwargs):\n"
        "    calls.append(('train', args, kwargs))\n"
        "    return {'args': args, 'kwargs': kwargs}\n"
        "def run_bench(task, ctx):\n"
        "    calls.append(('bench', (task, ctx), {}))\n"
        "    return task.name, ctx\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    imports: list[str] = []
    real = importlib.import_module

    def counting(name, *args, **kwargs):
        imports.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", counting)
    yield lambda: imports.count(MODULE)
    sys.modules.pop(MODULE, None)


def _task_class():
    class ProbeTask(RecipeTask):
        name = "probe"
        summary = "probe"
        verbs = ("train", "bench")
        Config = ProbeConfig

        train = lazy(f"{MODULE}:train_run")
        bench = lazy(f"{MODULE}:run_bench", with_task=True)
        evaluate = lazy(f"{MODULE}:missing_function")
        make_data = lazy("affectkit_no_such_module_xyz:make")

    return ProbeTask


def test_imported_on_first_call_only(probe):
    task = _task_class()()
    assert MODULE not in sys.modules and probe() == 0
    assert task.train("request") == {"args": ("request",), "kwargs": {}}
    assert MODULE in sys.modules and probe() == 1
    # the function is cached: a second call does not import again
    assert task.train("again", resume=True) == {"args": ("again",), "kwargs": {"resume": True}}
    assert probe() == 1


def test_with_task_passes_the_task_first(probe):
    task = _task_class()()
    assert task.bench("ctx") == ("probe", "ctx")
    module = sys.modules[MODULE]
    assert module.calls == [("bench", (task, "ctx"), {})]


def test_a_bad_target_raises_at_call_time(probe):
    task = _task_class()()  # defining and instantiating the class imports nothing
    with pytest.raises(ModuleNotFoundError, match="affectkit_no_such_module_xyz"):
        task.make_data("out", 0, True)
    with pytest.raises(ImportError, match="missing_function"):
        task.evaluate("request")
    with pytest.raises(ImportError, match="missing_function"):  # no fallback cached either
        task.evaluate("request")


def test_malformed_target_is_refused_at_once():
    with pytest.raises(ValueError, match="module:function"):
        lazy("affectkit.tasks.prime.recipe.train_run")


def test_counts_as_implemented_and_is_described(probe):
    cls = _task_class()
    assert cls.train is not RecipeTask.train
    assert cls.train.__name__ == "train_run"
    assert cls.train.__qualname__ == f"{MODULE}.train_run"
    assert cls.train.__doc__ == f"Calls {MODULE}:train_run (imported on first use)."
    task = cls()
    check_task(task, "test")  # declares train and bench, both lazy: the contract holds
    assert probe() == 0  # checking the contract imports nothing
