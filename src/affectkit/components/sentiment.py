"""Lexicon sentiment (VADER, Hutto & Gilbert 2014): compound score in [-1, 1], no network, no torch."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from affectkit.core.errors import UsageError


@cache
def _analyzer() -> Any:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise UsageError(
            "VADER sentiment needs the vaderSentiment package",
            "pip install 'affectkit[text]' (or pip install vadersentiment)",
        ) from None
    return SentimentIntensityAnalyzer()


def vader_compound(texts: Sequence[str]) -> list[float]:
    """VADER's compound polarity of each text."""
    analyzer = _analyzer()
    return [float(analyzer.polarity_scores(t)["compound"]) for t in texts]
