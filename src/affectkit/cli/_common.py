"""What the verb modules share: task lookup with verb checks, common options, and the one way a
flag sets a config key (``key_option`` + ``with_config``).

A command that takes a task config declares each such flag with the key it sets::

    @with_config(Config)
    def quantize(bits: str | None = key_option("quant.bits", "--bits", help="..."), ...,
                 config: Path | None = CONFIG_OPTION, overrides: list[str] | None = SET_OPTION,
                 *, cfg: Config) -> None: ...

``with_config`` resolves defaults, then ``--config``, then ``--set``, then the flags given, and hands
the command ``cfg``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer
from typer.models import OptionInfo

from affectkit.core.errors import UsageError
from affectkit.core.registry import load_task

SEED_OPTION = typer.Option(0, "--seed", help="One seed for Python, numpy, torch and the data order.")
SET_OPTION = typer.Option(None, "--set", help="Override a config key: --set train.lr=0.001 (repeatable).")
CONFIG_OPTION = typer.Option(None, "--config", help="YAML config file (see `affectkit config TASK`).")
PRECISION_OPTION = typer.Option("auto", "--precision", help="auto | no | bf16 | fp16 (fp16 needs CUDA).")


def task_for(name: str, verb: str) -> Any:
    task = load_task(name)
    if verb not in task.verb_names():
        raise UsageError(
            f"task {name!r} does not support `{verb}`",
            f"it supports: {', '.join(task.verb_names())}",
        )
    return task


class KeyOption(OptionInfo):
    """A Typer option that also names the config key it sets (made by ``key_option``)."""

    config_key: str
    config_value: Any
    config_parse: Callable[[Any], Any] | None


def key_option(key: str, *decls: str, help: str, value: Any = None,  # noqa: A002
               parse: Callable[[Any], Any] | None = None) -> Any:
    """An option that sets the config key ``key``. Given ``value``, the option is a flag that sets
    the key to ``value``; ``parse`` converts the text given before the config checks its type."""
    info = typer.Option(False if value is not None else None, *decls, help=help)
    info.__class__ = KeyOption
    info.config_key = key  # type: ignore[attr-defined]
    info.config_value = value  # type: ignore[attr-defined]
    info.config_parse = parse  # type: ignore[attr-defined]
    return info


def with_config(config_cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Resolve the command's config from its ``config`` and ``overrides`` parameters and its
    ``key_option`` flags, and pass it as the keyword ``cfg`` (hidden from the command line)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        keyed = {name: p.default for name, p in sig.parameters.items() if isinstance(p.default, KeyOption)}

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            from affectkit.core.config import resolve

            explicit = {}
            for name, info in keyed.items():
                given = kwargs.get(name)
                if info.config_value is not None:
                    given = info.config_value if given else None
                elif given is not None and info.config_parse is not None:
                    given = info.config_parse(given)
                explicit[info.config_key] = given
            flags = {info.config_key: info.param_decls[0].split("/")[0] for info in keyed.values() if info.param_decls}
            cfg = resolve(config_cls, kwargs.get("config"), kwargs.get("overrides") or [], explicit, flags=flags)
            return fn(**kwargs, cfg=cfg)

        wrapper.__signature__ = sig.replace(parameters=[p for p in sig.parameters.values() if p.name != "cfg"])
        return wrapper

    return decorate


def comma_ints(flag: str) -> Callable[[str], list[int]]:
    """A ``parse`` for options like ``--levels 4,3,2``."""

    def parse(text: str) -> list[int]:
        try:
            return [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise UsageError(f"{flag} {text!r}: expected integers separated by commas, e.g. 4,3,2") from None

    return parse
