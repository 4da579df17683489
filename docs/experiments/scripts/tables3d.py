"""Markdown tables of a 3D evaluation (``metrics.csv`` of ``run evaluating`` or ``validate3d.py``).

One row for all cases, one for the cases not missed (DSC of 50 % or more) and, with the phantoms'
datalist (its ``spacing_mm`` and ``ga_weeks``), rows by the input's finest spacing, anisotropy
and gestational age. Adb and Hdb average the finite cases.

    python docs/experiments/scripts/tables3d.py out/eval/metrics.csv out/test3d/datalist.json test
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Row = dict[str, str]
MISSED_DSC = 0.5


def mean_sd(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    values = [scale * v for v in values if math.isfinite(v)]
    if len(values) < 2:
        return f"{values[0]:.{digits}f}" if values else "–"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def line(name: str, rows: Sequence[Row]) -> str:
    def column(key: str) -> list[float]:
        return [float(row[key]) for row in rows]

    errors = [100.0 * (float(r["volume_pred_ml"]) / float(r["volume_ref_ml"]) - 1.0) for r in rows]
    missed = sum(float(r["dice"]) < MISSED_DSC for r in rows)
    return (
        f"| {name} ({len(rows)}) | {mean_sd(column('dice'), 100)} | {mean_sd(column('jaccard'), 100)} "
        f"| {mean_sd(column('adb_mm'))} | {mean_sd(column('hdb_mm'), digits=1)} | {mean_sd(errors, digits=1)} | {missed} |"
    )


def main() -> int:
    rows: list[Row] = list(csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")))
    print("| phantoms | DSC [%] | Jacc [%] | Adb [mm] | Hdb [mm] | volume error [%] | missed |")
    print("|---|---|---|---|---|---|---|")
    print(line("all", rows))
    print(line("not missed", [r for r in rows if float(r["dice"]) >= MISSED_DSC]))
    if len(sys.argv) < 4:
        return 0
    entries = {Path(e["image"]).name: e for e in json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))[sys.argv[3]]}

    def where(test: Callable[[dict], bool]) -> list[Row]:
        return [r for r in rows if test(entries[Path(r["case"]).name])]

    for name, low, high in (("finest spacing 0.4-0.6 mm", 0.0, 0.6), ("0.6-0.8 mm", 0.6, 0.8), ("0.8-1.2 mm", 0.8, 9.0)):
        print(line(name, where(lambda e: low <= min(e["spacing_mm"]) < high)))
    print(line("anisotropic, > 1:1.3", where(lambda e: max(e["spacing_mm"]) / min(e["spacing_mm"]) > 1.3)))
    for name, low, high in (("14-20 weeks", 14, 20), ("20-28 weeks", 20, 28), ("28-40 weeks", 28, 41)):
        print(line(name, where(lambda e: low <= e["ga_weeks"] < high)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
