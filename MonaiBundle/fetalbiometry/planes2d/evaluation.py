"""Figures of a 2D biometry network: DSC, DF, ADF and HD per frame, as HC18 reports them.

van den Heuvel et al. ("Automated measurement of fetal head circumference using 2D ultrasound
images", PLoS ONE 13(8): e0200412, 2018) evaluate an automated HC against the sonographer's by

- DF = HC_pred − HC_ref and ADF = |DF| (mm), HC_ref being the CSV value;
- DSC between the filled predicted and reference ellipses (%);
- HD, the Hausdorff distance between the two ellipse outlines (mm).

Here the outlines are the ellipses themselves, sampled densely (:func:`ellipse_outline`, one point
per 0.1 pixel of perimeter or finer) rather than rasterised, so HD has no pixel quantisation; the
filled ellipses are rasterised on the frame's grid for the DSC.

A frame the network cannot measure (``NoMeasurementError``: empty mask, head cut by the border,
implausible ellipse) is not given a number: it is counted and listed with its reason, and the
means are over the measured frames. The regression CNNs give an HC and no ellipse, so only DF and
ADF are defined for them; a femur has a length and no ellipse, so likewise.

Head frames are also summarised by trimester (:func:`summarize_by_trimester`): a first-trimester head
is a quarter of the size of a term one or less, so an error in mm means more on it.

The shipped ``models/hc_model.pt`` was trained on every annotated HC18 frame: figures of it on HC18
frames are a fit, not an accuracy. :func:`hc18_frames_seen_by` names them, and the summary counts
them (``seen_in_training``).

Frames come as :class:`PlaneCase` (frame, pixel size, plane, reference): from HC18
(:func:`hc18_case`), from the phantom generator (:func:`phantom_case`) or from a user's datalist
(:func:`datalist_case`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.spatial.distance import directed_hausdorff
from tqdm import tqdm

from fetalbiometry import BUNDLE_ROOT
from fetalbiometry.biometry.ellipse import Ellipse, ellipse_outline, ellipse_to_mask
from fetalbiometry.biometry.growth import TRIMESTERS, ga_hadlock_hc, trimester
from fetalbiometry.biometry.planes import PLANE_CLASSES, PLANE_MEASURES, measure_plane
from fetalbiometry.data.hc18 import HC18Record, is_hc18_name, read_annotation, read_frame
from fetalbiometry.data.hc18_dataset import AnnotatedPlane
from fetalbiometry.data.synthetic import PlanePhantom
from fetalbiometry.errors import InputError, NoMeasurementError
from fetalbiometry.io import atomic_output
from fetalbiometry.planes2d.predictor import PlanePredictor
from fetalbiometry.weights import expected_checksum, sha256_of

__all__ = [
    "PUBLISHED_HC18",
    "PlaneCase",
    "PlaneResult",
    "datalist_case",
    "ellipse_dice",
    "ellipse_hausdorff_mm",
    "evaluate_case",
    "evaluate_planes",
    "hc18_case",
    "hc18_frames_seen_by",
    "phantom_case",
    "read_evaluation",
    "summarize_by_trimester",
    "summarize_planes",
    "write_evaluation",
]

PUBLISHED_HC18: dict[str, dict[str, float]] = {
    "MTLN (Sobhaninia et al. 2019)": {"dsc_percent": 96.84, "adf_mm": 2.12, "hd_mm": 1.72},
    "van den Heuvel et al. 2018": {"dsc_percent": 97.0, "adf_mm": 2.8, "hd_mm": 2.0},
    "Regression ResNet50 (Zhang et al. 2020)": {"adf_mm": 4.52},
    "U-Net (Nguyen, practice report)": {"dsc_percent": 89.7},
    "MONAI BasicUNet reference (issue 6, other 200 frames)": {"dsc_percent": 97.85, "adf_mm": 2.15, "hd_mm": 1.23},
}
"""Published HC18 figures quoted by issue 6 (MAE of the regression CNN is its ADF)."""

SHIPPED_ON_EVERY_HC18_FRAME = "models/hc_model.pt"
"""The shipped weights trained on all 799 annotated HC18 frames (``configs/biometry/all_frames.json``)."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlaneCase:
    """A frame with its reference measurement.

    Args:
        name: e.g. the HC18 file name.
        frame: 2D uint8 image (rows, columns).
        pixel_size_mm: side of a square pixel, mm.
        plane: ``"head"``, ``"abdomen"`` or ``"femur"``.
        reference_mm: the reference HC, AC or FL.
        reference_ellipse_px: the reference ellipse (head, abdomen), or None.
    """

    name: str
    frame: np.ndarray
    pixel_size_mm: float
    plane: str
    reference_mm: float
    reference_ellipse_px: Ellipse | None = None


def hc18_case(record: HC18Record) -> PlaneCase:
    """An annotated HC18 frame; the reference HC is the CSV value, the ellipse the one fitted to the outline."""
    if record.hc_mm is None:
        raise InputError(f"{record.filename} has no reference HC")
    reference = read_annotation(record).ellipse_px
    return PlaneCase(record.filename, read_frame(record), record.pixel_size_mm, "head", record.hc_mm, reference)


def hc18_frames_seen_by(ckpt_path: str | Path, cases: Iterable[PlaneCase]) -> list[str]:
    """The HC18 frames among ``cases`` (by HC18's file names) that ``ckpt_path`` was trained on: all of
    them when it holds the shipped :data:`SHIPPED_ON_EVERY_HC18_FRAME` weights (by SHA-256, so a copy
    counts too), none otherwise or when the file cannot be read (loading it reports that).
    """
    path = Path(ckpt_path)
    shipped = expected_checksum(BUNDLE_ROOT, SHIPPED_ON_EVERY_HC18_FRAME)
    if shipped is None or not path.is_file() or sha256_of(path) != shipped:
        return []
    return [case.name for case in cases if is_hc18_name(case.name)]


def phantom_case(phantom: PlanePhantom, name: str = "") -> PlaneCase:
    """A synthetic plane of :func:`fetalbiometry.data.synthetic.make_plane` with its true measurement."""
    truth = phantom.truth
    plane = str(truth["kind"])
    structure = phantom.structure
    ellipse = structure if isinstance(structure, Ellipse) else None
    frame = sitk.GetArrayFromImage(phantom.image)
    reference = float(truth[f"{PLANE_MEASURES[plane]}_mm"])
    return PlaneCase(name or f"{plane}-{truth['seed']}", frame, float(truth["pixel_size_mm"]), plane, reference, ellipse)


def datalist_case(plane: AnnotatedPlane) -> PlaneCase:
    """An annotated frame of a user's datalist (:func:`fetalbiometry.data.plane_dataset.read_plane_datalist`).

    The reference is the annotation's measurement (:attr:`AnnotatedPlane.value_mm`): the perimeter
    of the caliper or mask ellipse (HC, AC), the calipers' distance or the mask's length (FL).
    """
    ellipse = plane.structure if isinstance(plane.structure, Ellipse) else None
    return PlaneCase(plane.name, plane.read_frame(), plane.pixel_size_mm, plane.plane, plane.value_mm, ellipse)


@dataclass(frozen=True)
class PlaneResult:
    """The evaluation of one frame (lengths in mm, DSC in %; None where undefined or not measured).

    Args:
        name: the case's name.
        plane: the reference plane.
        predicted_plane: the plane the network chose.
        reference_mm: the reference HC, AC or FL.
        value_mm: the network's measurement.
        df_mm: ``value_mm − reference_mm``.
        adf_mm: ``|df_mm|``.
        dsc_percent: DSC of the filled ellipses (head, abdomen).
        hd_mm: Hausdorff distance between the ellipse outlines (head, abdomen).
        no_measurement: the reason when the network gave no measurement, else "".
        second_look: the predictor looked again at a window around the head (``head_crop``).
    """

    name: str
    plane: str
    predicted_plane: str
    reference_mm: float
    value_mm: float | None = None
    df_mm: float | None = None
    adf_mm: float | None = None
    dsc_percent: float | None = None
    hd_mm: float | None = None
    no_measurement: str = ""
    second_look: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def ellipse_dice(predicted: Ellipse, reference: Ellipse, shape: tuple[int, int]) -> float:
    """DSC (%) of two filled ellipses rasterised on a grid of ``shape`` (rows, columns)."""
    first, second = ellipse_to_mask(predicted, shape), ellipse_to_mask(reference, shape)
    total = int(first.sum()) + int(second.sum())
    return 100.0 * 2.0 * int(np.logical_and(first, second).sum()) / total if total else 100.0


def ellipse_hausdorff_mm(predicted: Ellipse, reference: Ellipse, pixel_size: float) -> float:
    """Symmetric Hausdorff distance (mm) between two ellipse outlines given in pixels.

    Each outline is sampled with at least 10 points per pixel of perimeter (and 3600 points).
    """
    perimeter = max(predicted.circumference, reference.circumference)
    points = max(3600, int(math.ceil(10.0 * perimeter)))
    first, second = ellipse_outline(predicted, points), ellipse_outline(reference, points)
    return pixel_size * max(directed_hausdorff(first, second)[0], directed_hausdorff(second, first)[0])


def evaluate_case(predictor: PlanePredictor, case: PlaneCase) -> PlaneResult:
    """Evaluate the predictor on one frame (see the module docstring)."""
    prediction = predictor.predict(case.frame)
    unmeasured = PlaneResult(
        case.name, case.plane, prediction.plane, case.reference_mm, second_look=prediction.window is not None
    )
    if prediction.probability is None:
        value = prediction.hc_px * case.pixel_size_mm
        return replace(unmeasured, value_mm=value, df_mm=value - case.reference_mm, adf_mm=abs(value - case.reference_mm))
    try:
        measurement = measure_plane(prediction.mask, prediction.plane, case.pixel_size_mm)
    except NoMeasurementError as reason:
        return replace(unmeasured, no_measurement=str(reason))
    difference = measurement.value_mm - case.reference_mm
    result = replace(unmeasured, value_mm=measurement.value_mm, df_mm=difference, adf_mm=abs(difference))
    if measurement.ellipse is None or case.reference_ellipse_px is None:
        return result
    return replace(
        result,
        dsc_percent=ellipse_dice(measurement.ellipse, case.reference_ellipse_px, case.frame.shape),
        hd_mm=ellipse_hausdorff_mm(measurement.ellipse, case.reference_ellipse_px, case.pixel_size_mm),
    )


def evaluate_planes(predictor: PlanePredictor, cases: Iterable[PlaneCase], progress: bool = True) -> list[PlaneResult]:
    """Evaluate the predictor on frames, one :class:`PlaneResult` each."""
    return [evaluate_case(predictor, case) for case in tqdm(cases, desc="evaluation", unit="image", disable=not progress)]


def _mean_sd(values: Iterable[float | None]) -> dict[str, float] | None:
    present = np.array([value for value in values if value is not None], dtype=np.float64)
    if present.size == 0:
        return None
    return {
        "mean": float(present.mean()),
        "sd": float(present.std(ddof=1)) if present.size > 1 else 0.0,
        "median": float(np.median(present)),
        "max": float(present.max()),
    }


def _figures(results: Sequence[PlaneResult]) -> dict[str, object]:
    return {
        "images": len(results),
        "measured": sum(result.value_mm is not None for result in results),
        "plane_accuracy": float(np.mean([result.plane == result.predicted_plane for result in results])) if results else None,
        "no_measurement": {result.name: result.no_measurement for result in results if result.no_measurement},
        "second_looks": sum(result.second_look for result in results),
        **{key: _mean_sd(getattr(result, key) for result in results) for key in ("df_mm", "adf_mm", "dsc_percent", "hd_mm")},
        "relative_adf_percent": _mean_sd(
            None if result.adf_mm is None else 100.0 * result.adf_mm / result.reference_mm for result in results
        ),
    }


def summarize_planes(results: Sequence[PlaneResult]) -> dict[str, object]:
    """Mean, SD, median and maximum of each figure over the measured frames, and the unmeasured ones.

    Returns:
        ``{"images": n, "measured": m, "plane_accuracy": fraction of frames whose plane the network
        got right, "no_measurement": {name: reason}, "second_looks": frames the predictor looked at
        twice (``head_crop``), "df_mm": {...}, "adf_mm": {...},
        "dsc_percent": {...}, "hd_mm": {...}, "relative_adf_percent": {...} (ADF / reference),
        "planes": {plane: the same figures over the frames of that reference plane}}`` (None for a
        figure the network does not give). HC, AC and FL are different lengths, so a test set of
        several planes is read plane by plane.
    """
    by_plane = {plane: [result for result in results if result.plane == plane] for plane in PLANE_CLASSES}
    return {**_figures(results), "planes": {plane: _figures(subset) for plane, subset in by_plane.items() if subset}}


def summarize_by_trimester(results: Sequence[PlaneResult]) -> dict[str, dict[str, object]]:
    """The figures of :func:`summarize_planes` (without the plane split) over the head frames of each trimester.

    A frame's trimester is that of the gestational age its reference HC gives by Hadlock's formula
    (:func:`~fetalbiometry.biometry.growth.ga_hadlock_hc`; :func:`~fetalbiometry.biometry.growth.trimester`):
    a head under 89.4 mm is in the first trimester, one of 257.6 mm or more in the third. Below 14
    weeks the formula extrapolates, which only places the head in the first trimester. The
    reference HC, not the network's, decides, so every network's frames fall in the same trimesters.

    Returns:
        ``{trimester: figures}`` for the trimesters that have head frames, in order; empty without any.
    """
    heads = [result for result in results if result.plane == "head"]
    if not heads:
        return {}
    trimesters = trimester(ga_hadlock_hc([result.reference_mm for result in heads]))
    return {
        name: _figures([result for result, of in zip(heads, trimesters) if of == name])
        for name in TRIMESTERS
        if name in trimesters
    }


_TEXT_FIELDS = ("name", "plane", "predicted_plane", "no_measurement")
"""The :class:`PlaneResult` fields that are text."""

_FLAG_FIELDS = ("second_look",)
"""The :class:`PlaneResult` fields that are True or False; every other one is a number, empty when None."""

_OPTIONAL_FIELDS = ("second_look",)
"""Columns that a ``per_image.csv`` written before they existed (0.6.0 and older) lacks: read as their default."""


def _parse_field(name: str, text: str) -> str | float | bool | None:
    if name in _FLAG_FIELDS:
        if text not in ("True", "False"):
            raise ValueError(f"{name} must be True or False, got {text!r}")
        return text == "True"
    return text if name in _TEXT_FIELDS else (float(text) if text else None)


def read_evaluation(path: str | Path) -> list[PlaneResult]:
    """The frames of a ``per_image.csv`` written by :func:`write_evaluation`, one :class:`PlaneResult` each.

    Raises:
        OSError: the file cannot be read.
        ValueError: a column of :class:`PlaneResult` missing, or a figure that is not a number.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        names = [field.name for field in fields(PlaneResult) if field.name in (reader.fieldnames or [])]
        missing = [field.name for field in fields(PlaneResult) if field.name not in names + list(_OPTIONAL_FIELDS)]
        if missing:
            raise ValueError(f"{path} has no column {', '.join(missing)}")
        try:
            return [PlaneResult(**{name: _parse_field(name, row[name]) for name in names}) for row in reader]
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


def write_evaluation(
    results: Sequence[PlaneResult], output_dir: str | Path, seen_in_training: Sequence[str] = ()
) -> dict[str, object]:
    """Write ``per_image.csv`` (one :class:`PlaneResult` a row) and ``summary.json`` (:func:`summarize_planes`).

    Both files are written atomically. ``seen_in_training`` names frames the network was trained on
    (:func:`hc18_frames_seen_by`): the summary counts them and a warning says the figures are a fit.
    Returns the summary.
    """
    output_dir = Path(output_dir)
    summary = {**summarize_planes(results), "seen_in_training": len(seen_in_training)}
    if seen_in_training:
        logger.warning(
            "%d of the %d frames were in the model's training set: these figures are a fit, not an accuracy",
            len(seen_in_training),
            len(results),
        )
    with atomic_output(output_dir / "per_image.csv") as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[field.name for field in fields(PlaneResult)])
        writer.writeheader()
        writer.writerows(result.as_dict() for result in results)
    with atomic_output(output_dir / "summary.json") as temporary:
        temporary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
