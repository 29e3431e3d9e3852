"""`clbench report`: any folders of records (runs, static tables, diagnoses, sweeps) -> one self-contained HTML page.

The page holds what `clbench compare` computes (the same rows, grouping rules and footnotes: its Tables are
rendered, not recomputed), the accuracy curves and per-class accuracies, each record's memory pictures (the
PNG grids runs save beside their records), diagnoses, sweep job states, and for every record its configuration,
provenance, hardware and the command that reproduces it. Nothing is fetched when it is opened: styles, the
sorting script and every image are inline; figures are SVG from matplotlib (text kept as text, so it is
searchable and small), pictures WebP or PNG as data URIs. The page is rendered by a Jinja2 template
(templates/report.html.j2); clbench.report.sections gathers what each section shows.

A record that cannot be read, or whose section fails, is listed with the reason; the rest of the page is unaffected.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clbench.core.errors import UsageError
from clbench.report.page_parts import Gathering, Problem
from clbench.report.table import Table

GENERATOR = "clbench report"  # the page's <meta name="generator">: what may be replaced by a new report
IMAGE_MODES = ("preview", "full", "none")  # which memory pictures are embedded


@dataclass
class Page:
    title: str
    generated: str
    sources: list[str]
    version: str
    sections: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0


# -- the page ----------------------------------------------------------------------------------------------
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clbench")
    except PackageNotFoundError:  # run from a checkout without installing
        return "(not installed)"


def render_page(page: Page) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("clbench.report", "templates"),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(page=page, generator=GENERATOR)


def build_report(sources: list[str | Path], *, baseline: str | None = None, images: str = "preview",
                 title: str | None = None, sweeps: list[tuple[Path, Table]] | None = None,
                 skip: list[Path] | None = None) -> tuple[str, Page]:
    """The page's HTML for the records under `sources`, and what it was built from. `sweeps` are the status
    tables of the sweep folders among them (clbench.sweep.status, a layer above this one: the caller reads them);
    the per-job copies of the records in the sweep folders `skip` are left unread."""
    from clbench.report.sections import collect, sections

    if images not in IMAGE_MODES:
        raise UsageError(f"--images {images!r}: choose one of {', '.join(IMAGE_MODES)}")
    paths = [Path(s) for s in sources]
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
    start = time.perf_counter()
    gathering = Gathering(paths, baseline, images, skip=[Path(folder) / "jobs" for folder in skip or []])
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    page = Page(title or "clbench results: " + ", ".join(str(s) for s in paths), now, [str(s) for s in paths],
                _version())
    found = collect(gathering)
    if not (found.records or found.diagnoses or sweeps):
        raise UsageError(f"no run records, diagnoses or sweeps found in {', '.join(map(str, paths))}"
                         + (f" ({len(gathering.problems)} unreadable file(s), e.g. {gathering.problems[0].path}: "
                            f"{gathering.problems[0].reason})" if gathering.problems else "")
                         + "; run `clbench run` first or give a record path")
    if baseline is not None and not any(r["config"].get("condenser") == baseline for _, r in found.records):
        names = sorted({str(r["config"].get("condenser")) for _, r in found.records})
        raise UsageError(f"--baseline {baseline!r}: no record of that condenser among these records "
                         f"(condensers found: {', '.join(names)})")
    page.sections, page.records = sections(gathering, found, sweeps or [])
    page.problems = gathering.problems
    page.seconds = time.perf_counter() - start
    return render_page(page), page


def check_out(out: str | Path) -> Path:
    """Where the page goes: a new file, or an earlier clbench report (replaced); anything else is refused, so that
    a mistyped --out never destroys a user's file. Checked before any work."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out {out}: give a file ending in .html")
    if out.is_dir():
        raise UsageError(f"--out {out}: a folder; name the page's file, e.g. {out / 'report.html'}")
    if out.exists() or out.is_symlink():
        if not out.is_file():  # a FIFO would block the read below, a device never end
            raise UsageError(f"--out {out}: exists and is not a regular file; choose another name")
        try:
            with open(out, "rb") as existing:
                head = existing.read(2000).decode("utf-8", "replace")
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot read the existing file ({exc.strerror})") from None
        if f'name="generator" content="{GENERATOR}' not in head:
            raise UsageError(f"--out {out}: that file exists and is not a clbench report; choose another name")
    if out.parent.exists() and not out.parent.is_dir():  # Path("r.html").parent is Path(".")
        raise UsageError(f"--out {out}: {out.parent} is a file, not a folder")
    return out.resolve() if out.is_symlink() else out  # a link to an earlier report: that report is replaced


def write_report(sources: list[str | Path], out: str | Path, **options: Any) -> tuple[Path, Page, int]:
    """Build the page and write it atomically to `out` (see check_out); the path, the page and its size in bytes."""
    from clbench.core.atomic import atomic_write_bytes

    out = check_out(out)
    html, page = build_report(sources, **options)
    data = html.encode("utf-8")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, data)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write the page ({exc.strerror})") from None
    return out, page, len(data)
