"""Hugging Face models from local directories only: quiet loading and one check of the path.

affectkit never reaches a model hub. A model is a directory the user gives (or one a package ships,
or one an embedded benchmark trained); ``local_model_dir`` turns anything else into one clear error.
Tests and CI also set ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

from pathlib import Path

from affectkit.core.errors import DataError


def quiet_transformers() -> None:
    """Our commands show their own logs and progress: silence transformers' warnings and load bars."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def local_model_dir(path: str | Path, what: str = "model directory", hint: str | None = None) -> Path:
    """``path`` as a Path when it holds a transformers ``config.json``; else a DataError naming it."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise DataError(p, f"not a {what} (no config.json)", hint or "pass a local directory written by save_pretrained")
    return p
