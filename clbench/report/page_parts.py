"""The pieces of `clbench report`'s page that do not depend on which section uses them: a Table as the template
shows it (with sort values), a figure as inline SVG, a picture as a data URI, the command that reproduces a
record, and the gathering context every section writes its problems into.
"""
from __future__ import annotations

import base64
import io
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from clbench.report.table import Table

PREVIEW_WIDTH = 360  # px: the preview mode scales pictures down to this width and stores them as WebP (a memory
# of noisy synthetic images hardly compresses: a 580 px grid is ~100 KB as PNG, ~20 KB at 360 px as WebP)
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?")


@dataclass
class Problem:
    path: str
    reason: str


@dataclass
class Gathering:
    """What the sections are gathered under: the sources, the reader's choices, the folders to leave unread (a
    sweep's per-job copies) and the problems met on the way; `guarded` builds one piece so that its failure
    costs that piece only."""

    sources: list[Path]
    baseline: str | None = None
    images: str = "preview"
    skip: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def guarded(self, where: str, build: Callable[[], Any]) -> Any:
        try:
            return build()
        except Exception as exc:  # noqa: BLE001  (a report shows each failure beside the rest, never stops)
            text = str(exc).strip()
            self.problems.append(Problem(where, f"{type(exc).__name__}: {text.splitlines()[0]}" if text
                                         else type(exc).__name__))
            return None


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
    written before those were kept get the resolved configuration's main fields), without --out."""
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
    return shlex.join(words)  # no --out: the folder it was first written to may be gone; choose one
