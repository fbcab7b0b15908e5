"""``affectkit train TASK``, ``evaluate TASK`` and ``predict TASK``: one subcommand per task.

Each subcommand has the verb's shared options plus the task's own (its ``TrainOptions``,
``EvaluateOptions`` or ``PredictOptions``), so ``affectkit train au-fe --help`` shows ``--data-au`` and no other task
sees it. The verb's function gets the task name and ``options=(options object, {config key: value},
{config key: flag})``.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from affectkit.cli._common import task_for
from affectkit.core.errors import DataError
from affectkit.core.registry import load_task, task_names


def split_options(options_cls: type | None, raw: dict[str, Any]) -> tuple[Any, dict[str, Any], dict[str, str]]:
    """(the task's options object, {config key: value}, {config key: flag}) from the values of its
    flags. Fields made with ``flag(key=...)`` go to the config; the others to the options object."""
    if options_cls is None:
        return None, {}, {}
    values, keyed, flags = {}, {}, {}
    for f in dataclasses.fields(options_cls):
        value = raw.get(f.name, f.default)
        if isinstance(value, Path) and not value.exists():
            raise DataError(value, f"not found ({f.metadata['flag']})")
        if f.metadata.get("key"):
            # identity, not equality: a flag given as 0 is a value (0 == False)
            if value is not None and value is not False:
                keyed[f.metadata["key"]] = str(value) if isinstance(value, Path) else value
                flags[f.metadata["key"]] = f.metadata["flag"]
        else:
            values[f.name] = value
    return options_cls(**values), keyed, flags


def _task_command(verb_fn: Callable[..., Any], task_name: str, options_cls: type | None, help: str) -> Any:  # noqa: A002
    """A Typer command: ``verb_fn``'s options (less ``task`` and its keyword-only ``options``) plus
    one option per field of ``options_cls``."""
    sig = inspect.signature(verb_fn)
    hints = typing.get_type_hints(verb_fn)
    params = [p for p in sig.parameters.values() if p.name != "task" and p.kind is not p.KEYWORD_ONLY]
    annotations = {p.name: hints[p.name] for p in params}
    fields = dataclasses.fields(options_cls) if options_cls is not None else ()
    if fields:
        field_hints = typing.get_type_hints(options_cls)
        for f in fields:
            is_flag = field_hints[f.name] is bool
            info = typer.Option(False if is_flag else None, f.metadata["flag"], help=f.metadata["help"])
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info))
            annotations[f.name] = field_hints[f.name]

    def command(**kwargs: Any) -> Any:
        raw = {f.name: kwargs.pop(f.name) for f in fields}
        return verb_fn(task=task_name, **kwargs, options=split_options(options_cls, raw))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = annotations
    app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"]})
    app.command(task_name, help=help)(command)
    return typer.main.get_command(app)


class TaskGroup(TyperGroup):
    """The subcommands of one verb, one per task that supports it, built on demand."""

    verb: str = ""
    verb_fn: Callable[..., Any]
    options_attr: str = ""

    def list_commands(self, ctx: Any) -> list[str]:
        return [n for n in task_names() if self.verb in load_task(n).verbs]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        task = task_for(cmd_name, self.verb)
        return _task_command(type(self).verb_fn, cmd_name, getattr(task, self.options_attr),
                             f"{self.verb.capitalize()} {cmd_name}: {task.summary}")


def task_group(verb: str, verb_fn: Callable[..., Any], options_attr: str, help: str) -> typer.Typer:  # noqa: A002
    """The Typer app of ``affectkit VERB TASK``: a TaskGroup over ``verb_fn``."""
    cls = type(f"{verb.capitalize()}Group", (TaskGroup,),
               {"verb": verb, "verb_fn": staticmethod(verb_fn), "options_attr": options_attr})
    app = typer.Typer(cls=cls, help=help, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                      pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})

    @app.callback()
    def group() -> None:
        pass

    return app
