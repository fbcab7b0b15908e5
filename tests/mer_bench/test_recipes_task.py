from __future__ import annotations

from pathlib import Path

from affectkit.core.config import load_yaml, resolve
from affectkit.core.registry import load_task
from affectkit.core.task import Task
from affectkit.tasks.mer_bench.config import Config

ROOT = Path(__file__).resolve().parents[2]


def test_recipes_resolve() -> None:
    j = resolve(Config, ROOT / "commands" / "judge-memes" / "mer-bench.yaml").judge
    assert j.backend == "openai" and j.runs == 10 and j.sample == 100 and j.openai.max_tokens == 900
    e = resolve(Config, ROOT / "commands" / "evaluate" / "mer-bench.yaml")
    assert e.evaluate.alpha == 3.0 and e.evaluate.mer_compat is False
    for p in (ROOT / "commands").glob("*/mer-bench.yaml"):
        assert p.read_text().startswith("#") and "affectkit " in p.read_text().splitlines()[2]
        assert load_yaml(p)


def test_task_registered_and_makes_data(tmp_path: Path) -> None:
    task = load_task("mer-bench")
    assert isinstance(task, Task) and task.name == "mer-bench" and task.metrics[0].name == "Overall"
    info = task.make_data(tmp_path / "d", seed=0, quick=True)
    assert info["rows"] == 16 and (tmp_path / "d" / "index_final.json").is_file()
