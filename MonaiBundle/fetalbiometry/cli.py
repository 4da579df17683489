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
import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

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
    from fetalbiometry.segment3d.segmenter import Segmenter
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


# --- hc / measure (2D standard planes) ----------------------------------------------------


def cmd_hc(args: argparse.Namespace) -> int:
    """Exit status 0 when every image was processed (measured, or reported without a
    measurement), 1 when some image could not be read; the CSV is written in both cases."""
    from fetalbiometry.data.hc18 import read_pixel_sizes, write_submission
    from fetalbiometry.planes2d.commands import measure_hc_folder

    _refuse_overwriting_input(args.out, args.pixel_size_csv)
    pixel_sizes = read_pixel_sizes(args.pixel_size_csv)
    from fetalbiometry.planes2d.predictor import load_plane_predictor  # PyTorch: only once the input is known good

    predictor = load_plane_predictor(args.model, args.network_config, args.device, plane="head")
    batch = measure_hc_folder(predictor, args.images_dir, pixel_sizes, args.overlays)
    write_submission(args.out, batch.ellipses_mm)
    for line in batch.problem_lines():
        print(line, file=sys.stderr)
    print(f"wrote {args.out}")
    print(batch.summary())
    return batch.exit_code


def cmd_measure(args: argparse.Namespace) -> int:
    """Exit status 0 with a measurement, 2 without one (the output says why), 1 on bad input."""
    from fetalbiometry.planes2d import commands as plane_commands

    if args.overlay is not None:
        plane_commands.check_overlay_path(args.overlay)
        _refuse_overwriting_input(args.overlay, args.image)
    image = plane_commands.read_plane_image(args.image, args.pixel_size)
    plane_commands.check_ga_weeks(args.ga)
    from fetalbiometry.planes2d.predictor import load_plane_predictor  # PyTorch: only once the input is known good

    overrides = {} if args.plane is None else {"plane": args.plane}
    predictor = load_plane_predictor(args.model, args.network_config, args.device, **overrides)
    result = plane_commands.measure_frame(predictor, image.pixels, image.pixel_size_mm)
    if args.overlay is not None and result.measurement is not None:
        plane_commands.write_overlay(args.overlay, image.pixels, result.measurement)
    report = plane_commands.plane_report(result, args.ga)
    if args.json:
        _print_json(report)
    else:
        print(plane_commands.format_report(report))
    return 0 if result.measurement is not None else plane_commands.NO_MEASUREMENT_EXIT_CODE


# --- synth ----------------------------------------------------------------------------------


def cmd_synth(args: argparse.Namespace) -> int:
    from fetalbiometry.data.synthetic import write_phantoms

    records = write_phantoms(args.outdir, dim=int(args.dim[0]), n=args.n, seed=args.seed, rescans=args.rescans)
    print(f"wrote {len(records)} phantom(s) to {args.outdir}")
    return 0


# --- ga -------------------------------------------------------------------------------------


def cmd_ga(args: argparse.Namespace) -> int:
    from fetalbiometry.biometry.growth import gestational_age_report

    report = gestational_age_report(args.hc, args.ac, args.fl, args.bpd, args.ga_weeks)
    (_print_json if args.json else _print_table)(report)
    return 0


# --- parser: one function per command -------------------------------------------------------

#: What ``add_subparsers`` returns: each ``add_*_parser`` adds its command to it.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_STATUS = """exit status:
  0  done
  1  bad input (one line on stderr: 'fetalbiometry: error: ...'), or a file of a batch failed
  2  measure: no trustworthy measurement (the output says why); also a usage error"""

EXAMPLES = """examples:
  fetalbiometry segment volume.nii.gz head.nii.gz
  fetalbiometry evaluate head.nii.gz reference.nii.gz --json
  fetalbiometry measure frame.png --pixel-size 0.12 --ga 22 --overlay overlay.png
  fetalbiometry hc test_set/ --pixel-size-csv test_set_pixel_size.csv --out submission.csv
  fetalbiometry study manifest.csv --out study/
  fetalbiometry ga --hc 250 --ac 230 --fl 48"""


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None, help="weights (default: the bundle's shipped model)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: GPU if any")


def _add_plane_model_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_arguments(parser)
    parser.add_argument(
        "--network-config",
        default="mtln.json",  # planes2d.predictor.SHIPPED_PLANE_NETWORK, not imported here: it needs PyTorch
        help="the 2D network's config: a file name in configs/biometry or a path (default: mtln.json)",
    )


def add_segment_parser(commands: Commands) -> None:
    """``segment INPUT OUTPUT``: the whole fetal head of a 3D volume, as a label on the input's grid."""
    parser = commands.add_parser(
        "segment",
        help="segment the whole fetal head in a 3D volume",
        description="Segment the whole fetal head in a 3D ultrasound volume with the bundle's network and "
        "write a label (1 = head) on exactly the input's grid; print the head volume in mL.",
    )
    parser.add_argument("input", type=Path, help="3D ultrasound volume (NIfTI, NRRD, MetaImage or DICOM folder)")
    parser.add_argument("output", type=Path, help="label file to write, on exactly the input's grid")
    _add_model_arguments(parser)
    parser.set_defaults(handler=cmd_segment)


def add_evaluate_parser(commands: Commands) -> None:
    """``evaluate PRED REF``: overlap and boundary distances of two labels on one grid."""
    parser = commands.add_parser(
        "evaluate", help="DSC, Jaccard, conformity, Adb, Hdb (mm) and volumes (mL) of two labels"
    )
    parser.add_argument("pred", type=Path, help="predicted label image")
    parser.add_argument("ref", type=Path, help="reference label image on the same grid")
    parser.add_argument("--percentile", type=float, default=None, help="Hausdorff percentile (default: maximum)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=cmd_evaluate)


def add_volume_parser(commands: Commands) -> None:
    """``volume LABEL``: the volume of a label in mL."""
    parser = commands.add_parser("volume", help="volume of a label image in mL")
    parser.add_argument("label", type=Path)
    parser.add_argument("--label-value", type=int, default=None, help="count only this value (default: all > 0)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=cmd_volume)


def add_study_parser(commands: Commands) -> None:
    """``study MANIFEST --out DIR``: volumetric reproducibility and agreement over many volumes."""
    parser = commands.add_parser("study", help="volumetric reproducibility and agreement study over a manifest")
    add_study_arguments(parser)
    parser.set_defaults(handler=cmd_study)


def add_measure_parser(commands: Commands) -> None:
    """``measure IMAGE``: HC, AC or FL of one 2D standard plane, with gestational age and centile."""
    parser = commands.add_parser(
        "measure",
        help="HC, AC or FL of one 2D standard plane, with gestational age and centile",
        description="Measure one standard plane: HC (with BPD, OFD), AC or FL, the fitted ellipse or femur "
        "end points (mm, HC18 convention), Hadlock and INTERGROWTH-21st gestational age and, with --ga, the "
        "INTERGROWTH-21st centile. Exit status: 0 with a measurement; 2 when there is no trustworthy "
        "measurement ('no measurement: REASON', or JSON {plane, no_measurement}); 1 on bad input.",
    )
    parser.add_argument(
        "image", type=Path, help="PNG/JPEG frame, or a 2D (single-slice) NRRD, NIfTI, MetaImage or DICOM image"
    )
    parser.add_argument(
        "--pixel-size",
        type=float,
        default=None,
        help="pixel size in mm (required for PNG/JPEG; default: the file's spacing)",
    )
    parser.add_argument("--ga", type=float, default=None, help="gestational age in weeks (14-40) for the centile")
    parser.add_argument(
        "--plane",
        choices=["head", "abdomen", "femur"],
        default=None,
        help="the plane, for networks without a plane classifier (default: the network config's)",
    )
    parser.add_argument("--overlay", type=Path, default=None, help="PNG to draw the measurement on (when there is one)")
    parser.add_argument("--json", action="store_true", help="print JSON (the keys the Slicer module reads)")
    _add_plane_model_arguments(parser)
    parser.set_defaults(handler=cmd_measure)


def add_hc_parser(commands: Commands) -> None:
    """``hc IMAGES_DIR --pixel-size-csv CSV --out CSV``: HC18's submission CSV for a folder of frames."""
    parser = commands.add_parser(
        "hc",
        help="head circumference of every HC18 frame of a folder, as the challenge's submission CSV",
        description="Fit the head ellipse of every image listed in an HC18 pixel-size CSV and write the "
        "submission CSV (filename, center_x_mm, center_y_mm, semi_axes_a_mm, semi_axes_b_mm, angle_rad). "
        "An image without a trustworthy measurement, or that cannot be read, keeps an empty row and is "
        "reported on stderr. Exit status: 0 when every image was processed (measured or not), 1 when "
        "some image could not be read or on bad input.",
    )
    parser.add_argument("images_dir", type=Path, help="folder of the images (e.g. HC18 test_set/)")
    parser.add_argument(
        "--pixel-size-csv",
        type=Path,
        required=True,
        help="CSV 'filename,pixel size(mm)' (HC18 test or training layout)",
    )
    parser.add_argument("--out", type=Path, required=True, help="submission CSV to write")
    parser.add_argument(
        "--overlays", type=Path, default=None, help="folder for one <name>_overlay.png per measured image"
    )
    _add_plane_model_arguments(parser)
    parser.set_defaults(handler=cmd_hc)


def add_ga_parser(commands: Commands) -> None:
    """``ga --hc MM [...]``: gestational age, EFW and centiles from biometry in mm."""
    parser = commands.add_parser("ga", help="gestational age (Hadlock, INTERGROWTH-21st), EFW and centiles")
    parser.add_argument("--hc", type=float, required=True, help="head circumference, mm")
    parser.add_argument("--ac", type=float, default=None, help="abdominal circumference, mm")
    parser.add_argument("--fl", type=float, default=None, help="femur length, mm")
    parser.add_argument("--bpd", type=float, default=None, help="biparietal diameter, mm")
    parser.add_argument("--ga-weeks", type=float, default=None, help="known GA for INTERGROWTH-21st centiles")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=cmd_ga)


def add_synth_parser(commands: Commands) -> None:
    """``synth {3d,2d} OUTDIR``: synthetic phantoms with their ground truth."""
    parser = commands.add_parser("synth", help="write synthetic phantoms with ground truth")
    parser.add_argument("dim", choices=["3d", "2d"])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("-n", type=int, default=4, help="number of subjects (3d) or planes (2d)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rescans", type=int, default=1, help="3d: scans per subject from different probe directions")
    parser.set_defaults(handler=cmd_synth)


#: The commands in the order ``--help`` lists them: 3D volumes, 2D planes, then tools.
COMMAND_PARSERS: tuple[Callable[[Commands], None], ...] = (
    add_segment_parser,
    add_evaluate_parser,
    add_volume_parser,
    add_study_parser,
    add_measure_parser,
    add_hc_parser,
    add_ga_parser,
    add_synth_parser,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``fetalbiometry`` parser: a summary of every command, its exit status and examples."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=textwrap.fill(
            "Fetal head segmentation and biometry in ultrasound: the whole fetal head in 3D volumes "
            "(volume in mL, agreement with a reference, reproducibility studies) and HC, AC and FL in 2D "
            "standard planes, with gestational age and centiles. 'fetalbiometry COMMAND --help' gives "
            "each command's options.",
            width=88,
        ),
        epilog=f"{EXIT_STATUS}\n\n{EXAMPLES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for add_parser in COMMAND_PARSERS:
        add_parser(commands)
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
