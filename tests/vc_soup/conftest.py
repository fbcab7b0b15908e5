import pytest

from affectkit.cli._app import new_app
from affectkit.core.output import Output, set_output


@pytest.fixture
def cli():
    """Invoke one verb module's command in a fresh app; returns (exit code, stdout, stderr)."""
    from typer.testing import CliRunner

    def run(module: str, args: list[str], json_mode: bool = False, input: str | None = None):
        import importlib

        app = new_app("test")

        @app.callback()
        def root() -> None:
            set_output(Output(json_mode=json_mode))  # built inside the run, on the runner's streams

        importlib.import_module(module).register(app)
        runner = CliRunner()
        res = runner.invoke(app, args, input=input)
        return res.exit_code, res.stdout, res.stderr

    yield run
    set_output(Output())
