"""Errors that end a command with a clear message and a fixed exit code.

Exit codes: 0 success, 1 runtime failure, 2 usage or bad input.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


class AffectkitError(Exception):
    """An error the user can act on: one ``Error:`` line and an optional ``Hint:`` line."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(AffectkitError):
    """A bad option, config key or value."""

    exit_code = EXIT_USAGE


class DataError(AffectkitError):
    """Bad input data: a missing file, wrong columns, NaN labels, a corrupt video."""

    exit_code = EXIT_USAGE

    def __init__(self, path: str | Path | None, problem: str, hint: str | None = None):
        message = f"{path}: {problem}" if path is not None else problem
        super().__init__(message, hint)
        self.path = path


class RunFailure(AffectkitError):
    """The command was well formed but could not finish (diverged loss, server down, ...)."""

    exit_code = EXIT_RUNTIME


def require_file(path: str | Path, what: str = "file") -> Path:
    """Return ``path`` as a Path, or raise DataError naming it when it is not a readable file."""
    p = Path(path)
    if not p.exists():
        raise DataError(p, f"{what} not found")
    if not p.is_file():
        raise DataError(p, f"expected a {what}, found a directory")
    return p


def require_dir(path: str | Path, what: str = "directory") -> Path:
    """Return ``path`` as a Path, or raise DataError naming it when it is not a directory."""
    p = Path(path)
    if not p.exists():
        raise DataError(p, f"{what} not found")
    if not p.is_dir():
        raise DataError(p, f"expected a {what}, found a file")
    return p
