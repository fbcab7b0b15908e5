"""The ``affectkit`` command: a thin Typer root over lazily loaded verbs (see ``_app.VERBS``).

Importing this package must not import torch: heavy imports happen inside commands.
"""

from __future__ import annotations

import sys

import typer

from affectkit import __version__
from affectkit.cli._app import EXIT_BROKEN_PIPE, RootGroup, new_app
from affectkit.core.output import Output, set_output

app = new_app(
    "affectkit: research methods of affective computing and nearby fields, from the shell.\n\n"
    "stdout carries data (one JSON object per line with --json); stderr carries logs and progress.",
    cls=RootGroup,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"affectkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    json_output: bool = typer.Option(False, "--json", help="One JSON object per line on stdout; the last is the result."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No logs or progress on stderr (errors still print)."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logs on stderr (repeatable)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    set_output(Output(json_mode=json_output, quiet=quiet, verbosity=verbose, debug=debug))


GLOBAL_FLAGS = {"--json", "--quiet", "-q", "--debug", "--verbose", "-v", "-vv", "-vvv"}


def hoist_global_flags(args: list[str]) -> list[str]:
    """Let global flags stand anywhere (``affectkit tasks --json``): move them before the verb."""
    head, rest = [], []
    for i, arg in enumerate(args):
        if arg == "--":
            rest.extend(args[i:])
            break
        (head if arg in GLOBAL_FLAGS else rest).append(arg)
    return head + rest


def main(args: list[str] | None = None) -> None:
    """Console-script entry point."""
    argv = hoist_global_flags(list(sys.argv[1:] if args is None else args))
    try:
        app(args=argv, prog_name="affectkit")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        try:
            sys.stdout.flush()
        except BrokenPipeError:  # the reader left during the last flush: end as quietly as `cat`
            from affectkit.cli._app import _quiet_stdout

            _quiet_stdout()
            code = code or EXIT_BROKEN_PIPE
        raise SystemExit(code) from None
