"""A dataset folder may carry its own data keys in ``prime.yaml`` (the embedded benchmarks do):
they apply where the run's config still has the default, so ``--data DIR`` alone is enough and
``--config`` / ``--set`` still win."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from affectkit.core.config import load_yaml, merge

DATASET_YAML = "prime.yaml"


def apply_dataset_yaml(cfg: Any, data_dir: Path) -> Any:
    path = data_dir / DATASET_YAML
    if not path.is_file():
        return cfg
    data = load_yaml(path).get("data") or {}
    defaults = type(cfg.data)()
    keep = {
        k: v
        for k, v in data.items()
        if k in {f.name for f in dataclasses.fields(defaults)}
        and getattr(cfg.data, k) == getattr(defaults, k)
    }
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(defaults)})
    if unknown:
        from affectkit.core.errors import DataError

        raise DataError(path, f"unknown data key(s) {', '.join(unknown)}")
    return merge(cfg, {"data": keep}, str(path))
