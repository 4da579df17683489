"""The ``fetalbiometry`` command line: argument parsing only.

Each subcommand is a thin shell over a module of the package. Heavy modules (torch, MONAI)
are imported inside the handlers so that ``fetalbiometry ga`` answers at once.

Bad input raises :class:`~fetalbiometry.errors.FetalBiometryError`; :func:`main` prints its
message as one line on stderr and returns 1, with no traceback. Any other exception is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fetalbiometry.errors import FetalBiometryError, InputError
from fetalbiometry.study.command import add_arguments as add_study_arguments

PROG = "fetalbiometry"


def _print_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True))


def _print_table(rows: dict[str, Any]) -> None:
    width = max(len(key) for key in rows)
    for key, value in rows.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {text}")


def _refuse_overwriting_input(output: Path, *inputs: Path) -> None:
    """Never write over an input file: outputs go elsewhere."""
    for source in inputs:
        if output.exists() and source.exists() and output.resolve() == source.resolve():
            raise InputError(f"output {output} is the input file; choose another output path")


# --- evaluate / volume -------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fetalbiometry.io import read_image
    from fetalbiometry.metrics import evaluate_images

    pred = read_image(args.pred)
    ref = read_image(args.ref)
    result = evaluate_images(pred, ref, names=(str(args.pred), str(args.ref)), hd_percentile=args.percentile)
    (_print_json if args.json else _print_table)(result.as_dict())
    return 0


def cmd_volume(args: argparse.Namespace) -> int:
    from fetalbiometry.io import read_image
    from fetalbiometry.metrics import label_volume_ml

    volume = label_volume_ml(read_image(args.label), label_value=args.label_value)
    if args.json:
        _print_json({"volume_ml": volume})
    else:
        print(f"volume: {volume:.2f} mL")
    return 0


# --- segment / study -----------------------------------------------------------------------


def cmd_segment(args: argparse.Namespace) -> int:
    from fetalbiometry.inference import Segmenter
    from fetalbiometry.io import read_image, write_image
    from fetalbiometry.metrics import label_volume_ml

    _refuse_overwriting_input(args.output, args.input)
    image = read_image(args.input)
    print(f"loading model ({args.model or 'shipped bundle model'}, device {args.device})", flush=True)
    segmenter = Segmenter.from_bundle(args.model, args.device)
    print(f"segmenting {args.input} on {segmenter.device}", flush=True)
    label = segmenter.segment(image)
    write_image(label, args.output)
    print(f"wrote {args.output}")
    print(f"head volume: {label_volume_ml(label):.2f} mL")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from fetalbiometry.study.command import run

    return run(args)


# --- synth ----------------------------------------------------------------------------------


def cmd_synth(args: argparse.Namespace) -> int:
    from fetalbiometry.data.synthetic import write_phantoms

    records = write_phantoms(args.outdir, dim=int(args.dim[0]), n=args.n, seed=args.seed, rescans=args.rescans)
    print(f"wrote {len(records)} phantom(s) to {args.outdir}")
    return 0


# --- ga -------------------------------------------------------------------------------------


def gestational_age_report(
    hc_mm: float, ac_mm: float | None, fl_mm: float | None, bpd_mm: float | None, ga_weeks: float | None
) -> dict[str, float]:
    """Every GA estimate, EFW and centile that the given measurements allow."""
    from fetalbiometry.biometry import growth

    report: dict[str, float] = {
        "ga_weeks_hadlock_hc": float(growth.ga_hadlock_hc(hc_mm)),
        "ga_weeks_intergrowth_hc": float(growth.ga_intergrowth_hc(hc_mm)),
    }
    measurements = {"hc": hc_mm, "ac": ac_mm, "fl": fl_mm, "bpd": bpd_mm}
    hadlock = {"ac": growth.ga_hadlock_ac, "fl": growth.ga_hadlock_fl, "bpd": growth.ga_hadlock_bpd}
    for name, estimate in hadlock.items():
        if measurements[name] is not None:
            report[f"ga_weeks_hadlock_{name}"] = float(estimate(measurements[name]))
    if ac_mm is not None and fl_mm is not None:
        report["efw_g_hadlock"] = float(growth.efw_hadlock(hc_mm, ac_mm, fl_mm))
    if ga_weeks is not None:
        for name, value in measurements.items():
            if value is not None:
                report[f"zscore_{name}"] = float(growth.intergrowth_zscore(name, value, ga_weeks))
                report[f"centile_{name}"] = float(growth.intergrowth_centile(name, value, ga_weeks))
    return report


def cmd_ga(args: argparse.Namespace) -> int:
    report = gestational_age_report(args.hc, args.ac, args.fl, args.bpd, args.ga_weeks)
    (_print_json if args.json else _print_table)(report)
    return 0


# --- parser ---------------------------------------------------------------------------------


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None, help="weights (default: the bundle's shipped model)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: GPU if any")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Fetal head segmentation and biometry in ultrasound.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("evaluate", help="DSC, Jaccard, conformity, Adb, Hdb (mm) and volumes (mL) of two labels")
    p.add_argument("pred", type=Path, help="predicted label image")
    p.add_argument("ref", type=Path, help="reference label image on the same grid")
    p.add_argument("--percentile", type=float, default=None, help="Hausdorff percentile (default: maximum)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("volume", help="volume of a label image in mL")
    p.add_argument("label", type=Path)
    p.add_argument("--label-value", type=int, default=None, help="count only this value (default: all > 0)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_volume)

    p = sub.add_parser("segment", help="segment the whole fetal head in a 3D volume")
    p.add_argument("input", type=Path, help="3D ultrasound volume (NIfTI, NRRD, MetaImage or DICOM folder)")
    p.add_argument("output", type=Path, help="label file to write, on exactly the input's grid")
    _add_model_arguments(p)
    p.set_defaults(handler=cmd_segment)

    p = sub.add_parser("study", help="volumetric reproducibility and agreement study over a manifest")
    add_study_arguments(p)
    p.set_defaults(handler=cmd_study)

    p = sub.add_parser("synth", help="write synthetic phantoms with ground truth")
    p.add_argument("dim", choices=["3d", "2d"])
    p.add_argument("outdir", type=Path)
    p.add_argument("-n", type=int, default=4, help="number of subjects (3d) or planes (2d)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rescans", type=int, default=1, help="3d: scans per subject from different probe directions")
    p.set_defaults(handler=cmd_synth)

    p = sub.add_parser("ga", help="gestational age (Hadlock, INTERGROWTH-21st), EFW and centiles")
    p.add_argument("--hc", type=float, required=True, help="head circumference, mm")
    p.add_argument("--ac", type=float, default=None, help="abdominal circumference, mm")
    p.add_argument("--fl", type=float, default=None, help="femur length, mm")
    p.add_argument("--bpd", type=float, default=None, help="biparietal diameter, mm")
    p.add_argument("--ga-weeks", type=float, default=None, help="known GA for INTERGROWTH-21st centiles")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_ga)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    # SimpleITK's SWIG wrapper emits this DeprecationWarning at interpreter exit; it is not ours
    # to fix, and it would add a stray line to the stderr of every run.
    warnings.filterwarnings("ignore", message="builtin type swig", category=DeprecationWarning)
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except FetalBiometryError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
