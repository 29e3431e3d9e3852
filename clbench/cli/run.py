"""`clbench run`: parse the options into a RunConfig, run it (or resume a record), print the closing table."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional

import typer


def run(
    condenser: Optional[str] = typer.Option(None, "--condenser", "-c", help="condenser name, or module.path:ClassName (default: random)"),
    memory: Optional[str] = typer.Option(None, "--memory", "-m", help="<N>ipc images per class, or a total number of images (default: 20ipc)"),
    orders: Optional[int] = typer.Option(None, "--orders", help="number of class orders (order s = numpy permutation of seed s) (default: 5)"),
    first_order: Optional[int] = typer.Option(None, "--first-order", help="index of the first class order (default: 0)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="a name `clbench datasets` lists, or folder:PATH\\[@SIZE]; NAME#0-9 keeps those classes (default: fashion-mnist)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="experiences (the classes must divide equally) (default: 5)"),
    profile: Optional[str] = typer.Option(None, "--profile", help="paper, quick, or auto (paper on CUDA, quick on CPU) (default: auto)"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N (default: auto)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="run seed (condensation, networks, training draws) (default: 0)"),
    network: Optional[str] = typer.Option(None, "--network", help="architecture of the condensation and evaluation networks (default: convnet)"),
    nets: Optional[int] = typer.Option(None, "--nets", help="networks trained per step (default: 3 paper, 1 quick)"),
    width: Optional[int] = typer.Option(None, "--width", help="ConvNet width (default: 128 paper, 32 quick)"),
    opt: List[str] = typer.Option([], "--opt", help="condenser option key=value (repeatable)"),
    train: List[str] = typer.Option([], "--train", help="training recipe option key=value, e.g. epochs=300 (repeatable)"),
    config: Optional[str] = typer.Option(None, "--config", help="TOML file with run options and \\[opt] / \\[train] tables"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="folder for the record, snapshots and pictures (default: results)"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="dataset folder (else $CLBENCH_DATA, the system copy, download)"),
    learner: Optional[str] = typer.Option(None, "--learner", help="retrain: fresh networks trained from scratch on the memory each step; replay: one network trained continually (Avalanche Naive + ReplayPlugin) on new data plus the memory; joint: the upper bound on all real images seen; task: retrain scored task-incrementally; or a plugin's (default: retrain)"),
    log: Optional[str] = typer.Option(None, "--log", help="live logs in the run's folder (logs/order<k>/): csv, tensorboard (pip install -e '.\\[tensorboard]'), or csv,tensorboard: step accuracies, condensation losses, epoch losses"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="orders run side by side in this many processes (one per GPU when there are several) (default: 1)"),
    resume: Optional[str] = typer.Option(None, "--resume", help="continue this record (same options) from the last completed step of each order"),
) -> None:
    """Class-incremental learning with a condensed rehearsal memory, over several class orders."""
    from clbench.core.options import parse_assignments
    from clbench.protocol import config as cfg

    # Options left out are None, so that a --config file's values are not overwritten by CLI defaults.
    cli_values = {
        "condenser": condenser, "memory": memory, "orders": orders, "first_order": first_order, "dataset": dataset,
        "steps": steps, "profile": profile, "device": device, "seed": seed, "network": network,
        "networks_per_step": nets, "width": width, "out": out, "data_dir": data_dir, "jobs": jobs,
        "learner": learner, "log": log,
    }
    overrides = {k: v for k, v in cli_values.items() if v is not None}
    if opt:
        overrides["opt"] = parse_assignments(opt)
    if train:
        overrides["train"] = parse_assignments(train)
    base = cfg.merge(cfg.RunConfig(), cfg.load_toml(config)) if config else cfg.RunConfig()
    run_config = cfg.merge(base, overrides)

    from clbench.protocol import continual

    if resume is not None and jobs is None:  # the record's thread split, so that the numbers stay the same
        from clbench.records.record import load_record

        recorded = load_record(resume).get("run_config")
        if isinstance(recorded, dict) and isinstance(recorded.get("jobs"), int):
            run_config = cfg.merge(run_config, {"jobs": recorded["jobs"]})
    execute(lambda reporter: continual.run(run_config, reporter, resume=resume))


def print_summary(record: dict[str, Any]) -> None:
    """A continual record's closing table."""
    from rich.console import Console

    from clbench.report.compare import print_table, summary_rows

    print_table(summary_rows([record]), "table", Console())


def execute(start: Callable[[Any], tuple[Path, dict]], reporter_type: type | None = None,
            summary: Callable[[dict[str, Any]], None] = print_summary) -> None:
    """Run with progress bars (a continual run's, or `reporter_type`); print the record's `summary`, or how to
    resume after an interruption (exit 128+signal)."""
    from clbench.cli.progress import RichReporter
    from clbench.core.errors import AlreadyComplete, Interrupted

    class Reporter(reporter_type or RichReporter):
        def stop_requested(self, signal_name: str) -> None:
            self.console.print(f"[bold]{signal_name}[/bold]: stopping at the next safe point "
                               f"(press Ctrl-C again to exit at once; saved files stay intact)")

    reporter = Reporter()
    try:
        path, record = start(reporter)
    except Interrupted as exc:
        reporter.close()
        typer.echo(f"{exc}\nto resume: {exc.resume_command}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except AlreadyComplete as exc:
        reporter.close()
        typer.echo(str(exc), err=True)
        return
    finally:
        reporter.close()
    summary(record)
    typer.echo(f"record: {path}")
