"""`clbench report`: any folders of records (runs, static tables, diagnoses, sweeps) -> one self-contained HTML page.

The page holds what `clbench compare` computes (the same rows, grouping rules and footnotes: its Tables are
rendered, not recomputed), the accuracy curves and per-class accuracies, each record's memory pictures (the
PNG grids runs save beside their records), diagnoses, sweep job states, and for every record its configuration,
provenance, hardware and the command that reproduces it. Nothing is fetched when it is opened: styles, the
sorting script and every image are inline; figures are SVG from matplotlib (text kept as text, so it is
searchable and small), pictures PNG as data URIs. The page is rendered by a Jinja2 template
(templates/report.html.j2); this module only gathers the values it shows.

A record that cannot be read, or whose section fails, is listed with the reason; the rest of the page is unaffected.
"""
from __future__ import annotations

import base64
import datetime
import io
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from clbench.core.errors import UsageError
from clbench.report.table import Table

GENERATOR = "clbench report"  # the page's <meta name="generator">: what may be replaced by a new report
IMAGE_MODES = ("preview", "full", "none")  # which memory pictures are embedded
PREVIEW_WIDTH = 360  # px: the preview mode scales pictures down to this width and stores them as WebP (a memory
# of noisy synthetic images hardly compresses: a 580 px grid is ~100 KB as PNG, ~20 KB at 360 px as WebP)
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?")


@dataclass
class Problem:
    path: str
    reason: str


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


# -- tables and figures as the template wants them -----------------------------------------------------------
def sort_value(text: str) -> float | str | None:
    """What a click on a column sorts by: the leading number of a cell ("78.10 ± 0.79" -> 78.1, "5 (0-4)" -> 5),
    else its text; "-" (nothing) sorts last either way."""
    text = text.strip()
    if text in ("-", ""):
        return None
    if text.startswith("<"):  # "<0.001"
        text = text[1:]
    found = _NUMBER.match(text.replace("−", "-"))
    return float(found.group(0)) if found else text.lower()


def table_view(table: Table) -> dict[str, Any]:
    """A Table (as compare builds it) in the template's terms: headers, cells with their sort values, notes.
    Text columns that hold one value in every row (the dataset of a one-dataset table) move into the caption, as
    in the terminal; the first column (what names a row) and every number stay."""
    keep = [i for i, c in enumerate(table.columns)
            if i == 0 or c.numeric or len(table.cells) < 2 or len({row[i] for row in table.cells}) > 1]
    common = [f"{table.columns[i].title} {table.cells[0][i]}" for i in range(len(table.columns)) if i not in keep]
    columns = [table.columns[i] for i in keep]
    rows = []
    for r, cells in enumerate(table.cells):
        shown = [cells[i] for i in keep]
        rows.append({"cells": [{"text": text, "sort": json.dumps(sort_value(text)), "numeric": c.numeric,
                                "wrap": c.wrap or c.cut or c.below} for text, c in zip(shown, columns)],
                     "refs": table.refs[r] if r < len(table.refs) else []})
    caption = "; ".join(filter(None, [", ".join(common), table.caption]))
    return {"title": table.title, "caption": caption, "notes": table.notes,
            "headers": [{"title": c.title, "numeric": c.numeric} for c in columns], "rows": rows}


def svg(fig) -> str:
    """A matplotlib figure as inline SVG markup (text as text, ids stable from one page to the next)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "clbench"}):
        fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def picture_data_uri(path: Path, max_width: int | None) -> tuple[str, tuple[int, int]]:
    """A picture file as a data URI and the embedded picture's size: as saved (PNG, grey where every pixel is) for
    `max_width` None, else scaled down to `max_width` where wider and stored as WebP (quality 80)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        picture = im.convert("RGB")
    if _is_grey(picture):
        picture = picture.convert("L")
    buffer = io.BytesIO()
    if max_width is None:
        picture.save(buffer, format="PNG", optimize=True)
        kind = "png"
    else:
        if picture.width > max_width:
            height = max(1, round(picture.height * max_width / picture.width))
            picture = picture.resize((max_width, height), Image.Resampling.LANCZOS)
        picture.save(buffer, format="WEBP", quality=80)
        kind = "webp"
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), picture.size


def _is_grey(picture) -> bool:
    from PIL import ImageChops

    r, g, b = picture.split()
    return ImageChops.difference(r, g).getbbox() is None and ImageChops.difference(g, b).getbbox() is None


# -- what reproduces a record ----------------------------------------------------------------------------------
def reproduce_command(record: dict[str, Any]) -> str:
    """The command line that runs this record's experiment again (from the options it was started with; records
    written before those were kept get the resolved configuration's main fields)."""
    kind = record.get("kind", "continual")
    given = record.get("run_config")
    config = record.get("config", {})
    if kind == "static":
        source = given or {**config, "sets": len(config.get("sets", [])) or None, "opt": {}, "train": {}}
        words = ["clbench", "condense"]
        names = ("condenser", "dataset", "ipc", "sets", "first_set", "evals", "network", "width", "profile",
                 "device", "seed")
        if source.get("eval_nets"):
            words += ["--eval-nets", ",".join(source["eval_nets"])]
    else:
        source = given or {**config, "orders": len(config.get("orders", [])) or None, "opt": {}, "train": {}}
        words = ["clbench", "run"]
        names = ("learner", "condenser", "dataset", "memory", "steps", "orders", "first_order", "profile", "device",
                 "seed", "network", "networks_per_step", "width", "jobs")
    for name in names:
        value = source.get(name)
        if value is None or (name in ("first_order", "first_set") and value == 0):
            continue
        if name == "learner" and value == "retrain":
            continue
        if name == "condenser" and source.get("learner") == "joint":
            continue
        words += [f"--{name.replace('_', '-')}", str(value)]
    for flag, values in (("--opt", source.get("opt") or {}), ("--train", source.get("train") or {})):
        for key, value in values.items():
            words += [flag, f"{key}={json.dumps(value) if isinstance(value, (list, dict)) else value}"]
    if source.get("out"):
        words += ["--out", str(source["out"])]
    return shlex.join(words)


# -- the page ----------------------------------------------------------------------------------------------
class Builder:
    """Gathers one page's values from the records under `sources`; every section is built under `guarded`, so that
    one broken record or figure costs its own entry only."""

    def __init__(self, sources: list[str | Path], baseline: str | None, images: str, title: str | None):
        if images not in IMAGE_MODES:
            raise UsageError(f"--images {images!r}: choose one of {', '.join(IMAGE_MODES)}")
        self.sources = [Path(s) for s in sources]
        for source in self.sources:
            if not source.exists():
                raise UsageError(f"{source}: no such file or folder")
        self.baseline, self.images = baseline, images
        now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        self.page = Page(title or "clbench results: " + ", ".join(str(s) for s in self.sources), now,
                         [str(s) for s in self.sources], _version())

    def guarded(self, where: str, build: Callable[[], Any]) -> Any:
        try:
            return build()
        except Exception as exc:  # noqa: BLE001  (a report shows each failure beside the rest, never stops)
            self.page.problems.append(Problem(where, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
                                              if str(exc).strip() else type(exc).__name__))
            return None

    def build(self) -> Page:
        from clbench.report.sections import collect, sections

        start = time.perf_counter()
        found = collect(self)
        self.page.sections = sections(self, found)
        self.page.seconds = time.perf_counter() - start
        return self.page


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
                 title: str | None = None) -> tuple[str, Page]:
    """The page's HTML for the records under `sources`, and what it was built from."""
    page = Builder(sources, baseline, images, title).build()
    return render_page(page), page


def check_out(out: str | Path) -> Path:
    """Where the page goes: a new file, or an earlier clbench report (replaced); anything else is refused, so that
    a mistyped --out never destroys a user's file. Checked before any work."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out {out}: give a file ending in .html")
    if out.is_dir():
        raise UsageError(f"--out {out}: a folder; name the page's file, e.g. {out / 'report.html'}")
    if out.exists():
        try:
            head = out.read_bytes()[:2000].decode("utf-8", "replace")
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot read the existing file ({exc.strerror})") from None
        if f'name="generator" content="{GENERATOR}' not in head:
            raise UsageError(f"--out {out}: that file exists and is not a clbench report; choose another name")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is a file, not a folder")
    return out


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
