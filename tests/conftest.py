import os
import sys
from pathlib import Path

import pytest

SUPPORT = Path(__file__).parent / "support"
sys.path.insert(0, str(SUPPORT))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
TEST_TASKS = "toy=toy_task:TASK,toy-recipe=toy_task:RECIPE"
os.environ.setdefault("AFFECTKIT_TASKS", TEST_TASKS)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test gets its own cache dir, output sink and Accelerator."""
    from affectkit.core import device, output

    monkeypatch.setenv("AFFECTKIT_CACHE", str(tmp_path / "cache"))
    device.reset_accelerator()
    output.set_output(output.Output())
    yield
    device.reset_accelerator()


def subprocess_env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["AFFECTKIT_TASKS"] = TEST_TASKS
    env.update(extra)
    return env
