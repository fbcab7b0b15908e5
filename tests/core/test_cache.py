"""Embedded benchmarks are generated once, atomically, and a generator change never reuses a stale cache."""

import pytest

from affectkit.core.cache import embedded_data, materialize


class _Task:
    name = "toy-cache"
    data_version = 1

    def __init__(self, version=None):
        self.calls = 0
        if version is not None:
            self.data_version = version

    def make_data(self, out, seed, quick):
        self.calls += 1
        (out / "data.txt").write_text(f"{seed} {quick} {getattr(self, 'data_version', None)}")


def test_generated_once_per_seed_and_size(tmp_path, monkeypatch):
    monkeypatch.setenv("AFFECTKIT_CACHE", str(tmp_path))
    task = _Task()
    a = embedded_data(task, 3)
    assert embedded_data(task, 3) == a and task.calls == 1
    assert embedded_data(task, 3, quick=True) != a and task.calls == 2
    assert (a / "data.txt").read_text() == "3 False 1"


def test_data_version_keys_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AFFECTKIT_CACHE", str(tmp_path))
    old, new = embedded_data(_Task(1), 0), embedded_data(_Task(2), 0)
    assert old != new and (new / "data.txt").read_text() == "0 False 2"
    assert old.parent == new.parent == tmp_path / "toy-cache"  # one root, keyed by task
    assert new.stat().st_mode & 0o777 == 0o777 & ~_umask()  # readable like any directory, not 0700


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_failed_writer_leaves_nothing(tmp_path):
    def boom(d):
        (d / "half.txt").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        materialize(tmp_path / "out", boom)
    assert list(tmp_path.iterdir()) == []
