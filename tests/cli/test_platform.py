"""The platform contract: every registered task keeps it, both families save the config that ran,
task verbs mount on the root, a closed stdout ends quietly, a task name cannot be registered twice,
and every command line the README shows parses against the CLI."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from tests.cli.helpers import invoke, json_lines
from tests.conftest import subprocess_env

from affectkit.cli import GLOBAL_FLAGS, app
from affectkit.core import registry
from affectkit.core.config import from_dict, to_yaml
from affectkit.core.errors import UsageError
from affectkit.core.task import CORE_VERBS, LoopTask, RecipeTask, TaskContractError, TaskVerb, check_task

ROOT = Path(__file__).resolve().parents[2]
TASKS = registry.task_names()


@pytest.mark.parametrize("name", TASKS)
def test_every_registered_task_keeps_the_contract(name, tmp_path):
    task = registry.load_task(name)  # runs check_task
    assert isinstance(task, (LoopTask, RecipeTask)) and task.name == name
    assert set(task.verbs) <= set(CORE_VERBS) and "data" in task.verbs
    assert from_dict(task.Config, yaml.safe_load(to_yaml(task.Config()))) == task.Config()
    assert task.metrics, f"{name} declares no metrics"
    if "train" in task.verbs:
        assert task.max_steps_key, f"{name}: `train --max-steps` has no key to set"
    summary = task.make_data(tmp_path, 0, True)
    assert summary is not None and any(tmp_path.iterdir()), f"{name}: quick make_data wrote nothing"


def test_contract_check_refuses_what_a_task_does_not_implement():
    class NoPredict(LoopTask):
        name, summary, Config = "np", "x", dict
        verbs = ("data", "predict")

        def make_data(self, out, seed, quick):
            return {}

    with pytest.raises(TaskContractError, match="does not implement predict"):
        check_task(NoPredict(), "test")

    class Shadowing(RecipeTask):
        name, summary = "sh", "x"
        verbs = ("data",)
        commands = (TaskVerb("train", "m:a", "x"),)

        def make_data(self, out, seed, quick):
            return {}

    with pytest.raises(TaskContractError, match="shadows a shared verb"):
        check_task(Shadowing(), "test")
    with pytest.raises(TaskContractError, match="neither"):
        check_task(object(), "test")


@pytest.mark.parametrize("task, key, line", [("toy", "train.max_steps", "max_steps: 3"),
                                             ("toy-recipe", "steps", "steps: 3")])
def test_config_yaml_is_the_config_that_ran(task, key, line, tmp_path):
    run = tmp_path / "run"
    result = invoke("--json", "train", task, "--out", str(run), "--max-steps", "3")
    assert result.exit_code == 0, result.stderr
    saved = yaml.safe_load((run / "config.yaml").read_text())
    node = saved
    for part in key.split("."):
        node = node[part]
    assert node == 3 and line in (run / "config.yaml").read_text()
    if task == "toy-recipe":
        assert (run / "count.txt").read_text() == "3"  # and it ran 3


def test_task_options_travel_as_config_keys_or_options(tmp_path):
    result = invoke("--json", "train", "toy-recipe", "--out", str(tmp_path / "r"), "--count", "7", "--shout")
    assert result.exit_code == 0, result.stderr
    final = json_lines(result.stdout)[-1]
    assert final["metrics"] == {"count": 7} and final["shout"] is True
    assert "steps: 7" in (tmp_path / "r" / "config.yaml").read_text()
    evaluated = invoke("--json", "evaluate", "toy-recipe", "--run", str(tmp_path / "r"))
    assert json_lines(evaluated.stdout)[-1]["metrics"] == {"count": 7}
    # a task's own flag is not offered to another task
    other = invoke("train", "toy", "--count", "7", "--out", str(tmp_path / "t"))
    assert other.exit_code == 2 and "--count" in other.stderr


def test_max_steps_needs_a_key():
    class NoKey(RecipeTask):
        max_steps_key = None

    assert NoKey.max_steps_key is None and RecipeTask.max_steps_key is None and LoopTask.max_steps_key


def test_task_verbs_mount_on_the_root_and_are_listed():
    lines = json_lines(invoke("--json", "tasks").stdout)
    verbs = {line["task"]: line["verbs"] for line in lines if line.get("event") == "task"}
    assert "quantize" in verbs["moe-quant"] and "judge-memes" in verbs["mer-bench"]
    assert {"filter-prefs", "merge"} <= set(verbs["vc-soup"])
    root = typer.main.get_command(app)
    for verb in ("quantize", "filter-prefs", "merge", "judge-memes"):
        assert verb in root.list_commands(None)
        assert invoke(verb, "--help").exit_code == 0
    # a task verb declared under the shared data group mounts there, not on the root
    assert "data score-videos" in verbs["tqd"] and "score-videos" not in root.list_commands(None)
    data = root.get_command(None, "data")
    assert data.list_commands(None)[:2] == ["make", "stats"] and "score-videos" in data.list_commands(None)
    assert invoke("data", "score-videos", "--help").exit_code == 0


@pytest.mark.parametrize(("group", "name", "needle"), [("data", "make", "shadows"), ("train", "x", "unknown group")])
def test_a_group_task_verb_must_name_a_known_group_and_shadow_nothing(group, name, needle):
    from affectkit.core.task import TaskContractError, TaskVerb, check_task
    from affectkit.tasks.tqd import TqdTask

    class Bad(TqdTask):
        commands = (TaskVerb(name, "x.y:app", "help", group=group),)

    with pytest.raises(TaskContractError, match=needle):
        check_task(Bad(), "test")


def test_closed_stdout_ends_quietly():
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m affectkit tasks --json | head -n 1; "
                       "echo \"status ${PIPESTATUS[0]}\" >&2"],
        env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert len(proc.stdout.splitlines()) == 1 and proc.stdout.startswith("{")
    status = proc.stderr.strip().splitlines()
    assert status[-1] in ("status 0", "status 141") and len(status) == 1, proc.stderr


def test_a_name_registered_twice_is_an_error_naming_both(monkeypatch):
    monkeypatch.setenv(registry.ENV_VAR, "toy=toy_task:TASK,au-fe=toy_task:TASK")
    with pytest.raises(UsageError) as exc:
        registry.task_sources()
    assert "'au-fe' is registered twice" in exc.value.message
    assert "built-in (affectkit.tasks.au_fe:TASK)" in exc.value.message
    assert "AFFECTKIT_TASKS (toy_task:TASK)" in exc.value.message


def _readme_command_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.split(r"(?:^|\s)#", line)[0]
            for part in re.split(r"\|", line):
                part = part.strip()
                m = re.search(r"(?:^|\s)(?:-m\s+)?affectkit\s+(.*)$", part)
                if m and not part.startswith("#") and not part.startswith("pip"):
                    lines.append(m.group(1))
    return lines


COMMAND_LINES = _readme_command_lines()


def test_readme_shows_command_lines():
    assert len(COMMAND_LINES) >= 10


@pytest.mark.parametrize("line", COMMAND_LINES)
def test_readme_command_line_parses(line):
    """Each README command resolves to a verb (and task) whose options accept every flag shown."""
    line = re.split(r"\s(?:>|&&|;)", line)[0].replace("TASK", "au-fe")
    args = [a for a in shlex.split(line) if a not in GLOBAL_FLAGS]
    command = typer.main.get_command(app)
    ctx = command.make_context("affectkit", [], resilient_parsing=True)
    path = []
    while args and hasattr(command, "get_command"):
        sub = command.get_command(ctx, args[0])
        if sub is None:
            break
        path.append(args.pop(0))
        command = sub
        ctx = command.make_context(" ".join(path), [], parent=ctx, resilient_parsing=True)
    assert path, f"no verb in {line!r}"
    try:
        command.make_context(" ".join(path), list(args), parent=ctx.parent)
    except Exception as exc:  # the parser's own error names the flag at fault
        if type(exc).__name__ in ("Exit",):
            return
        raise AssertionError(f"`affectkit {line}`: {exc}") from None
