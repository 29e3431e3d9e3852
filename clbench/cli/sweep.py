"""`clbench sweep`: expand a spec into jobs, hand them to an engine, show them live, gather, summarise."""
from __future__ import annotations

import time
from typing import Optional

import typer


def sweep(
    spec: Optional[str] = typer.Argument(None, help="sweep spec (TOML): the grid, the orders, the engine's settings"),
    launcher: Optional[str] = typer.Option(None, "--launcher", "-l", help="local, ray or slurm (default: the spec's, else local)"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join (e.g. auto); none: start a local instance"),
    max_parallel: Optional[int] = typer.Option(None, "--max-parallel", help="jobs at once: CPU processes (local), CPUs of the local Ray instance, Slurm array parallelism"),
    retries: Optional[int] = typer.Option(None, "--retries", help="resubmissions of a job that failed (default: the spec's, else 0)"),
    attach: Optional[str] = typer.Option(None, "--attach", metavar="FOLDER", help="follow a Slurm sweep submitted earlier from this folder"),
    status: Optional[str] = typer.Option(None, "--status", metavar="FOLDER", help="show each job of the sweep in this folder (state, host, attempts, last error) from its files; run nothing"),
    job: Optional[str] = typer.Option(None, "--job", metavar="ID", help="with --status: one job whole (every attempt, its full errors and log); an id or its first characters"),
    fmt: str = typer.Option("table", "--format", "-f", help="with --status: table, or json (every job's report whole, for scripts)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", metavar="FOLDER", help="sweep folder (default: the spec's, else sweeps/<spec name>)"),
    folder: Optional[str] = typer.Option(None, "--folder", hidden=True, help="the old spelling of --out"),
    partition: Optional[str] = typer.Option(None, "--partition", help="Slurm partition"),
    time_limit: Optional[str] = typer.Option(None, "--time", help="Slurm time limit per job (HH:MM:SS or minutes)"),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="Slurm GPUs per job (default: 1 unless device is cpu)"),
    detach: bool = typer.Option(False, "--detach", help="Slurm: submit and exit; follow later with --attach"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the jobs and what is already done; run nothing"),
) -> None:
    """Run a grid of run configurations x class orders as independent jobs on a process pool, Ray or Slurm."""
    from clbench.core.errors import UsageError
    from clbench.sweep import driver
    from clbench.sweep.launchers import make_launcher
    from clbench.sweep.spec import load_spec

    if out is not None and folder is not None:
        raise UsageError("give the sweep folder once: --out (or its old spelling --folder)")
    folder = out if out is not None else folder
    if status is not None:
        if spec is not None or attach is not None:
            raise UsageError("--status FOLDER only reads a sweep folder; give no spec and no --attach with it")
        _show_status(status, job, fmt)
        return
    if job is not None or fmt != "table":
        raise UsageError("--job and --format go with --status FOLDER (clbench sweep --status FOLDER --job ID)")
    slurm = {"partition": partition, "time": time_limit, "gpus": gpus}
    if attach is not None:
        if spec is not None:
            raise UsageError("give either a spec or --attach FOLDER, not both")
        loaded, _, planned = driver.attached_spec(attach)
        if planned != "slurm" or (launcher not in (None, "slurm")):
            raise UsageError(f"--attach follows Slurm sweeps; {attach} was run with --launcher {planned}: "
                             f"run its spec again instead (finished jobs are skipped)")
        engine = make_launcher("slurm", loaded, max_parallel=max_parallel, retries=retries, slurm=slurm)
        result = _with_live_table(lambda listener: driver.attach_sweep(loaded.folder, engine, listener), engine.name)
        _summarise(result, f"clbench sweep --attach {loaded.folder}")
        return
    if spec is None:
        raise UsageError("give a sweep spec (TOML), or --attach FOLDER")
    loaded = load_spec(spec, folder)
    name = launcher or loaded.launcher
    engine = make_launcher(name, loaded, max_parallel=max_parallel, retries=retries, ray_address=ray_address,
                           slurm=slurm, detach=detach)
    if dry_run:
        _dry_run(loaded, driver.plan(loaded, name, write=False))
        return
    try:
        result = _with_live_table(lambda listener: driver.run_sweep(loaded, engine, listener), engine.name)
    except KeyboardInterrupt:
        if engine.name == "slurm":
            typer.echo(f"the jobs keep running on Slurm; follow them with: clbench sweep --attach {loaded.folder}",
                       err=True)
        raise
    finally:
        for note in engine.notes:
            typer.echo(note, err=True)
    if detach:
        typer.echo(f"submitted {result.board.counts()['pending']} job(s); follow them with: "
                   f"clbench sweep --attach {loaded.folder}")
        return
    retry = f"clbench sweep {spec} --launcher {engine.name}" + (f" --out {folder}" if folder else "")
    _summarise(result, retry)


def _with_live_table(call, launcher: str):
    """Run `call(listener)` under a rich Live view of the board, redrawn 4 times a second (so running times
    tick) and at once when a job changes state."""
    from rich.console import Console
    from rich.live import Live

    view = _BoardView(launcher)
    with Live(view, console=Console(stderr=True), refresh_per_second=4, transient=False) as live:
        def listener(board) -> None:
            view.board = board

        result = call(listener)
        view.board = result.board
        live.refresh()
    return result


class _BoardView:
    def __init__(self, launcher: str):
        self.launcher = launcher
        self.board = None

    def __rich__(self):
        from rich.text import Text

        return Text("planning the sweep...") if self.board is None else job_table(self.board, self.launcher)


def job_table(board, launcher: str, max_rows: int = 24):
    """Counts by state, then the jobs that matter most: running and failed first, then pending, then done."""
    from clbench.report.table import Column, FittedTable, Table
    from clbench.sweep.status import STATE_STYLES, shown_error

    counts = board.counts()
    elapsed = time.time() - board.started
    title = (f"clbench sweep ({launcher}): " + ", ".join(f"{counts[s]} {s}" for s in ("pending", "running", "done", "failed"))
             + f" ({elapsed:.0f}s)")
    rank = {"running": 0, "failed": 1, "pending": 2, "done": 3}
    rows = sorted(board.states.items(), key=lambda kv: (rank[kv[1].state], -(kv[1].ended or 0)))
    cells, styles = [], []
    for job_id, state in rows[:max_rows]:
        job = board.jobs[job_id]
        seconds = f"{(state.ended or time.time()) - state.started:.0f}s" if state.started else ""
        cells.append([job_id[:8], job.run_label, str(job.order),
                      state.state, str(state.attempts or ""), seconds, shown_error(state.detail or "", job.folder.parent.parent)])
        styles.append(STATE_STYLES.get(state.state, ""))
    caption = f"{len(rows) - max_rows} more job(s) not shown" if len(rows) > max_rows else ""
    jobs = list(board.jobs.values())
    unit = jobs[0].experiment.unit if jobs else "order"  # "set" in a static sweep
    columns = [Column("job", key=True), Column("run", wrap=True), Column(unit, numeric=True), Column("state"),
               Column("try", numeric=True), Column("time", numeric=True), Column("detail", cut=True)]
    return FittedTable(Table(title, columns, cells, [], [], caption, styles=styles))


def _show_status(folder: str, job: str | None, fmt: str) -> None:
    """Every job's state, host, attempts, progress and last error, from the sweep folder alone; or one job whole."""
    import json

    from rich.console import Console

    from clbench.core.errors import UsageError
    from clbench.report.compare import show
    from clbench.sweep.status import find_job, status_table, sweep_status

    if fmt not in ("table", "json"):
        raise UsageError(f"--format {fmt}: sweep --status shows a table or json")
    reports = sweep_status(folder)
    if job is not None:
        report = find_job(reports, job)
        if fmt == "json":
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            _show_job(report)
        return
    if fmt == "json":
        typer.echo(json.dumps([r.to_dict() for r in reports], indent=2))
        return
    show(status_table(reports, folder), "table", Console())


def _show_job(report) -> None:
    """One job as fields, one per line, then each attempt with its whole error: nothing cut."""
    job = report.job
    lines = [f"job {job.id}: {report.state}",
             f"  run: {job.run_label}, {job.experiment.unit} {job.order}",
             f"  folder: {report.job.folder}",
             f"  {job.experiment.work_name}: {report.steps_done}/{report.steps_total} ({report.resumed} resumed)",
             f"  attempts: {report.attempts}"]
    for n, attempt in enumerate(report.history, 1):
        where = " ".join(str(attempt[k]) for k in ("host", "node", "engine_id") if attempt.get(k))
        lines.append(f"  attempt {n}: {attempt.get('state', '?')}" + (f" on {where}" if where else ""))
        for key in ("note", "log"):
            if attempt.get(key):
                lines.append(f"    {key}: {attempt[key]}")
        if attempt.get("error"):
            lines += ["    error:"] + [f"      {line}" for line in str(attempt["error"]).splitlines()]
    typer.echo("\n".join(lines))


def _dry_run(spec, jobs) -> None:
    from rich.console import Console

    from clbench.report.compare import show
    from clbench.report.table import Column, Table
    from clbench.sweep.jobs import complete_record

    columns = [Column("job", key=True), Column("run", wrap=True), Column(jobs[0].experiment.unit if jobs else "order",
                                                                          numeric=True), Column("done")]
    cells = [[job.id, job.run_label, str(job.order), "yes" if complete_record(job.folder) else ""] for job in jobs]
    show(Table(f"{len(jobs)} job(s) in {spec.folder}", columns, cells, [], [], ""), "table", Console())


def _summarise(result, retry: str) -> None:
    """Gathered records as a compare table; then each failure with its error and log, and how to retry."""
    from rich.console import Console

    from clbench.records.record import load_record
    from clbench.report.compare import print_table, summary_rows
    from clbench.sweep.driver import SweepFailed

    console = Console(soft_wrap=True)
    counts = result.board.counts()
    skipped = sum(1 for s in result.board.states.values() if s.skipped)
    if result.records:
        print_table(summary_rows([load_record(p) for p in result.records]), "table", console)
    typer.echo(f"{len(result.jobs)} job(s): {counts['done']} done ({skipped} already complete before), "
               f"{counts['failed']} failed")
    typer.echo(f"records: {result.folder / 'records'}  (clbench compare {result.folder / 'records'})")
    failed = result.failed
    if not failed:
        return
    for job, state in failed:
        typer.echo(f"failed: {job.id} ({job.label}) after {state.attempts} attempt(s): {state.error}", err=True)
        if state.log:
            typer.echo(f"  log: {state.log}", err=True)
    raise SweepFailed(f"{len(failed)} of {len(result.jobs)} job(s) failed; fix the cause and run `{retry}` "
                      f"again (finished jobs are skipped; --retries K resubmits failures automatically)")
