from __future__ import annotations

from pathlib import Path

import pytest

from affectkit.tasks.mer_bench.synth import make_benchmark


@pytest.fixture(scope="session")
def bench4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four memes, the four synthetic systems."""
    d = tmp_path_factory.mktemp("bench4")
    make_benchmark(d, seed=3, n=4)
    return d


@pytest.fixture(scope="session")
def bench1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One meme, one system (full-edit)."""
    d = tmp_path_factory.mktemp("bench1")
    make_benchmark(d, seed=5, n=1, systems=("full-edit",))
    return d


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFFECTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
