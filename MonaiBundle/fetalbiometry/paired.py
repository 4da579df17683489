"""Paired comparison of two models on the same cases: the change of one figure, case by case.

Two networks tested on the same phantoms or frames differ by less than either's spread over the
cases, so the tables of docs/segmentation.md and docs/biometry.md compare them case by case: the
mean and SD of the differences, how many cases went up and down, and the two-sided Wilcoxon
signed-rank test of the differences (scipy's ``wilcoxon``; F. Wilcoxon, "Individual comparisons by
ranking methods", Biometrics Bulletin 1(6), 1945), which assumes no normal distribution of them.

The p treats the two trained networks as given: it says whether one is better than the other on
these cases, not whether training it again would give the same difference (docs/segmentation.md
measures that separately, with repeat seeds).

Any two evaluations' per-case files can be compared from the command line: a 3D evaluation's
``metrics.csv`` (cases in the ``case`` column) or a 2D one's ``per_image.csv`` (``name``)::

    python -m fetalbiometry.paired --metric dice --scale 100 \
        out/table1-e30-cos/USegNet-DS/evaluation/metrics.csv out/table1-e30-cos-seed1/USegNet-DS/evaluation/metrics.csv

Files joined by commas are several trainings of one model (repeat seeds): each case's value is
their mean (:func:`mean_per_case`), so the comparison is between the models' seed means, case by
case. Its p still treats those trainings as given.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.stats import wilcoxon

__all__ = ["CASE_COLUMNS", "PairedChange", "main", "mean_per_case", "paired_change", "read_per_case"]

CASE_COLUMNS = ("case", "name")
"""The column that names the case: ``case`` in a 3D ``metrics.csv``, ``name`` in a 2D ``per_image.csv``."""


class PairedChange(NamedTuple):
    """The change of a figure from a base model to a network, over the cases both were tested on.

    Args:
        mean: mean of ``network − base``.
        sd: SD of the differences (ddof 1); NaN for one case.
        higher: cases where the network's value is higher.
        lower: cases where it is lower.
        count: cases compared.
        p_value: two-sided Wilcoxon signed-rank p of the differences (ties at zero dropped); NaN
            when no case differs or a difference is not finite.
    """

    mean: float
    sd: float
    higher: int
    lower: int
    count: int
    p_value: float

    def describe(self, scale: float = 1.0, decimals: int = 2) -> str:
        """The change as a table cell, e.g. ``-0.24 ± 0.80 (8/20 higher, p 0.31)``, values × ``scale``.

        A change that is not finite (a missed head's infinite distance) has no mean, SD or p: the
        cell is ``– (20/20 higher, a case is not finite)``.
        """
        if not math.isfinite(self.mean):
            return f"– ({self.higher}/{self.count} higher, a case is not finite)"
        p_value = "p –" if math.isnan(self.p_value) else f"p {self.p_value:.2g}"
        return (
            f"{self.mean * scale:+.{decimals}f} ± {self.sd * scale:.{decimals}f} "
            f"({self.higher}/{self.count} higher, {p_value})"
        )


def paired_change(values: Mapping[str, float], base: Mapping[str, float]) -> PairedChange:
    """The change of a figure against the base model on the cases both have a value for.

    Args:
        values: ``{case: value}`` of the network.
        base: the same for the base model.

    Returns:
        The :class:`PairedChange`. Where a distance is infinite (a missed head), the mean is infinite
        or NaN and the SD and p are NaN.

    Raises:
        ValueError: the two share no case.
    """
    shared = sorted(set(values) & set(base))
    if not shared:
        raise ValueError("the network and the base model share no test case.")
    differences = np.array([values[name] - base[name] for name in shared], dtype=np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf inside the SD of a missed head: NaN, as documented
        sd = float(differences.std(ddof=1)) if len(differences) > 1 else math.nan
    testable = np.isfinite(differences).all() and np.any(differences != 0)
    p_value = float(wilcoxon(differences).pvalue) if testable else math.nan
    return PairedChange(
        float(differences.mean()), sd, int((differences > 0).sum()), int((differences < 0).sum()), len(shared), p_value
    )


def read_per_case(path: str | Path, metric: str) -> dict[str, float]:
    """``{case: value}`` of one column of a per-case CSV; empty cells (a frame not measured) are left out.

    Args:
        path: an evaluation's ``metrics.csv`` (3D) or ``per_image.csv`` (2D).
        metric: the column, e.g. ``dice`` or ``adf_mm``.

    Raises:
        OSError: the file cannot be read.
        ValueError: no case column (:data:`CASE_COLUMNS`), no ``metric`` column, or a value that is
            not a number.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        key = next((column for column in CASE_COLUMNS if column in columns), None)
        if key is None:
            raise ValueError(f"{path} has no column naming the cases ({' or '.join(CASE_COLUMNS)})")
        if metric not in columns:
            raise ValueError(f"{path} has no column {metric!r}; it has {', '.join(columns)}")
        try:
            return {row[key]: float(row[metric]) for row in reader if row[metric]}
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


def mean_per_case(paths: Sequence[str | Path], metric: str) -> dict[str, float]:
    """``{case: mean value}`` of one column over several per-case CSVs (:func:`read_per_case`).

    Only the cases that every file has a value for are kept, so each mean is over all the files.

    Raises:
        OSError: a file cannot be read.
        ValueError: as :func:`read_per_case`, or no case is in every file.
    """
    runs = [read_per_case(path, metric) for path in paths]
    shared = sorted(set.intersection(*(set(run) for run in runs)))
    if not shared:
        raise ValueError(f"no case has a {metric!r} value in every one of {', '.join(map(str, paths))}")
    return {case: float(np.mean([run[case] for run in runs])) for case in shared}


def _runs(text: str) -> list[Path]:
    return [Path(path) for path in text.split(",")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fetalbiometry.paired", description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the base model's per-case CSV, or several trainings' joined by commas")
    parser.add_argument(
        "others", nargs="+", metavar="OTHER", help="per-case CSVs (or comma-joined runs) compared with the base"
    )
    parser.add_argument("--metric", required=True, help="the column to compare, e.g. dice, adb_mm, adf_mm")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the changes, e.g. 100 for a Dice in points")
    parser.add_argument("--decimals", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        base = mean_per_case(_runs(args.base), args.metric)
        lines = [f"| per-case file | Δ{args.metric} vs {args.base} |", "|---|---|"]
        for other in args.others:
            change = paired_change(mean_per_case(_runs(other), args.metric), base)
            lines.append(f"| {other} | {change.describe(args.scale, args.decimals)} |")
    except (OSError, ValueError) as error:
        print(f"paired: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
