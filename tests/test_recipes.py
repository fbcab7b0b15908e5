"""Every shipped recipe resolves against its task's config, and its header gives the command line."""

from pathlib import Path

import pytest

from affectkit.core.config import resolve
from affectkit.core.registry import BUILTIN, load_task

COMMANDS = Path(__file__).resolve().parents[1] / "commands"
# commands/<verb>/<task>.yaml, and sets of one task's recipes in commands/<verb>/<task>/*.yaml
RECIPES = sorted([*COMMANDS.glob("*/*.yaml"), *COMMANDS.glob("*/*/*.yaml")])


def _task_of(recipe: Path) -> str:
    return recipe.stem if recipe.parent.parent == COMMANDS else recipe.parent.name


def test_every_builtin_task_has_a_train_or_task_recipe():
    for name in BUILTIN:
        assert list(COMMANDS.glob(f"*/{name}.yaml")), f"no recipe for {name}"


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(p.relative_to(COMMANDS).with_suffix("")) for p in RECIPES])
def test_recipe_resolves(recipe: Path):
    task_name = _task_of(recipe)
    assert task_name in BUILTIN, f"{recipe}: no landed task named {task_name!r}"
    header = [line for line in recipe.read_text().splitlines() if line.startswith("#")]
    assert any("affectkit" in line and task_name in line for line in header), f"{recipe}: header lacks the command line"
    task = load_task(task_name)
    resolve(task.Config, recipe)
