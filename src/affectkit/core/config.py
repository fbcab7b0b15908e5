"""Typed configs: dataclass defaults, then a YAML file, then ``--set a.b=v`` overrides.

Keys are strict (an unknown key names the nearest valid one), values are type-checked against the
dataclass annotations, and a config writes itself back out as commented YAML.
Document a field with ``field(default=..., metadata={"help": "..."})``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from affectkit.core.errors import DataError, UsageError

T = TypeVar("T")


def help_field(default: Any = dataclasses.MISSING, help: str = "", *, min: float | None = None,  # noqa: A002
               max: float | None = None, **kwargs: Any) -> Any:  # noqa: A002
    """``dataclasses.field`` with a help text that ends up as a YAML comment, and optionally the
    valid range of a number (or of each number in a list): ``min <= value <= max``. A value out of
    range, from a file, ``--set`` or a flag, is a UsageError before any work starts."""
    metadata = {"help": help, "min": min, "max": max}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata, **kwargs)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        value = default
        return dataclasses.field(default_factory=lambda: dataclasses.replace(value), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a dataclass type, nested ones included."""
    keys = []
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        keys.append(name)
        ftype = _hints(cls)[f.name]
        if _is_dataclass_type(ftype):
            keys.extend(all_keys(ftype, name + "."))
    return keys


def from_dict(cls: type[T], data: Mapping[str, Any] | None, source: str = "config") -> T:
    """Build ``cls`` from a (nested) mapping; unknown keys and wrong types raise UsageError."""
    return _merge(cls(), data or {}, source, "")


def merge(cfg: T, data: Mapping[str, Any], source: str = "config") -> T:
    """A copy of ``cfg`` with ``data`` (nested mapping) applied on top."""
    return _merge(cfg, data, source, "")


def apply_overrides(cfg: T, overrides: Iterable[str], source: str = "--set") -> T:
    """Apply ``a.b=value`` strings; values are parsed with yaml.safe_load."""
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"{source} {item!r}: expected KEY=VALUE", "for example --set train.lr=0.001")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() != "" else ""
        except yaml.YAMLError as exc:
            raise UsageError(f"{source} {key}: cannot parse value {raw!r} ({exc.__class__.__name__})") from None
        cfg = set_key(cfg, key, value, source)
    return cfg


def set_key(cfg: T, key: str, value: Any, source: str = "option") -> T:
    """A copy of ``cfg`` with the dotted ``key`` set to ``value`` (type-checked)."""
    nested: dict[str, Any] = {}
    node = nested
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return _merge(cfg, nested, source, "")


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise DataError(p, "config file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(p, f"cannot read config file ({exc.__class__.__name__}: {exc})") from None
    return load_yaml_text(text, p)


def load_yaml_text(text: str, source: str | Path) -> dict[str, Any]:
    """Parse a YAML mapping (a config); errors name ``source``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DataError(source, f"invalid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(source, f"expected a mapping at the top level, found {type(data).__name__}")
    return data


def resolve(
    cls: type[T],
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    explicit: Mapping[str, Any] | None = None,
    base: T | None = None,
    flags: Mapping[str, str] | None = None,
) -> T:
    """Defaults (or ``base``), then the YAML file, then ``--set`` overrides, then explicit options
    (``{key: value}``; ``flags`` names the option that gave each key, for error messages)."""
    cfg = base if base is not None else cls()
    if config_file is not None:
        cfg = _merge(cfg, load_yaml(config_file), str(config_file), "")
    cfg = apply_overrides(cfg, overrides)
    for key, value in (explicit or {}).items():
        if value is not None:
            cfg = set_key(cfg, key, value, (flags or {}).get(key, "option"))
    return cfg


def to_yaml(cfg: Any, comments: bool = True) -> str:
    """The config as YAML, with each field's help text as a comment above it."""
    lines: list[str] = []
    if comments and cfg.__class__.__doc__ and not cfg.__class__.__doc__.startswith(cfg.__class__.__name__ + "("):
        for doc_line in cfg.__class__.__doc__.strip().splitlines():
            lines.append(f"# {doc_line.strip()}".rstrip())
    _emit(cfg, lines, 0, comments)
    return "\n".join(lines) + "\n"


def save_yaml(cfg: Any, path: str | Path) -> None:
    from affectkit.core.runs import atomic_write_text

    atomic_write_text(Path(path), to_yaml(cfg))


# ---- internals ------------------------------------------------------------------------------


def _emit(cfg: Any, lines: list[str], indent: int, comments: bool) -> None:
    pad = "  " * indent
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        help_text = f.metadata.get("help", "")
        if comments and help_text:
            for text in help_text.splitlines():
                lines.append(f"{pad}# {text}")
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{f.name}:")
            _emit(value, lines, indent + 1, comments)
        else:
            dumped = yaml.safe_dump({f.name: value}, default_flow_style=True, sort_keys=False, width=10_000)
            dumped = dumped.strip()
            if dumped.startswith("{") and dumped.endswith("}"):
                dumped = dumped[1:-1]
            lines.append(f"{pad}{dumped}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _merge(cfg: Any, data: Mapping[str, Any], source: str, prefix: str, root: type | None = None) -> Any:
    root = root or type(cfg)
    if not isinstance(data, Mapping):
        raise UsageError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    cls = type(cfg)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = set(fields)
    updates: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        full = prefix + key
        if key not in names:
            raise UsageError(f"{source}: unknown config key {full!r}", _suggest(full, all_keys(root)))
        tp = hints[key]
        current = getattr(cfg, key)
        if _is_dataclass_type(tp):
            if value is None:
                raise UsageError(f"{source}: {full} must be a mapping, got null")
            updates[key] = _merge(current, value, source, full + ".", root)
        else:
            updates[key] = _in_range(_check(value, tp, f"{source}: {full}"), fields[key].metadata, f"{source}: {full}")
    return dataclasses.replace(cfg, **updates)


def _in_range(value: Any, meta: Mapping[str, Any], where: str) -> Any:
    """``value`` when it (or each number in it) lies in the field's declared range."""
    low, high = meta.get("min"), meta.get("max")
    if low is None and high is None:
        return value
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            continue
        if not math.isfinite(item) or (low is not None and item < low) or (high is not None and item > high):
            bounds = (f"between {low} and {high}" if low is not None and high is not None
                      else f">= {low}" if low is not None else f"<= {high}")
            raise UsageError(f"{where}: must be {bounds}, got {item!r}")
    return value


def _suggest(key: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    if not close:
        leaf = key.rsplit(".", 1)[-1]
        close = [c for c in candidates if c.rsplit(".", 1)[-1] == leaf][:1]
    if close:
        return f"did you mean {close[0]!r}? (see `affectkit config TASK` for every key)"
    return "see `affectkit config TASK` for every key"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to ``tp`` where that is lossless, else raise UsageError."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except UsageError as exc:
                errors.append(exc)
        raise UsageError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise UsageError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str) and "," in value:
            value = [yaml.safe_load(v) for v in value.split(",")]
        elif not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise UsageError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_check(v, a, where) for v, a in zip(value, args, strict=True))
        inner = args[0] if args else Any
        items = [_check(v, inner, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise UsageError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_check(k, kt, where): _check(v, vt, where) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UsageError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UsageError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UsageError(f"{where}: expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise UsageError(f"{where}: expected a path, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise UsageError(f"{where}: expected {_type_name(tp)}, got {value!r}")


@dataclasses.dataclass
class TrainConfig:
    """Settings of the shared training loop."""

    max_steps: int = help_field(200, "optimizer steps in total", min=1)
    batch_size: int = help_field(32, "global batch size (split across processes)", min=1)
    lr: float = help_field(1e-3, "peak learning rate", min=0.0)
    weight_decay: float = help_field(0.0, "AdamW weight decay", min=0.0)
    warmup_steps: int = help_field(0, "linear warm-up steps, then cosine decay to zero (0: constant lr)", min=0)
    schedule: Literal["constant", "cosine", "multistep", "plateau"] = help_field(
        "constant", "learning-rate schedule after warm-up (multistep: x gamma at each milestone step;\n"
        "plateau: x gamma after plateau_patience evaluations without improvement)"
    )
    milestones: list[int] = help_field([], "optimizer steps at which multistep multiplies the lr by gamma", min=0)
    gamma: float = help_field(0.1, "multistep / plateau decay factor", min=0.0)
    plateau_patience: int = help_field(5, "plateau: evaluations without improvement before the lr drops", min=0)
    grad_accum: int = help_field(1, "gradient accumulation steps per optimizer step", min=1)
    clip_grad_norm: float = help_field(1.0, "max global gradient norm (0 disables clipping)", min=0.0)
    eval_every: int = help_field(50, "evaluate every N optimizer steps (0: only at the end)", min=0)
    checkpoint_every: int = help_field(50, "checkpoint every N optimizer steps (0: only at the end)", min=0)
    keep_checkpoints: int = help_field(2, "how many step checkpoints to keep (the best is kept apart)", min=1)
    early_stop_patience: int = help_field(0, "stop after N evaluations without improvement (0: never)", min=0)
    log_every: int = help_field(10, "log the training loss every N optimizer steps", min=1)
    num_workers: int = help_field(0, "DataLoader worker processes", min=0)
