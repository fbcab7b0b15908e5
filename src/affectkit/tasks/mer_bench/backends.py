"""What every judge backend shares: the sample, the outcome record, reply checking, the retry loop."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from affectkit.tasks.mer_bench.schema import ParseFailure, parse_reply, validate_judgment


@dataclass
class Sample:
    row: dict[str, str]
    system: str
    src_path: Path
    gen_path: Path
    caption: str | None = None  # what the system reports it wrote (captions.jsonl), if anything

    @property
    def sample_id(self) -> str:
        return f"{self.row['id']}::{self.system}"


@dataclass
class Outcome:
    """One sample's end: a valid judgment (``status == "ok"``) or a failure record."""

    status: str
    judgment: dict[str, Any] | None = None
    error_kind: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0
    attempt_log: list[dict[str, Any]] = field(default_factory=list)
    raw_text: str | None = None
    parsed: dict[str, Any] | None = None  # the object of a reply that parsed but failed validation
    usage: dict[str, int] = field(default_factory=dict)
    http_calls: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Outcome:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


class JudgeBackend(Protocol):
    """What the judge run (judging.py) uses of a backend: openai (transport.py), hf (hf_judge.py),
    rules (baselines.py)."""

    kind: str
    prices: dict[str, float] | None  # USD per 1M tokens for the ledger's cost, None: no cost

    @property
    def identity(self) -> str: ...

    def settings(self) -> dict[str, Any]: ...

    def preflight(self) -> None:
        """Fail fast before the first call (e.g. nothing listens at the server's URL)."""

    async def judge(self, sample: Sample) -> Outcome: ...

    def close(self) -> None: ...


@dataclass
class ReplyCheck:
    ok: bool
    kind: str | None
    obj: dict[str, Any] | None
    errors: list[dict[str, str]]
    method: str | None = None


def check_reply(text: str | None) -> ReplyCheck:
    """Tolerant parse, then schema and cross-field validation."""
    try:
        obj, method = parse_reply(text)
    except ParseFailure as exc:
        return ReplyCheck(False, "parse_error", None, [{"code": "parse", "where": "$", "message": str(exc)}])
    errs = validate_judgment(obj)
    if errs:
        return ReplyCheck(False, "invalid", obj, errs, method)
    return ReplyCheck(True, None, obj, [], method)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """base * 2^attempt capped, with +-25 % jitter (attempt counts from 0)."""
    if base <= 0:
        return 0.0
    delay = min(cap, base * (2**attempt))
    return max(0.0, delay * (1.0 + rng.uniform(-0.25, 0.25)))
