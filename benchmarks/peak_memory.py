"""Shared by the benchmark scripts: the peak RSS of a code section, running a function in a
fresh spawned process (its own heap, so one section's memory does not hide another's), and printing
a script's sections of results (or one JSON document with --json).

Peak RSS: the kernel's high-water mark (VmHWM) reset through /proc/self/clear_refs where Linux
allows it; else psutil sampling every 5 ms; else ru_maxrss (the process peak, an upper bound).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing as mp
import resource
import threading
import traceback
from typing import Any


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def _rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        return _status_bytes("VmRSS")


def _release_freed() -> None:
    """Collect garbage and hand freed heap back to the OS, so the baseline RSS is what is alive."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        _status_bytes("VmHWM")
        return True
    except OSError:
        return False


class PeakRSS:
    """Peak RSS during a ``with`` block and its increase over the RSS at the start."""

    def __enter__(self) -> PeakRSS:
        _release_freed()
        self.base = _rss_bytes()
        self._stop = threading.Event()
        self._sampled = self.base
        self._thread = None
        if _reset_hwm():
            self.method = "VmHWM reset via /proc/self/clear_refs"
        elif _has_psutil():
            self.method = "psutil RSS sampled every 5 ms"
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        else:
            self.method = "ru_maxrss (process peak, upper bound)"
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._sampled = max(self._sampled, _rss_bytes())

    def __exit__(self, *exc: Any) -> None:
        if self.method.startswith("VmHWM"):
            peak = _status_bytes("VmHWM")
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._sampled, _rss_bytes())
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.peak_mb = peak / 2**20
        self.increase_mb = max(0, peak - self.base) / 2**20


def _has_psutil() -> bool:
    import importlib.util

    return importlib.util.find_spec("psutil") is not None


def _child(fn: Any, args: tuple, queue: Any) -> None:
    try:
        queue.put(fn(*args))
    except BaseException as exc:  # report, do not hang the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)})


def in_process(fn: Any, *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a fresh spawned process (its own heap and peak RSS)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    try:
        result = queue.get()
    finally:
        proc.join()
    return result


def print_results(results: dict[str, dict[str, Any]], as_json: bool = False, width: int = 36) -> None:
    """Each section's name, then its ``key value`` lines (floats to 4 significant digits); or JSON."""
    import json
    import sys

    if as_json:
        json.dump(results, sys.stdout, indent=1)
        print()
        return
    for name, section in results.items():
        print(name)
        for k, v in section.items():
            print(f"  {k:{width}s} {v:.4g}" if isinstance(v, float) else f"  {k:{width}s} {v}")
