"""The study's command line: ``python -m fetalbiometry.study`` and ``torchrun ... -m fetalbiometry.study``.

Bad input prints one line on stderr and exits 1 (no traceback), like the ``fetalbiometry`` command.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from typing import TYPE_CHECKING

from fetalbiometry.errors import FetalBiometryError

if TYPE_CHECKING:
    from fetalbiometry.study.summary import StudySummary

PROG = "python -m fetalbiometry.study"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The study's arguments, shared by this entry point and ``fetalbiometry study``."""
    parser.add_argument("manifest", type=Path, help="CSV with subject,image[,reference][,expert_volume_ml]")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the bundle's shipped model)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--resume", action="store_true", help="keep the finished volumes of an earlier run in --out")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Segment every volume of a manifest; report head-volume reproducibility per subject "
        "and agreement with expert volumes and reference labels.",
    )
    add_arguments(parser)
    return parser


def print_summary(summary: StudySummary, out_dir: Path) -> None:
    """Print the study's headline numbers, one per line, and where the report is."""
    repro, agreement = summary.reproducibility, summary.expert_bland_altman
    print(f"volumes: {summary.n_ok} ok, {summary.n_failed} failed or flagged; subjects: {summary.n_subjects}")
    if repro.mean_sd is not None:
        print(
            f"per-subject SD of volume (ddof=1) over {repro.n_subjects} subjects: "
            f"mean {repro.mean_sd:.3f} mL, min {repro.min_sd:.3f} mL, max {repro.max_sd:.3f} mL"
        )
    if agreement is not None:
        r = "n/a" if summary.expert_pearson_r is None else f"{summary.expert_pearson_r:.3f}"
        print(
            f"vs expert (n={agreement.n}): r = {r}; bias (ours - expert) {agreement.bias:+.2f} mL, "
            f"95% limits {agreement.lower:+.2f} to {agreement.upper:+.2f} mL"
        )
    for name, stats in summary.reference_metrics.items():
        if stats["mean"] is not None:
            sd = "" if stats["sd"] is None else f" ± {stats['sd']:.4f}"
            print(f"vs reference {name}: {stats['mean']:.4f}{sd} (n={stats['n']})")
    print(f"report: {out_dir / 'report.html'}")


def run(args: argparse.Namespace) -> int:
    """Run the study that ``args`` (from :func:`add_arguments`) describe; bad input raises."""
    from fetalbiometry.study.distributed import Shard
    from fetalbiometry.study.pipeline import run_study

    summary = run_study(args.manifest, args.out, model_path=args.model, device=args.device, resume=args.resume)
    if Shard.from_environment().is_main:
        print_summary(summary, args.out)
    if summary.n_volumes and not summary.n_ok:
        raise FetalBiometryError(
            f"no volume of the study gave a head volume ({summary.n_failed} failed or flagged); "
            f"the reasons are in {args.out / 'volumes.csv'}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run a study from the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except FetalBiometryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
