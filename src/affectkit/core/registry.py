"""Task name -> "module:attr", imported only when the task is used.

Built-in tasks are listed in BUILTIN. Other packages add tasks through the ``affectkit.tasks``
entry-point group, and a run can add some through ``AFFECTKIT_TASKS="name=module:attr,..."``
(how the tests register their test-only task, also in subprocesses and under torchrun).
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


def _from_entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group="affectkit.tasks")}


def task_targets() -> dict[str, str]:
    targets = dict(BUILTIN)
    targets.update(_from_entry_points())
    targets.update(_from_env())
    targets.update(_EXTRA)
    return targets


def task_names() -> list[str]:
    return sorted(task_targets())


@cache
def load_task(name: str) -> Any:
    targets = task_targets()
    if name not in targets:
        close = difflib.get_close_matches(name, list(targets), n=1, cutoff=0.4)
        hint = f"did you mean {close[0]!r}?" if close else None
        known = ", ".join(sorted(targets)) or "none"
        hint = f"{hint + ' ' if hint else ''}known tasks: {known} (affectkit tasks)"
        raise UsageError(f"unknown task {name!r}", hint)
    module_name, _, attr = targets[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)
