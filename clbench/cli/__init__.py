"""The `clbench` command. Each subcommand lives in its own module and only parses, calls the library, prints.

Heavy imports (torch, avalanche) happen inside the commands, so `clbench --help` is instant.
"""
from __future__ import annotations

import sys

import click
import typer
from typer.core import TyperGroup


class _CtrlC(Exception):
    """A Ctrl-C outside a run's own signal handling, carried past typer to `main` (see `_Group`)."""


class _Group(TyperGroup):
    """Lets a Ctrl-C that lands before a run has its handlers (imports, loading data) reach `main`.

    Left to them, click turns it into "Aborted!" with exit code 1 and newer typer into a silent exit 130; main
    answers "interrupted" and 130 whichever is installed.
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _CtrlC() from None
        except click.exceptions.Abort as exc:  # a prompt interrupted by Ctrl-C
            if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                raise _CtrlC() from None
            raise


def _flags_show_no_type() -> None:
    """typer's help lists every option with its type, so a flag reads `--dry-run <bool>` as if it took a value;
    a flag (and --help) is shown bare instead."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: click.Context) -> str | None:
        return None if self.is_flag and not self.count else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_type()

app = typer.Typer(
    cls=_Group,
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
    ("datasets", "datasets", "datasets"),
    ("condense", "condense", "condense"),
    ("diagnose", "diagnose", "diagnose"),
    ("sweep", "sweep", "sweep"),
    ("export", "export", "export"),
    ("report", "report", "report"),
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
    from clbench.core.errors import ClbenchError

    try:
        app()  # standalone: typer reports its own usage errors with exit code 2
    except ClbenchError as exc:
        from clbench.core.text import printable

        typer.echo(f"error: {printable(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, _CtrlC):
        typer.echo("interrupted", err=True)
        sys.exit(130)
