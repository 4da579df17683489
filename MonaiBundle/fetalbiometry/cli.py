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
import math
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from fetalbiometry.errors import NO_RESULT_EXIT_CODE, FetalBiometryError, InputError
from fetalbiometry.study.command import add_arguments as add_study_arguments

PROG = "fetalbiometry"


def _strict(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def _print_json(payload: dict[str, Any]) -> None:
    """Print strict JSON: ``null`` where a number is NaN or infinite, never ``Infinity``."""
    print(json.dumps(_strict(payload), indent=2, sort_keys=True, allow_nan=False))


def _print_table(rows: dict[str, Any]) -> None:
    width = max(len(key) for key in rows)
    for key, value in rows.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {text}")


def _refuse_overwriting_input(outputs: Path | Sequence[Path], *inputs: Path | None) -> None:
    """Never write over any part of an input: a file, a MetaImage data file, a series folder, a model."""
    from fetalbiometry.io import refuse_overwriting

    refuse_overwriting([outputs] if isinstance(outputs, Path) else outputs, [p for p in inputs if p is not None])


# --- evaluate / volume -------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fetalbiometry.io import read_image
    from fetalbiometry.metrics import check_label_image, evaluate_images

    pred = read_image(args.pred)
    ref = read_image(args.ref)
    check_label_image(pred, str(args.pred))
    check_label_image(ref, str(args.ref))
    result = evaluate_images(pred, ref, names=(str(args.pred), str(args.ref)), hd_percentile=args.percentile)
    (_print_json if args.json else _print_table)(result.as_dict())
    return 0


def cmd_volume(args: argparse.Namespace) -> int:
    from fetalbiometry.io import read_image
    from fetalbiometry.metrics import check_label_image, label_volume_ml

    label = read_image(args.label)
    check_label_image(label, str(args.label))
    volume = label_volume_ml(label, label_value=args.label_value)
    if args.json:
        _print_json({"volume_ml": volume})
    else:
        print(f"volume: {volume:.2f} mL")
    return 0


# --- segment / study -----------------------------------------------------------------------


def cmd_segment(args: argparse.Namespace) -> int:
    from fetalbiometry.io import check_output_suffix, check_writable, read_image, refuse_replacing_folder, write_image
    from fetalbiometry.metrics import head_volume_flag, label_volume_ml
    from fetalbiometry.segment3d.inputs import check_segmentable, geometry_warnings

    check_output_suffix(args.output)
    if args.output.name.lower().endswith(".png"):
        raise InputError(f"output {args.output}: a PNG holds a 2D image, not a 3D label; use .nii.gz, .nrrd or .mha")
    _refuse_overwriting_input(args.output, args.input, args.model)
    refuse_replacing_folder(args.output, args.overwrite)
    check_writable(args.output)
    if args.model is not None:
        from fetalbiometry.weights import check_model_file

        check_model_file(args.model)
    image = read_image(args.input)
    check_segmentable(image, str(args.input))
    for warning in geometry_warnings(image):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    from fetalbiometry.segment3d.segmenter import Segmenter  # PyTorch: only once the input is known good

    print(f"loading model ({args.model or 'shipped bundle model'}, device {args.device})", flush=True)
    segmenter = Segmenter.from_bundle(args.model, args.device)
    working = " x ".join(f"{s:.2f}" for s in segmenter.model.target_spacing)
    given = " x ".join(f"{s:.2f}" for s in image.GetSpacing())
    print(f"working spacing: {working} mm (this volume: {given} mm)")
    print(f"segmenting {args.input} on {segmenter.device} ({segmenter.precision})", flush=True)
    label = segmenter.segment(image)
    write_image(label, args.output)
    print(f"wrote {args.output}")
    volume = label_volume_ml(label)
    flag = head_volume_flag(volume)
    if flag is not None:
        print(f"head volume: not reported: {flag}")
        return NO_RESULT_EXIT_CODE
    print(f"head volume: {volume:.2f} mL")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from fetalbiometry.study.command import run

    return run(args)


# --- hc / measure (2D standard planes) ----------------------------------------------------


def cmd_hc(args: argparse.Namespace) -> int:
    """Exit status 0 when every image was processed (measured, or flagged with a best-effort or
    placeholder ellipse), 1 when some image could not be read; both CSVs are written in both cases."""
    from fetalbiometry.data.hc18 import read_pixel_sizes, write_submission
    from fetalbiometry.io import check_writable
    from fetalbiometry.planes2d.commands import flags_path, measure_hc_folder, overlay_path, write_flags

    pixel_sizes = read_pixel_sizes(args.pixel_size_csv)
    frames = [args.images_dir / name for name in pixel_sizes]
    flags = flags_path(args.out) if args.flags_csv is None else args.flags_csv
    if flags.resolve() == args.out.resolve():
        raise InputError(f"--flags-csv {flags} is the submission CSV; choose another path")
    outputs = [args.out, flags]
    if args.overlays is not None:
        outputs += [overlay_path(args.overlays, name) for name in pixel_sizes]
    _refuse_overwriting_input(outputs, args.pixel_size_csv, args.model, *frames)
    check_writable(args.out)
    check_writable(flags)
    from fetalbiometry.planes2d.predictor import load_plane_predictor  # PyTorch: only once the input is known good

    predictor = load_plane_predictor(args.model, args.network_config, args.device, plane="head")
    batch = measure_hc_folder(predictor, args.images_dir, pixel_sizes, args.overlays)
    write_submission(args.out, batch.ellipses_mm)
    write_flags(flags, batch.rows)
    for line in batch.problem_lines():
        print(line, file=sys.stderr)
    print(f"wrote {args.out} and {flags}")
    print(batch.summary())
    return batch.exit_code


def cmd_measure(args: argparse.Namespace) -> int:
    """Exit status 0 with a measurement, 3 without one (the output says why), 1 on bad input."""
    from fetalbiometry.planes2d import commands as plane_commands

    if args.overlay is not None:
        from fetalbiometry.io import check_writable

        plane_commands.check_overlay_path(args.overlay)
        _refuse_overwriting_input(args.overlay, args.image, args.model)
        check_writable(args.overlay)
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
    return 0 if result.measurement is not None else NO_RESULT_EXIT_CODE


# --- synth ----------------------------------------------------------------------------------


def cmd_synth(args: argparse.Namespace) -> int:
    from fetalbiometry.data.synthetic import write_phantoms

    records = write_phantoms(
        args.outdir, dim=int(args.dim[0]), n=args.n, seed=args.seed, rescans=args.rescans, spacing_mm=args.spacing,
        image_model=args.image_model,
    )
    print(f"wrote {len(records)} phantom(s) to {args.outdir}")
    return 0


# --- ga -------------------------------------------------------------------------------------


def cmd_ga(args: argparse.Namespace) -> int:
    from fetalbiometry.biometry.growth import gestational_age_report
    from fetalbiometry.biometry.planes import check_plausible_measurement

    for measure in ("hc", "ac", "fl", "bpd"):
        value = getattr(args, measure)
        if value is not None:
            check_plausible_measurement(measure, value)
    report = gestational_age_report(args.hc, args.ac, args.fl, args.bpd, args.ga_weeks)
    (_print_json if args.json else _print_table)(report)
    return 0


# --- parser: one function per command -------------------------------------------------------

#: What ``add_subparsers`` returns: each ``add_*_parser`` adds its command to it.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_STATUS = """exit status:
  0  done
  1  bad input (one line on stderr: 'fetalbiometry: error: ...'), or a file of a batch failed
  2  usage error (argparse: a mistyped command or option)
  3  no trustworthy number: measure without a measurement, segment with an empty or
     implausible head (the output says why)"""

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
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output folder (DICOM series) that holds files"
    )
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
        "INTERGROWTH-21st centile. Exit status: 0 with a measurement; 3 when there is no trustworthy "
        "measurement ('no measurement: REASON', or JSON {plane, no_measurement}); 1 on bad input; 2 on a "
        "usage error.",
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
        "Every row gets an ellipse: a head cut by the image border is fitted to its visible outline and "
        "extrapolated; a head without a trustworthy measurement gets its best-effort ellipse, a frame "
        "without any head a placeholder circle at its centre; only an image that cannot be read keeps an "
        "empty row. Such frames are reported on stderr, one line each, and every frame in the flags CSV "
        "(filename, hc_mm, outline_inside_fraction, note). Exit status: 0 when every image was processed, "
        "1 when some image could not be read or on bad input.",
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
        "--flags-csv", type=Path, default=None, help="flags CSV to write (default: <out stem>.flags.csv beside --out)"
    )
    parser.add_argument(
        "--overlays",
        type=Path,
        default=None,
        help="folder for one <name>_overlay.png per image with a fitted ellipse (green: measured, magenta: "
        "cut by the border, red: best-effort)",
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
    parser.add_argument(
        "--spacing", type=float, default=None, help="3d: voxel size in mm, e.g. 0.8 as scanners export (default 2.6)"
    )
    parser.add_argument(
        "--image-model", choices=["polar", "cartesian"], default=None,
        help="B-mode model (docs/phantoms.md; default: polar)",
    )
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
