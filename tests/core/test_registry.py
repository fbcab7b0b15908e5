import pytest

from affectkit.core import registry
from affectkit.core.errors import UsageError


def test_env_registered_task_loads_lazily():
    task = registry.load_task("toy")
    assert task.name == "toy"


def test_unknown_task_suggests_the_nearest():
    with pytest.raises(UsageError) as exc:
        registry.load_task("tyo")
    assert "unknown task 'tyo'" in exc.value.message
    assert "toy" in exc.value.hint


def test_bad_env_entry(monkeypatch):
    monkeypatch.setenv(registry.ENV_VAR, "no-colon")
    with pytest.raises(UsageError, match="name=module:attr"):
        registry.task_targets()


def test_builtin_targets_are_module_attr_strings():
    for name, target in registry.BUILTIN.items():
        assert name == name.lower() and "_" not in name, name
        module, _, attr = target.partition(":")
        assert module.startswith("affectkit.tasks.") and attr, target
