"""FACS priors for SSM: AU vocabularies, expression vocabularies, prior matrices, descriptors.

The tables live in ``priors.yaml`` next to this file (data, not code). A user's own vocabulary gets
the prototypes restricted to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import yaml

from affectkit.core.errors import UsageError

PRIOR_ON = 1.0
PRIOR_OFF = 0.02
NEUTRAL = "neutral"


@cache
def tables() -> dict:
    return yaml.safe_load((Path(__file__).with_name("priors.yaml")).read_text())


def au_vocabulary(name_or_ids: str | list[int]) -> list[int]:
    if isinstance(name_or_ids, list):
        return [int(a) for a in name_or_ids]
    vocabs = tables()["au_vocabularies"]
    if name_or_ids not in vocabs:
        raise UsageError(f"unknown AU vocabulary {name_or_ids!r}", f"known: {', '.join(vocabs)} or a list of AU ids")
    return list(vocabs[name_or_ids])


def expression_vocabulary(name_or_list: str | list[str]) -> list[str]:
    if isinstance(name_or_list, list):
        return list(name_or_list)
    vocabs = tables()["expression_vocabularies"]
    if name_or_list not in vocabs:
        raise UsageError(f"unknown expression vocabulary {name_or_list!r}", f"known: {', '.join(vocabs)}")
    return list(vocabs[name_or_list])


@dataclass(frozen=True)
class Prior:
    """Rows = expressions, columns = AUs."""

    expressions: tuple[str, ...]
    aus: tuple[int, ...]
    sets: dict[str, frozenset[int]]

    def matrix(self) -> np.ndarray:
        p = np.full((len(self.expressions), len(self.aus)), PRIOR_OFF, dtype=np.float32)
        for i, expr in enumerate(self.expressions):
            for j, au in enumerate(self.aus):
                if au in self.sets[expr]:
                    p[i, j] = PRIOR_ON
        return p

    @property
    def neutral_index(self) -> int | None:
        return self.expressions.index(NEUTRAL) if NEUTRAL in self.expressions else None


def prior(au_vocab: str | list[int], expr_vocab: str | list[str]) -> Prior:
    """The released table for a named pair, else the prototypes restricted to the AU vocabulary."""
    aus = au_vocabulary(au_vocab)
    exprs = expression_vocabulary(expr_vocab)
    key = f"{au_vocab}/{expr_vocab}" if isinstance(au_vocab, str) and isinstance(expr_vocab, str) else None
    released = tables()["priors"].get(key) if key else None
    protos = tables()["prototypes"]
    sets = {}
    for expr in exprs:
        if released is not None:
            sets[expr] = frozenset(released[expr])
        elif expr in protos:
            sets[expr] = frozenset(protos[expr]) & frozenset(aus)
        else:
            raise UsageError(f"no FACS prototype for expression {expr!r}", "add it under prototypes in priors.yaml")
    return Prior(tuple(exprs), tuple(aus), sets)


def au_descriptor(au: int) -> str:
    names = tables()["au_names"]
    return names.get(au, f"action unit {au}")


def expression_descriptor(expr: str, p: Prior) -> str:
    """SSM style: "happiness, cheek raiser, lip corner puller" (AUs of the prior row, in AU order)."""
    aus = [au for au in p.aus if au in p.sets[expr]]
    return ", ".join([expr] + [au_descriptor(a) for a in aus])
