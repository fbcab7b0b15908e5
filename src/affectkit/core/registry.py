"""Task name -> "module:attr", imported only when the task is used.

Built-in tasks are listed in BUILTIN. Other packages add tasks through the ``affectkit.tasks``
entry-point group, and a run can add some through ``AFFECTKIT_TASKS="name=module:attr,..."``
(how the tests register their test-only task, also in subprocesses and under torchrun). A name
registered twice, by any two sources, is an error naming both. A loaded task is checked against the
contract it declares (``core.task.check_task``).
"""

from __future__ import annotations

import difflib
import importlib
import os
from functools import cache
from typing import Any

from affectkit.core.errors import UsageError

# The shipped tasks (one per method; moe-lm is moe-quant's model trainer).
BUILTIN: dict[str, str] = {
    "au-fe": "affectkit.tasks.au_fe:TASK",
    "moe-quant": "affectkit.tasks.moe_quant:TASK",
    "moe-lm": "affectkit.tasks.moe_quant:MOE_LM",
    "mblfe": "affectkit.tasks.mblfe:TASK",
    "news-rec": "affectkit.tasks.news_rec:TASK",
    "rppg": "affectkit.tasks.rppg:TASK",
    "prime": "affectkit.tasks.prime:TASK",
    "tqd": "affectkit.tasks.tqd:TASK",
    "act-prompt": "affectkit.tasks.act_prompt:TASK",
    "vc-soup": "affectkit.tasks.vc_soup:TASK",
    "mer-bench": "affectkit.tasks.mer_bench:TASK",
}

ENV_VAR = "AFFECTKIT_TASKS"
_EXTRA: dict[str, str] = {}


def register(name: str, target: str) -> None:
    """Add a task at run time (tests, plugins). ``target`` is ``"module:attr"``."""
    _EXTRA[name] = target
    load_task.cache_clear()


def _from_env() -> dict[str, str]:
    found = {}
    for item in filter(None, (x.strip() for x in os.environ.get(ENV_VAR, "").split(","))):
        name, sep, target = item.partition("=")
        if not sep or ":" not in target:
            raise UsageError(f"{ENV_VAR}: expected name=module:attr, got {item!r}")
        found[name.strip()] = target.strip()
    return found


def _from_entry_points() -> dict[str, tuple[str, str]]:
    from importlib.metadata import entry_points

    return {ep.name: (ep.value, f"entry point of {ep.dist.name if ep.dist else '?'}")
            for ep in entry_points(group="affectkit.tasks")}


def task_sources() -> dict[str, tuple[str, str]]:
    """name -> (target, where it was registered). Two sources naming one task is a UsageError."""
    found: dict[str, tuple[str, str]] = {name: (target, "built-in") for name, target in BUILTIN.items()}
    layers = [
        _from_entry_points(),
        {name: (target, ENV_VAR) for name, target in _from_env().items()},
        {name: (target, "registry.register") for name, target in _EXTRA.items()},
    ]
    for layer in layers:
        for name, (target, source) in layer.items():
            if name in found:
                old_target, old_source = found[name]
                raise UsageError(
                    f"task {name!r} is registered twice: {old_source} ({old_target}) and {source} ({target})",
                    "rename one of them; a plugin cannot replace a task of the same name",
                )
            found[name] = (target, source)
    return found


def task_targets() -> dict[str, str]:
    return {name: target for name, (target, _) in task_sources().items()}


def task_names() -> list[str]:
    return sorted(task_sources())


@cache
def load_task(name: str) -> Any:
    from affectkit.core.task import check_task

    sources = task_sources()
    if name not in sources:
        close = difflib.get_close_matches(name, list(sources), n=1, cutoff=0.4)
        hint = f"did you mean {close[0]!r}?" if close else None
        known = ", ".join(sorted(sources)) or "none"
        hint = f"{hint + ' ' if hint else ''}known tasks: {known} (affectkit tasks)"
        raise UsageError(f"unknown task {name!r}", hint)
    target, source = sources[name]
    module_name, _, attr = target.partition(":")
    task = getattr(importlib.import_module(module_name), attr)
    check_task(task, f"{source}: {target}")
    return task
