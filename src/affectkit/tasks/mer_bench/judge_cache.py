"""A content-addressed judgment cache in SQLite that survives a killed process.

Table ``judge_cache(cache_key TEXT PRIMARY KEY, payload_json TEXT, is_error INTEGER, updated_at REAL)``
in WAL mode; every ``put`` commits at once, so a judgment is either wholly stored or absent after a
SIGKILL. The key is the SHA-256 of a canonical JSON of everything that decides the answer: judge
identity and settings, schema hash, prompt hashes, the sample's annotation and both images' bytes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from affectkit.core.errors import DataError
from affectkit.tasks.mer_bench.schema import canonical_json


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()


class JudgeCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS judge_cache (cache_key TEXT PRIMARY KEY, payload_json TEXT NOT NULL,"
                " is_error INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL)"
            )
        except sqlite3.DatabaseError as exc:
            raise DataError(self.path, f"cannot open the judge cache ({exc})", "delete it or pass --cache OTHER.sqlite3") from None

    def get(self, key: str, return_errors: bool = False) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT payload_json, is_error FROM judge_cache WHERE cache_key = ?", (key,)).fetchone()
        if row is None or (row[1] and not return_errors):
            return None
        return json.loads(row[0])

    def put(self, key: str, payload: dict[str, Any], is_error: bool = False) -> None:
        text = json.dumps(payload, ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO judge_cache (cache_key, payload_json, is_error, updated_at) VALUES (?, ?, ?, ?)",
                (key, text, int(is_error), time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM judge_cache").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
