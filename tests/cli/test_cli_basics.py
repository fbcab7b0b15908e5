import subprocess
import sys

from tests.cli.helpers import invoke, json_lines


def test_help_lists_verbs_and_does_not_import_torch():
    code = (
        "import sys\n"
        "from affectkit.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
        "assert 'transformers' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for verb in ("tasks", "config", "data", "train", "evaluate", "bench"):
        assert verb in proc.stdout


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("affectkit ")


def test_tasks_json_lines():
    result = invoke("tasks", "--json")
    assert result.exit_code == 0, result.stderr
    lines = json_lines(result.stdout)
    assert lines[-1]["event"] == "result"
    toy = [line for line in lines if line.get("event") == "task" and line["task"] == "toy"]
    assert toy and "train" in toy[0]["verbs"]


def test_config_prints_commented_yaml(tmp_path):
    result = invoke("config", "toy")
    assert result.exit_code == 0
    assert "# hidden units" in result.stdout and "max_steps: 40" in result.stdout
    out = tmp_path / "toy.yaml"
    result = invoke("--json", "config", "toy", "--out", str(out))
    assert result.exit_code == 0 and out.exists()
    assert json_lines(result.stdout)[-1]["path"] == str(out)


def _assert_usage_error(result, *needles):
    assert result.exit_code == 2, (result.stdout, result.stderr)
    err_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(err_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    json_lines(result.stdout)  # stdout stays valid JSON lines


def test_unknown_task_suggests(tmp_path):
    _assert_usage_error(invoke("--json", "train", "toi", "--out", str(tmp_path / "r")), "unknown task 'toi'", "did you mean 'toy'")


def test_unknown_set_key(tmp_path):
    result = invoke("--json", "train", "toy", "--out", str(tmp_path / "r"), "--set", "train.lrr=0.1")
    _assert_usage_error(result, "unknown config key 'train.lrr'", "train.lr")


def test_wrong_type(tmp_path):
    result = invoke("--json", "train", "toy", "--out", str(tmp_path / "r"), "--set", "train.max_steps=many")
    _assert_usage_error(result, "train.max_steps", "expected an integer")


def test_missing_data_dir(tmp_path):
    result = invoke("--json", "train", "toy", "--out", str(tmp_path / "r"), "--data", str(tmp_path / "nowhere"))
    _assert_usage_error(result, "nowhere", "not found")


def test_unreadable_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [\n")
    result = invoke("--json", "train", "toy", "--out", str(tmp_path / "r"), "--config", str(bad))
    _assert_usage_error(result, "bad.yaml", "invalid YAML")


def test_bad_data_file_names_file_and_problem(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("x0,x1\n1,2\n")
    (data / "test.csv").write_text("x0,x1\n1,2\n")
    result = invoke("--json", "train", "toy", "--out", str(tmp_path / "r"), "--data", str(data))
    _assert_usage_error(result, "train.csv", "missing columns")


def test_nan_label(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    header = ",".join([f"x{i}" for i in range(8)] + ["label"])
    (data / "train.csv").write_text(header + "\n" + ",".join(["0"] * 8 + ["nan"]) + "\n")
    (data / "test.csv").write_text(header + "\n")
    result = invoke("--json", "train", "toy", "--out", str(tmp_path / "r"), "--data", str(data))
    _assert_usage_error(result, "train.csv", "line 2: label is NaN")


def test_debug_shows_traceback(tmp_path):
    result = invoke("--debug", "train", "toy", "--out", str(tmp_path / "r"), "--set", "nope=1")
    assert result.exit_code == 2 and "Traceback" in result.stderr


def test_verb_not_supported():
    result = invoke("evaluate", "toy")
    assert result.exit_code == 2 and "--run is required" in result.stderr
