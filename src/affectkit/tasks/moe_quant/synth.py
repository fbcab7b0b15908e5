"""``affectkit data make moe-quant``: the embedded corpora as plain UTF-8/byte text files.

``pydoc.txt`` (CPython's ``pydoc_data.topics``), ``stdlib.txt`` (standard-library sources) and
``markers.txt`` (the seeded synthetic stream: a rare control byte 0x01..0x08 always followed by its
own phrase, the known ground truth recorded in ``manifest.json``). The trainer reads ``NAME.txt``
from this directory; any UTF-8 text file can be given as a corpus instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from affectkit.core.runs import atomic_write_bytes, atomic_write_json
from affectkit.tasks.moe_quant.lm import MARKER_PHRASES, MARKERS, marker_bytes, pydoc_bytes, stdlib_bytes


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
