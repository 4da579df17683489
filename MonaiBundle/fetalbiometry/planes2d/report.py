"""The comparison tables of docs/biometry.md: our networks' test figures beside the published ones.

Each network's ``evaluating`` run (``configs/biometry/evaluate.json``) writes a ``summary.json``
(:func:`fetalbiometry.planes2d.evaluation.summarize_planes`); this module puts them in one markdown
table, mean ± SD, followed by the published HC18 figures of :data:`PUBLISHED_HC18`::

    python -m fetalbiometry.planes2d.report MTLN=MonaiBundle/runs/biometry/mtln/evaluation/summary.json \\
        U-Net=MonaiBundle/runs/biometry/unet/evaluation/summary.json

A summary over several planes (the multi-task U-Net on head, abdomen and femur planes) is also
given plane by plane, with the plane classification accuracy, since HC, AC and FL errors do not
pool.

``--paired NAME`` adds the frame-by-frame change of every other network against the one named
(:func:`paired_table`), from the ``per_image.csv`` beside each ``summary.json``: two networks on
the same frames differ by less than either's spread over them, so their means alone do not say
which is better.

``--by-trimester`` adds each network's head figures trimester by trimester
(:func:`fetalbiometry.planes2d.evaluation.summarize_by_trimester`), with the ADF relative to the HC
and the number of frames that had a second look (``head_crop``).

``--plane PLANE`` keeps only the frames of that reference plane in every table, their figures
summarised again from ``per_image.csv``: the multi-task U-Net trained on HC18 with synthetic
abdomens and femurs (``multitask_unet_hc18.json``) is tested on both, and only its HC18 heads
compare with the head networks.

``--looked-at-once-by NAME`` (or ``--looked-at-twice-by NAME``) keeps, in every table, only the
frames that network's evaluation saw without (or with) a second look (``head_crop``): the heads too
large for the shipped second look, where a change aimed at them must show.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fetalbiometry.biometry.planes import PLANE_CLASSES
from fetalbiometry.paired import paired_change
from fetalbiometry.planes2d.evaluation import (
    PUBLISHED_HC18,
    PlaneResult,
    read_evaluation,
    summarize_by_trimester,
    summarize_planes,
)

__all__ = ["comparison_table", "main", "paired_table", "per_image_figures", "plane_table", "trimester_table"]

_COLUMNS = (("dsc_percent", "DSC (%)"), ("df_mm", "DF (mm)"), ("adf_mm", "ADF (mm)"), ("hd_mm", "HD (mm)"))


def _cell(figure: Mapping[str, float] | None) -> str:
    return "–" if figure is None else f"{figure['mean']:.2f} ± {figure['sd']:.2f}"


def comparison_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table: one row per summary (name → ``summary.json`` content), then the published rows.

    Our rows also give the number of frames measured, the worst ADF and the frames without a measurement;
    a row whose network was trained on some of its frames says so.
    """
    header = "| network | frames measured | " + " | ".join(title for _, title in _COLUMNS) + " | worst ADF (mm) |"
    lines = [header, "|" + "---|" * (len(_COLUMNS) + 3)]
    for name, summary in summaries.items():
        worst = summary["adf_mm"]["max"] if summary["adf_mm"] else None
        cells = " | ".join(_cell(summary[key]) for key, _ in _COLUMNS)
        worst_cell = "–" if worst is None else f"{worst:.2f}"
        seen = summary.get("seen_in_training")
        label = f"{name} ({seen} frames seen in training: a fit)" if seen else name
        lines.append(f"| {label} | {summary['measured']} / {summary['images']} | {cells} | {worst_cell} |")
    for name, figures in PUBLISHED_HC18.items():
        cells = " | ".join(f"{figures[key]:.2f}" if key in figures else "–" for key, _ in _COLUMNS)
        lines.append(f"| {name}, as reported | – | {cells} | – |")
    return "\n".join(lines) + "\n"


def plane_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table with one row per network and reference plane, and each row's plane accuracy."""
    header = "| network | plane | frames measured | plane accuracy (%) | " + " | ".join(title for _, title in _COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(_COLUMNS) + 4)]
    for name, summary in summaries.items():
        for plane, figures in summary["planes"].items():
            cells = " | ".join(_cell(figures[key]) for key, _ in _COLUMNS)
            accuracy = 100.0 * figures["plane_accuracy"]
            lines.append(f"| {name} | {plane} | {figures['measured']} / {figures['images']} | {accuracy:.1f} | {cells} |")
    return "\n".join(lines) + "\n"


def trimester_table(by_trimester: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """A markdown table with one row per network and trimester (name → :func:`summarize_by_trimester`)."""
    columns = (*_COLUMNS, ("relative_adf_percent", "ADF / HC (%)"))
    titles = " | ".join(title for _, title in columns)
    header = f"| network | trimester | frames measured | second looks | {titles} |"
    lines = [header, "|" + "---|" * (len(columns) + 4)]
    for name, trimesters in by_trimester.items():
        for trimester, figures in trimesters.items():
            cells = " | ".join(_cell(figures[key]) for key, _ in columns)
            counts = f"{figures['measured']} / {figures['images']} | {figures['second_looks']}"
            lines.append(f"| {name} | {trimester} | {counts} | {cells} |")
    return "\n".join(lines) + "\n"


def per_image_figures(results: Sequence[PlaneResult]) -> dict[str, dict[str, float]]:
    """``{figure: {frame: value}}`` of the frames that have the figure (an evaluation's ``per_image.csv``)."""
    return {
        key: {result.name: getattr(result, key) for result in results if getattr(result, key) is not None}
        for key, _ in _COLUMNS
    }


def paired_table(per_image: Mapping[str, Mapping[str, Mapping[str, float]]], base: str) -> str:
    """A markdown table of each network's change against ``base`` on the frames both measured.

    Args:
        per_image: network name → :func:`per_image_figures`.
        base: the name of the network the others are compared with.

    Each cell is the mean ± SD of ``network − base``, the frames where it is higher and the Wilcoxon
    signed-rank p (:class:`~fetalbiometry.paired.PairedChange`); "–" where either gives no such figure.
    """
    changes = " | ".join(f"Δ{title}" for _, title in _COLUMNS)
    header = f"| network, change vs {base} | frames measured by both | {changes} |"
    lines = [header, "|" + "---|" * (len(_COLUMNS) + 2)]
    for name, figures in per_image.items():
        if name == base:
            continue
        cells, frames = [], set(per_image[base]["adf_mm"]) & set(figures["adf_mm"])
        for key, _ in _COLUMNS:
            shared = set(figures[key]) & set(per_image[base][key])
            cells.append(paired_change(figures[key], per_image[base][key]).describe() if shared else "–")
        lines.append(f"| {name} | {len(frames)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _named_path(text: str) -> tuple[str, Path]:
    name, separator, path = text.rpartition("=")  # a name may hold "=" ("λ = 0.1"); a path seldom does
    if not separator or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH/summary.json, got {text!r}")
    return name, Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fetalbiometry.planes2d.report", description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="+", type=_named_path, metavar="NAME=SUMMARY_JSON")
    parser.add_argument("--paired", metavar="NAME", help="also compare every network with this one, frame by frame")
    parser.add_argument("--by-trimester", action="store_true", help="also give the head figures trimester by trimester")
    parser.add_argument("--plane", choices=PLANE_CLASSES, help="only the frames of this reference plane, every table")
    looks = parser.add_mutually_exclusive_group()
    looks.add_argument("--looked-at-once-by", metavar="NAME", help="only the frames NAME saw without a second look")
    looks.add_argument("--looked-at-twice-by", metavar="NAME", help="only the frames NAME saw with a second look")
    args = parser.parse_args(argv)
    names = [name for name, _ in args.summaries]
    looks_of, second_look = args.looked_at_twice_by or args.looked_at_once_by, args.looked_at_twice_by is not None
    looks_option = "--looked-at-twice-by" if second_look else "--looked-at-once-by"
    for option, value in (("--paired", args.paired), (looks_option, looks_of)):
        if value is not None and value not in names:
            parser.error(f"{option} {value!r} is not one of the networks: {', '.join(names)}")
    summaries, results_of = {}, {}
    reads_frames = args.paired is not None or args.by_trimester or args.plane is not None or looks_of is not None
    for name, path in args.summaries:
        try:
            summaries[name] = json.loads(path.read_text(encoding="utf-8"))
            results = read_evaluation(path.with_name("per_image.csv")) if reads_frames else []  # one read, every table
        except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
            print(f"plane_report: cannot read {path}: {error}", file=sys.stderr)
            return 1
        if args.plane is not None:
            results = [result for result in results if result.plane == args.plane]
            if not results:
                print(f"plane_report: {path.with_name('per_image.csv')} has no {args.plane} frames", file=sys.stderr)
                return 1
            summaries[name] = summarize_planes(results)
        results_of[name] = results
    if looks_of is not None:
        kept = {result.name for result in results_of[looks_of] if result.second_look == second_look}
        if not kept:
            print(f"plane_report: {looks_of} looked {'twice' if second_look else 'once'} at no frame", file=sys.stderr)
            return 1
        results_of = {name: [result for result in results if result.name in kept]
                      for name, results in results_of.items()}
        summaries = {name: summarize_planes(results) for name, results in results_of.items()}
    per_image = {name: per_image_figures(results) for name, results in results_of.items()}
    by_trimester = {name: summarize_by_trimester(results) for name, results in results_of.items()}
    print(comparison_table(summaries), end="")
    if args.paired is not None:
        print()
        print(paired_table(per_image, args.paired), end="")
    if args.by_trimester:
        print()
        print(trimester_table(by_trimester), end="")
    several_planes = {name: summary for name, summary in summaries.items() if len(summary.get("planes", {})) > 1}
    if several_planes:
        print()
        print(plane_table(several_planes), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
