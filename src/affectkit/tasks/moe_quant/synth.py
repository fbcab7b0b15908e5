"""The embedded data: corpora that ship with CPython, the seeded rare-marker generator, and
``affectkit data make moe-quant``, which writes them as plain UTF-8/byte text files.

Corpora: ``pydoc`` (``pydoc_data.topics``: the interpreter's help topics, English prose, about
465 k bytes), ``stdlib`` (the standard library's own ``*.py`` sources, sorted by file name, code), and
an optional synthetic ``marker`` stream mixed in: a rare control byte (0x01..0x08, absent from both
corpora) decides the fixed phrase that follows it, so some experts can specialise on rare but
decisive inputs (the known ground truth recorded in ``manifest.json``).

``make_data`` writes ``pydoc.txt``, ``stdlib.txt`` and ``markers.txt``; the trainer reads ``NAME.txt``
from that directory (data.py); any UTF-8 text file can be given as a corpus instead.
"""

from __future__ import annotations

import glob
import os
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.runs import atomic_write_bytes, atomic_write_json

MARKERS = list(range(1, 9))
MARKER_PHRASES = [b" alpha one", b" beta two", b" gamma three", b" delta four",
                  b" epsilon five", b" zeta six", b" eta seven", b" theta eight"]


def pydoc_bytes() -> bytes:
    from pydoc_data.topics import topics

    return "".join(topics[k] for k in sorted(topics)).encode("utf-8")


def stdlib_bytes(max_bytes: int = 600_000) -> bytes:
    root = sysconfig.get_paths()["stdlib"]
    out = bytearray()
    for path in sorted(glob.glob(os.path.join(root, "*.py"))):
        with open(path, "rb") as fh:
            out += fh.read()
        if len(out) >= max_bytes:
            break
    return bytes(out[:max_bytes])


def marker_bytes(n: int, seed: int, rate: float = 0.02) -> bytes:
    """Lowercase filler with a rare marker byte; each marker is followed by its own phrase."""
    rng = np.random.default_rng(seed)
    out = bytearray()
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz     ", dtype=np.uint8)
    while len(out) < n:
        if rng.random() < rate:
            m = int(rng.integers(len(MARKERS)))
            out.append(MARKERS[m])
            out += MARKER_PHRASES[m]
        else:
            out.append(int(letters[rng.integers(len(letters))]))
    return bytes(out[:n])


def mix_markers(arr: np.ndarray, frac: float, seed: int, chunk: int = 512) -> np.ndarray:
    """``arr`` interleaved in ``chunk``-byte pieces with the marker stream at ``frac`` of the bytes."""
    n_mark = int(len(arr) * frac / (1 - frac))
    mark = np.frombuffer(marker_bytes(n_mark, seed), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    pieces = [arr[i:i + chunk] for i in range(0, len(arr), chunk)]
    mpieces = [mark[i:i + chunk] for i in range(0, len(mark), chunk)]
    slots = np.sort(rng.choice(len(pieces) + len(mpieces), size=len(mpieces), replace=False))
    out, pi, mi = [], 0, 0
    for k in range(len(pieces) + len(mpieces)):
        if mi < len(slots) and slots[mi] == k:
            out.append(mpieces[mi])
            mi += 1
        else:
            out.append(pieces[pi])
            pi += 1
    return np.concatenate(out)


def make_data(out: Path, seed: int, quick: bool) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "pydoc.txt": pydoc_bytes(),
        "stdlib.txt": stdlib_bytes(150_000 if quick else 600_000),
        "markers.txt": marker_bytes(50_000 if quick else 200_000, seed),
    }
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    manifest = {
        "format": "byte-level text corpora (vocab 256); last 10% of each file is held out",
        "seed": seed,
        "files": {k: len(v) for k, v in files.items()},
        "marker_ground_truth": {str(m): p.decode() for m, p in zip(MARKERS, MARKER_PHRASES, strict=True)},
    }
    atomic_write_json(out / "manifest.json", manifest)
    return {"out": str(out), **manifest["files"]}
