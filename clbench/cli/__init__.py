"""The `clbench` command. Each subcommand lives in its own module and only parses, calls the library, prints.

Heavy imports (torch, avalanche) happen inside the commands, so `clbench --help` is instant.
"""
from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="clbench",
    help="Continual-learning benchmark whose rehearsal memory is built by dataset condensation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# (command name, module in clbench.cli, function): one line per subcommand.
COMMANDS = [
    ("run", "run", "run"),
    ("resume", "resume", "resume"),
    ("compare", "compare", "compare"),
    ("plot", "plot", "plot_app"),
    ("condensers", "condensers", "condensers"),
    ("condense", "condense", "condense"),
    ("diagnose", "diagnose", "diagnose"),
    ("sweep", "sweep", "sweep"),
]


def _register() -> None:
    import importlib

    for name, module_name, attr in COMMANDS:
        module = importlib.import_module(f"clbench.cli.{module_name}")
        target = getattr(module, attr)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)


_register()


def main() -> None:
    """Entry point: library errors become one line on stderr and an exit code, never a traceback."""
    from clbench.errors import ClbenchError

    try:
        app()  # standalone: typer reports its own usage errors with exit code 2
    except ClbenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
