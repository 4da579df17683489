"""What ``make demo`` runs: a phantom head volume segmented, real HC18 frames and three 2D planes measured.

1. A synthetic 3D head volume (:func:`~fetalbiometry.data.synthetic.make_head_volume`) is
   written to disk, read back, segmented by the bundle's shipped model and compared with its
   ground-truth label (DSC, Conf, Jacc, Adb, Hdb, volumes).
2. The HC18 sample frames bundled in ``sample_data/hc18`` (CC BY 4.0, van den Heuvel et al. 2018;
   from the project's test split, never trained on) are measured by the shipped HC model: HC,
   GA and the difference to the sonographer's HC, with an overlay of the fitted ellipse each.
3. Synthetic head, abdomen and femur planes are measured from their ground-truth masks
   (:func:`~fetalbiometry.biometry.planes.measure_plane`) and the measurements give GA,
   INTERGROWTH-21st centiles at the phantom's true GA, and the Hadlock EFW.

Every number printed is computed here, in this run; the truths come from the generator or from
the HC18 sonographers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import SimpleITK as sitk

from fetalbiometry import BUNDLE_ROOT
from fetalbiometry.biometry import growth
from fetalbiometry.biometry.growth import gestational_age_report
from fetalbiometry.biometry.planes import PLANE_CLASSES, PLANE_MEASURES, measure_plane
from fetalbiometry.data.hc18 import read_frame, read_records
from fetalbiometry.data.synthetic import make_head_volume, make_plane, scanner_grid
from fetalbiometry.errors import FetalBiometryError
from fetalbiometry.io import array_spacing, read_image, write_image
from fetalbiometry.metrics import evaluate_images

DEMO_SEED = 2026
DEMO_SPACING_MM = 0.8  # as scanners export: the network resamples it to its own spacing
HC18_SAMPLES = BUNDLE_ROOT / "sample_data" / "hc18"


def segment_phantom_volume(out_dir: Path) -> None:
    """Segment a phantom volume with the shipped model and compare it with the truth."""
    from fetalbiometry.segment3d.segmenter import Segmenter  # torch and MONAI: imported when needed

    phantom = make_head_volume(seed=DEMO_SEED, **scanner_grid(DEMO_SPACING_MM))
    image_path, truth_path = out_dir / "phantom_image.nii.gz", out_dir / "phantom_truth.nii.gz"
    write_image(phantom.image, image_path)
    write_image(phantom.label, truth_path)
    truth = phantom.truth
    print(f"3D phantom (seed {DEMO_SEED}): GA {truth['ga_weeks']:.1f} weeks, grid {phantom.image.GetSize()}")
    print(f"  written to {image_path}")

    segmenter = Segmenter.from_bundle()
    label = segmenter.segment(read_image(image_path))
    label_path = write_image(label, out_dir / "phantom_segmentation.nii.gz")
    print(f"  segmented on {segmenter.device} with the shipped model -> {label_path}")
    metrics = evaluate_images(label, read_image(truth_path))
    print(
        f"  DSC {100 * metrics.dice:.2f} %  Conf {100 * metrics.conformity:.2f} %  "
        f"Jacc {100 * metrics.jaccard:.2f} %  Adb {metrics.adb_mm:.2f} mm  Hdb {metrics.hdb_mm:.2f} mm"
    )
    print(
        f"  head volume: segmented {metrics.volume_pred_ml:.1f} mL, truth {metrics.volume_ref_ml:.1f} mL "
        f"(voxel {' x '.join(f'{s:.2f}' for s in array_spacing(label))} mm)"
    )


def measure_hc18_samples(out_dir: Path) -> None:
    """Measure HC on the bundled HC18 frames with the shipped model and compare with the sonographers."""
    from fetalbiometry.planes2d.commands import measure_frame, write_overlay
    from fetalbiometry.planes2d.predictor import load_plane_predictor

    predictor = load_plane_predictor()
    print("HC18 sample frames (CC BY 4.0, van den Heuvel et al. 2018), shipped HC model:")
    for record in read_records(HC18_SAMPLES / "samples.csv", HC18_SAMPLES):
        frame = read_frame(record)
        result = measure_frame(predictor, frame, record.pixel_size_mm)
        if result.measurement is None:
            print(f"  {record.filename}: no measurement: {result.no_measurement}")
            continue
        hc_mm = result.measurement.value_mm
        overlay = write_overlay(out_dir / f"{Path(record.filename).stem}_overlay.png", frame, result.measurement)
        print(
            f"  {record.filename}: HC {hc_mm:6.1f} mm, sonographer {record.hc_mm:6.1f} mm "
            f"({hc_mm - record.hc_mm:+.1f} mm); GA Hadlock {growth.ga_hadlock_hc(hc_mm):.1f} weeks, "
            f"INTERGROWTH-21st {growth.ga_intergrowth_hc(hc_mm):.1f} weeks -> {overlay}"
        )


def measure_phantom_planes() -> None:
    """Measure HC, AC and FL on synthetic planes of one fetus, then GA, centiles and EFW."""
    ga_weeks = 24.0
    measured: dict[str, float] = {}
    print(f"2D planes of a phantom fetus at {ga_weeks:.0f} weeks (measured from the planes' masks):")
    for plane in PLANE_CLASSES:
        phantom = make_plane(plane, seed=DEMO_SEED, ga_weeks=ga_weeks)
        pixel_size = float(phantom.truth["pixel_size_mm"])
        result = measure_plane(sitk.GetArrayFromImage(phantom.mask), plane, pixel_size)
        name = PLANE_MEASURES[plane]
        measured[name] = result.value_mm
        truth = float(phantom.truth[f"{name}_mm"])
        print(f"  {name.upper()} {result.value_mm:6.1f} mm  (truth {truth:.1f} mm, pixel {pixel_size:.3f} mm)")
        if result.bpd_mm is not None:
            measured["bpd"] = result.bpd_mm
    report = gestational_age_report(measured["hc"], measured["ac"], measured["fl"], measured["bpd"], ga_weeks)
    print(
        f"  GA from HC: Hadlock {report['ga_weeks_hadlock_hc']:.1f} weeks, "
        f"INTERGROWTH-21st {report['ga_weeks_intergrowth_hc']:.1f} weeks"
    )
    centiles = ", ".join(f"{name.upper()} {report[f'centile_{name}']:.0f}" for name in ("hc", "ac", "fl", "bpd"))
    print(f"  INTERGROWTH-21st centiles at {ga_weeks:.0f} weeks: {centiles}")
    print(f"  Hadlock EFW: {report['efw_g_hadlock']:.0f} g")
    mean_hc, _ = growth.intergrowth_mean_sd("hc", ga_weeks)
    print(f"  (INTERGROWTH-21st median HC at {ga_weeks:.0f} weeks: {mean_hc:.1f} mm)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fetalbiometry.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the demo's files")
    args = parser.parse_args(argv)
    try:
        segment_phantom_volume(args.out)
        measure_hc18_samples(args.out)
        measure_phantom_planes()
    except FetalBiometryError as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
