"""`clbench datasets`: every dataset name clbench accepts (built-in and from installed packages), its shape and
classes, and where its files were found (no images are read), plus the `folder:PATH[@SIZE]` form."""
from __future__ import annotations

from typing import Optional

import typer


def datasets(
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="also look here (as clbench run does)"),
) -> None:
    """List the datasets with their image size, classes, origin and where each was found."""
    from rich.console import Console

    from clbench.data.datasets import DATASETS, FOLDER_PREFIX, FOLDER_SIZE, dataset_spec, locate
    from clbench.report.compare import show
    from clbench.report.table import Column, Table

    cells = []
    for entry in DATASETS.entries():
        try:
            spec = dataset_spec(entry.name)
            where, how = locate(entry.name, data_dir)
        except Exception as exc:  # a broken plugin must not hide the others
            cells.append([entry.name, "-", "-", entry.origin, f"cannot load: {exc}"])
            continue
        shape = f"{spec.channels}x{spec.image_size}x{spec.image_size}"
        cells.append([entry.name, shape, str(spec.num_classes), entry.origin,
                      where if where else f"not found; {how}"])
    columns = [Column("dataset", key=True), Column("C x H x W"), Column("classes", numeric=True),
               Column("origin"), Column("found at (or how to get it)", wrap=True)]
    show(Table("datasets", columns, cells, [], [],
               f"also: --dataset {FOLDER_PREFIX}PATH[@SIZE] for an image folder (train/ and val/ or test/, one "
               f"folder per class), resized and centre-cropped to SIZE px ({FOLDER_SIZE} by default)"),
         "table", Console(highlight=False))
