"""The one cache of affectkit: ``$AFFECTKIT_CACHE`` (default ``~/.cache/affectkit``).

Everything a task builds once and reuses lives under ``task_cache(task)``: embedded benchmarks
(keyed by data version and seed), embedded models, a judge's answers. Directories are materialized
whole (staging directory, then one rename), so a killed writer leaves nothing half-built.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from affectkit.core.runs import staging_dir

ENV_VAR = "AFFECTKIT_CACHE"


def cache_root() -> Path:
    root = os.environ.get(ENV_VAR)
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "affectkit"


def task_cache(task_name: str) -> Path:
    """The cache directory of one task (not created)."""
    return cache_root() / task_name


def materialize(final: Path, writer: Callable[[Path], Any], replace: bool = False) -> Any:
    """Run ``writer(staging_dir)`` and move the finished directory to ``final`` in one rename.

    A directory is therefore either complete or absent, even if the writer is killed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(final.parent, final.name)
    try:
        result = writer(staging)
        if final.exists():
            if not replace:
                shutil.rmtree(staging)
                return result
            shutil.rmtree(final)
        os.replace(staging, final)
        return result
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def embedded_data(task: Any, seed: int, quick: bool = False) -> Path:
    """The task's embedded benchmark for ``seed``, generated into the cache on first use. A task that
    changes its generator bumps ``data_version``, so stale caches are never reused."""
    final = task_cache(task.name) / f"data-v{task.data_version}-seed{seed}{'-quick' if quick else ''}"
    if not final.exists():
        materialize(final, lambda d: task.make_data(d, seed, quick))
    return final
