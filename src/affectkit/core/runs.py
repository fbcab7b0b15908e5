"""Run directories: config, provenance, metrics stream, checkpoints, results. All writes atomic.

Layout::

    RUN/config.yaml            resolved config
    RUN/meta.json              versions, seed, argv, git hash, config hash, data dir
    RUN/metrics.jsonl          one JSON object per line: {"step", "split", ...metrics, "time"}
    RUN/checkpoints/step-N/    model.safetensors, optimizer.pt, scheduler.pt, rng.json, state.json
    RUN/checkpoints/best/      model.safetensors, state.json (step and metric)
    RUN/results.json           final metrics
    RUN/report.md              a short human summary (+ PNG plots where useful)

Only the main process writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from affectkit.core.errors import DataError, UsageError
from affectkit.core.output import is_main_process, to_jsonable

CHECKPOINTS = "checkpoints"
BEST = "best"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
RNG_FILE = "rng.json"
STATE_FILE = "state.json"
TMP_SUFFIX = ".tmp"
# What `train` writes before any work: a directory holding only these never got past set-up, and a
# rerun may take it over without --overwrite.
SETUP_FILES = frozenset({"config.yaml", "meta.json"})


# ---- atomic writes ----------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: Path) -> str:
    """A temporary file next to ``path`` with the mode a plain ``open`` would give (mkstemp's is 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    return tmp


def staging_dir(parent: Path, name: str) -> Path:
    """A fresh hidden directory in ``parent`` to build ``name`` in, with the mode a plain ``mkdir``
    would give (mkdtemp's is 0700); move it into place with one rename when it is complete."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=TMP_SUFFIX, dir=parent))
    path.chmod(0o777 & ~_umask())
    return path


def atomic_save(path: Path, writer: Any) -> None:
    """Call ``writer(tmp_path)``, then move the file into place: ``path`` is whole or absent. A
    failure to write names ``path``, never the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(path, f"cannot write ({exc.strerror or exc.__class__.__name__})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_save(path, write)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2) + "\n")


def remove_stale_temps(directory: Path) -> int:
    """Delete what killed atomic writes left in ``directory`` (and below): temporary files and
    staging directories."""
    removed = 0
    for tmp in sorted(Path(directory).rglob(f".*{TMP_SUFFIX}"), reverse=True):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"invalid JSON ({exc})") from None


def _left_by_setup(entry: Path) -> bool:
    return entry.name in SETUP_FILES or (entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX))


# ---- provenance -------------------------------------------------------------------------------


def git_hash(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for pkg in ("affectkit", "torch", "transformers", "accelerate", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            found[pkg] = version(pkg)
    return found


def config_hash(config_yaml: str) -> str:
    return hashlib.sha256(config_yaml.encode("utf-8")).hexdigest()[:16]


# ---- the run directory ------------------------------------------------------------------------


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def open(cls, path: str | Path, resume: bool = False, overwrite: bool = False) -> RunDir:
        """Check that ``path`` may take a new run (or be resumed). Refuses to clobber a run.

        Every process checks; then, after a barrier, the main process calls ``create``.
        """
        p = Path(path)
        if resume and overwrite:
            raise UsageError("--resume and --overwrite exclude each other")
        if p.exists() and not p.is_dir():
            raise UsageError(f"{p}: run directory path is a file")
        has_content = p.exists() and any(not _left_by_setup(x) for x in p.iterdir())
        if has_content and not (resume or overwrite):
            raise UsageError(
                f"{p}: run directory already exists",
                "pass --resume to continue it, --overwrite to replace it, or choose another --out",
            )
        if resume and not has_content:
            raise UsageError(f"{p}: nothing to resume (no run directory)", "drop --resume to start a new run")
        run = cls(p)
        # --overwrite replaces a run; a directory that never got past set-up is simply taken over
        run._replace = p.exists() and (overwrite or not has_content)
        return run

    def create(self) -> None:
        """Make the directory (main process only), removing the old run with --overwrite."""
        if not is_main_process():
            return
        if getattr(self, "_replace", False):
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)

    @classmethod
    def existing(cls, path: str | Path) -> RunDir:
        p = Path(path)
        if not (p / "config.yaml").is_file():
            raise DataError(p, "not a run directory (no config.yaml)", "pass the --out of an `affectkit train` run")
        return cls(p)

    def load_config(self, config_cls: type) -> Any:
        """The run's saved config.yaml as ``config_cls`` (strict keys, as any config file)."""
        from affectkit.core.config import load_yaml, merge

        return merge(config_cls(), load_yaml(self.config_path), str(self.config_path))

    def weights(self, checkpoint: str = "best") -> Path:
        """``model.safetensors`` of the best checkpoint (the last one when there is no best, or
        with ``checkpoint="last"``); a DataError when the run has none."""
        if checkpoint not in ("best", "last"):
            raise UsageError(f"--checkpoint: expected best or last, got {checkpoint!r}")
        chosen = self.best_checkpoint() if checkpoint == "best" else None
        chosen = chosen or self.latest_checkpoint()
        if chosen is None:
            raise DataError(self.path, "no checkpoint in the run directory", "train it first, or --resume it")
        return chosen / MODEL_FILE

    # files
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def write_config(self, config_yaml: str) -> None:
        if is_main_process():
            atomic_write_text(self.config_path, config_yaml)

    def write_meta(self, seed: int, extra: Mapping[str, Any] | None = None) -> None:
        if not is_main_process():
            return
        meta = {
            "versions": versions(),
            "seed": seed,
            "argv": sys.argv,
            "git": git_hash(),
            "config_hash": config_hash(self.config_path.read_text()) if self.config_path.exists() else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **(extra or {}),
        }
        atomic_write_json(self.path / "meta.json", meta)

    def meta(self) -> dict[str, Any]:
        p = self.path / "meta.json"
        return read_json(p) if p.exists() else {}

    def write_results(self, results: Mapping[str, Any]) -> None:
        if is_main_process():
            atomic_write_json(self.path / "results.json", results)

    def write_report(self, text: str) -> None:
        if is_main_process():
            atomic_write_text(self.path / "report.md", text)

    # metrics stream
    def log_metrics(self, record: Mapping[str, Any]) -> None:
        if not is_main_process():
            return
        line = json.dumps(to_jsonable({**record, "time": round(time.time(), 3)})) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        records = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a kill: the stream ends here
        return records

    def truncate_metrics(self, step: int) -> None:
        """Keep records up to ``step`` (a resumed run continues the same stream)."""
        if not is_main_process():
            return
        kept = [r for r in self.read_metrics() if int(r.get("step", 0)) <= step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    # checkpoints
    def step_dir(self, step: int) -> Path:
        return self.checkpoints / f"step-{step}"

    def checkpoint_steps(self) -> list[int]:
        if not self.checkpoints.exists():
            return []
        steps = []
        for d in self.checkpoints.iterdir():
            if d.is_dir() and d.name.startswith("step-") and (d / STATE_FILE).exists():
                try:
                    steps.append(int(d.name.split("-", 1)[1]))
                except ValueError:
                    continue
        return sorted(steps)

    def latest_checkpoint(self) -> Path | None:
        steps = self.checkpoint_steps()
        return self.step_dir(steps[-1]) if steps else None

    def best_checkpoint(self) -> Path | None:
        best = self.checkpoints / BEST
        return best if (best / MODEL_FILE).exists() else None

    def commit_dir(self, staging: Path, final: Path) -> None:
        """Move a fully written staging directory into place (the checkpoint appears whole or not at all)."""
        old = final.with_name(final.name + ".old")
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(staging, final)
        if old.exists():
            shutil.rmtree(old)

    def staging_dir(self, name: str) -> Path:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        return staging_dir(self.checkpoints, name)

    def prune(self, keep: int) -> None:
        if keep <= 0:
            return
        for step in self.checkpoint_steps()[:-keep]:
            shutil.rmtree(self.step_dir(step), ignore_errors=True)
        for leftover in self.checkpoints.glob(".*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
