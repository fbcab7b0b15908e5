import pytest

from affectkit.core.output import Output, set_output


@pytest.fixture
def cli():
    """Invoke an affectkit command line through the root app; returns (exit code, stdout, stderr).
    ``args`` start with the verb (``filter-prefs``, ``merge``, ``train``...)."""
    from typer.testing import CliRunner

    from affectkit.cli import app

    def run(args: list[str], json_mode: bool = False, input: str | None = None):
        runner = CliRunner()
        res = runner.invoke(app, [*(["--json"] if json_mode else []), *args], input=input)
        return res.exit_code, res.stdout, res.stderr

    yield run
    set_output(Output())
