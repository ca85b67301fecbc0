"""Reading back what a real TorchRL CSVLogger wrote."""

from __future__ import annotations

import pathlib


def read_csv_scalars(log_dir: pathlib.Path, exp_name: str) -> dict[str, list[tuple[int, float]]]:
    """All scalars of a CSVLogger experiment: metric name -> [(step, value), ...]."""
    root = pathlib.Path(log_dir) / exp_name / "scalars"
    scalars = {}
    for path in root.rglob("*.csv"):
        name = path.relative_to(root).with_suffix("").as_posix()
        rows = [line.split(",") for line in path.read_text().splitlines() if line]
        scalars[name] = [(int(step), float(value)) for step, value in rows]
    return scalars
