"""One factory for every Typer app's settings, and the error boundary of every command."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from affectkit.core.errors import EXIT_RUNTIME, EXIT_USAGE, AffectkitError
from affectkit.core.output import get_output

F = TypeVar("F", bound=Callable[..., Any])


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


def command_errors(fn: F) -> F:
    """Turn AffectkitError and other failures into one Error:/Hint: pair and an exit code.

    The traceback is shown only with ``--debug``.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = get_output()
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except AffectkitError as exc:
            if out.debug:
                import traceback

                traceback.print_exc(file=sys.stderr)
            out.error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            out.error("interrupted")
            raise typer.Exit(130) from None
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            if out.debug:
                import traceback

                traceback.print_exc(file=sys.stderr)
            where = getattr(exc, "filename", None)
            out.error(f"{where}: {exc.strerror}" if where else str(exc))
            raise typer.Exit(EXIT_USAGE) from None
        except Exception as exc:  # the last line of defence: one line, not a traceback
            if out.debug:
                import traceback

                traceback.print_exc(file=sys.stderr)
            out.error(f"{type(exc).__name__}: {exc}", "rerun with --debug for the traceback")
            raise typer.Exit(EXIT_RUNTIME) from None

    return wrapper  # type: ignore[return-value]
