"""Helpers the verb modules share: task lookup with verb checks, common options."""

from __future__ import annotations

from typing import Any

import typer

from affectkit.core.errors import UsageError
from affectkit.core.registry import load_task

SEED_OPTION = typer.Option(0, "--seed", help="One seed for Python, numpy, torch and the data order.")
SET_OPTION = typer.Option(None, "--set", help="Override a config key: --set train.lr=0.001 (repeatable).")
CONFIG_OPTION = typer.Option(None, "--config", help="YAML config file (see `affectkit config TASK`).")
PRECISION_OPTION = typer.Option("auto", "--precision", help="auto | no | bf16 | fp16 (fp16 needs CUDA).")


def task_for(name: str, verb: str) -> Any:
    task = load_task(name)
    if verb not in task.verbs:
        raise UsageError(
            f"task {name!r} does not support `{verb}`",
            f"it supports: {', '.join(task.verbs)}",
        )
    return task
