"""The root command group (lazy verbs, one error boundary) and one factory for every Typer app.

Shared verbs are listed in VERBS as "module:attr"; a task's own verbs come from its ``commands``.
Nothing is imported until a verb runs or its help is shown, so ``affectkit --help`` stays fast and
torch-free. Every command runs inside ``guarded``: one ``Error:`` line and one ``Hint:`` line, an exit
code, and a quiet end when the reader of stdout goes away.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperGroup

from affectkit.core.errors import EXIT_RUNTIME, EXIT_USAGE, AffectkitError

# Shared verbs, in the order `affectkit --help` lists them. Each target is a Typer app: one command,
# or a group (data; train and evaluate, whose subcommands are the tasks).
VERBS: dict[str, str] = {
    "tasks": "affectkit.cli.tasks:app",
    "config": "affectkit.cli.config:app",
    "data": "affectkit.cli.data:app",
    "train": "affectkit.cli.train:app",
    "evaluate": "affectkit.cli.evaluate:app",
    "bench": "affectkit.cli.bench:app",
    "predict": "affectkit.cli.predict:app",
}

# Exits and usage errors of the command-line parser: it prints and handles those itself.
_PASS_THROUGH = (SystemExit, typer.Exit, typer.Abort,
                 next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"))

EXIT_BROKEN_PIPE = 141  # what a shell reports for a writer ended by SIGPIPE, as `cat` is


def new_app(help: str, **kwargs: Any) -> typer.Typer:  # noqa: A002
    """A Typer app with affectkit's settings: plain-text help, no pretty exceptions, -h works."""
    return typer.Typer(
        help=help,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        no_args_is_help=kwargs.pop("no_args_is_help", True),
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        **kwargs,
    )


def load_command(target: str, name: str) -> Any:
    """The command behind ``target`` ("module:attr", a Typer app), named ``name``."""
    module, _, attr = target.partition(":")
    command = typer.main.get_command(getattr(importlib.import_module(module), attr))
    command.name = name
    return command


def _task_verbs(group: str | None = None) -> dict[str, tuple[str, str]]:
    """Every task's own verbs on the root (or under the shared ``group``): name -> (target, help).
    Loads the task objects (cheap, no torch)."""
    from affectkit.core.output import get_output
    from affectkit.core.registry import load_task, task_names

    found: dict[str, tuple[str, str]] = {}
    for task_name in task_names():
        try:
            task = load_task(task_name)
        except Exception as exc:  # a broken plugin must not take the other verbs down with it
            get_output().warn(f"task {task_name!r} cannot be loaded ({exc}); its verbs are left out")
            continue
        for verb in task.commands:
            if verb.group == group:
                found[verb.name] = (verb.target, verb.help)
    return found


class RootGroup(TyperGroup):
    """The ``affectkit`` group: shared verbs and task verbs, loaded on demand, all behind one boundary."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*VERBS, *guarded(_task_verbs)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in VERBS:
            return load_command(VERBS[cmd_name], cmd_name)
        found = guarded(_task_verbs)
        if cmd_name in found:
            return load_command(found[cmd_name][0], cmd_name)
        return None

    def invoke(self, ctx: Any) -> Any:
        return guarded(lambda: super(RootGroup, self).invoke(ctx))


class TaskVerbGroup(TyperGroup):
    """A shared group (``data``) whose own subcommands come first, then the task verbs declared under it."""

    group_name = ""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *_task_verbs(self.group_name)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in (found := _task_verbs(self.group_name)):
            command = load_command(found[cmd_name][0], cmd_name)
        return command


def task_verb_group(name: str) -> type[TaskVerbGroup]:
    """The group class for ``new_app(..., cls=task_verb_group("data"))``."""
    return type(f"{name.title()}Group", (TaskVerbGroup,), {"group_name": name})


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that nothing more (not even the interpreter's last flush) fails."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def guarded(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; turn an AffectkitError or any other failure into one Error:/Hint: pair and an exit
    code (the traceback only with ``--debug``); end quietly when stdout's reader has gone."""
    from affectkit.core.output import get_output

    def report(message: str, hint: str | None, code: int) -> None:
        out = get_output()  # the one the root callback set, inside fn
        if out.debug:
            import traceback

            traceback.print_exc(file=sys.stderr)
        out.error(message, hint)
        raise typer.Exit(code) from None

    try:
        return fn()
    except _PASS_THROUGH:
        raise
    except BrokenPipeError:
        _quiet_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except AffectkitError as exc:
        report(exc.message, exc.hint, exc.exit_code)
    except KeyboardInterrupt:
        report("interrupted", None, 130)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        where = getattr(exc, "filename", None)
        report(f"{where}: {exc.strerror}" if where else str(exc), None, EXIT_USAGE)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            _quiet_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        report(f"{type(exc).__name__}: {exc}", "rerun with --debug for the traceback", EXIT_RUNTIME)
    except Exception as exc:  # the last line of defence: one line, not a traceback
        report(f"{type(exc).__name__}: {exc}", "rerun with --debug for the traceback", EXIT_RUNTIME)
