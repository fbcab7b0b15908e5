"""The embedded GBSG benchmark, built once for prime's CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    pytest.importorskip("sksurv")
    pytest.importorskip("lifelines")
    from affectkit.tasks.prime.synth import make

    root = tmp_path_factory.mktemp("prime")
    make(root, seed=0, quick=True)
    return root
