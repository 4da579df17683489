"""Reading back what the ``fetalbiometry`` commands produce, and the rows of the result tables.

- 3D: the head label's volume, and its agreement with a reference segmentation computed by
  :mod:`fetalbiometry.metrics` on the reference's grid (the prediction is resampled onto it).
- 2D: the JSON of ``fetalbiometry measure`` (plane, HC/AC/FL, fitted ellipse or femur line,
  gestational age, centile) and the ellipse outline in voxel (IJK) and patient (RAS) space.
- Study: the files that ``fetalbiometry study`` writes.

``fetalbiometry`` is imported inside the functions that use it: the Slicer module adds the
bundle to ``sys.path`` first, and importing this module stays cheap.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

if TYPE_CHECKING:
    from fetalbiometry.metrics import SegmentationMetrics

__all__ = [
    "HEAD_SEGMENT_COLOR",
    "HEAD_SEGMENT_NAME",
    "HEAD_TERMINOLOGY",
    "TABLE_COLUMNS",
    "NoPlaneMeasurement",
    "PlaneMeasurement",
    "StudyOutputs",
    "TableRow",
    "evaluate_against_reference",
    "head_volume_ml",
    "ijk_to_ras",
    "measurement_outline_ijk",
    "measurement_rows",
    "measurement_summary",
    "parse_measurement",
    "resample_to_reference",
    "segmentation_rows",
    "study_outputs",
    "write_slice_png",
]

PathLike = str | os.PathLike[str]

HEAD_SEGMENT_NAME = "Fetal head"
#: Slicer terminology entry (context~category~type~type modifier~anatomic context~region~region
#: modifier) of SNOMED CT 69536005 "Head" in the "3D Slicer General Anatomy list".
HEAD_TERMINOLOGY = (
    "Segmentation category and type - 3D Slicer General Anatomy list"
    "~SCT^123037004^Anatomical Structure"
    "~SCT^69536005^Head"
    "~^^"
    "~Anatomic codes - DICOM master list"
    "~^^"
    "~^^"
)
#: recommendedDisplayRGBValue of "Head" in that list (177, 122, 101), as RGB in [0, 1].
HEAD_SEGMENT_COLOR = (177 / 255, 122 / 255, 101 / 255)

#: Columns of the module's result tables (one quantity per row, so one CSV holds any result).
TABLE_COLUMNS = ("Quantity", "Value", "Unit")


@dataclass(frozen=True)
class TableRow:
    """One row of a result table: a quantity, its value and its unit ("" if none)."""

    quantity: str
    value: float | str
    unit: str = ""

    @property
    def cells(self) -> tuple[str, str, str]:
        """The row as text, numbers to 6 significant digits, in :data:`TABLE_COLUMNS` order."""
        value = f"{self.value:.6g}" if isinstance(self.value, float) else str(self.value)
        return self.quantity, value, self.unit


# --- 3D: head label, volume, agreement with a reference -----------------------------------------


def _read(image: sitk.Image | PathLike) -> sitk.Image:
    if isinstance(image, sitk.Image):
        return image
    from fetalbiometry.io import read_image

    return read_image(image)


def _foreground(label: sitk.Image) -> sitk.Image:
    """uint8 mask of the voxels > 0 (a segmentation exported with several segments counts as one)."""
    return sitk.Cast(label > 0, sitk.sitkUInt8)


def head_volume_ml(label: sitk.Image | PathLike) -> float:
    """Volume of the voxels > 0 of a label image, in mL (:func:`fetalbiometry.metrics.label_volume_ml`)."""
    from fetalbiometry.metrics import label_volume_ml

    return label_volume_ml(_read(label))


def resample_to_reference(label: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """The mask of ``label`` (voxels > 0) sampled on the grid of ``reference``.

    Nearest-neighbour interpolation in physical space (identity transform), 0 outside
    ``label``: each reference voxel takes the value of the label voxel that contains its centre.
    """
    return sitk.Resample(
        _foreground(label), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, sitk.sitkUInt8
    )


def evaluate_against_reference(
    prediction: sitk.Image | PathLike, reference: sitk.Image | PathLike
) -> SegmentationMetrics:
    """DSC, Jaccard, conformity, Adb, Hdb (mm) and both volumes of a prediction against a reference.

    The criteria of the 3D whole-head paper (Eqs. 6-8) are computed by
    :func:`fetalbiometry.metrics.evaluate_images` on the reference's grid: the reference keeps
    its voxels and the prediction is resampled onto them (:func:`resample_to_reference`), so the
    two images may come from different grids (e.g. a reference drawn on a cropped volume).

    Args:
        prediction: predicted label (image or file); voxels > 0 are the head.
        reference: reference label (image or file); voxels > 0 are the head.

    Returns:
        The metrics of the prediction against the reference.
    """
    from fetalbiometry.metrics import evaluate_images

    reference_mask = _foreground(_read(reference))
    return evaluate_images(resample_to_reference(_read(prediction), reference_mask), reference_mask)


def segmentation_rows(volume_ml: float, metrics: SegmentationMetrics | None = None) -> list[TableRow]:
    """Rows of the 3D result table: the head volume, then the agreement with a reference if any."""
    rows = [TableRow("Head volume", float(volume_ml), "mL")]
    if metrics is not None:
        rows += [
            TableRow("Dice", float(metrics.dice)),
            TableRow("Jaccard", float(metrics.jaccard)),
            TableRow("Conformity", float(metrics.conformity)),
            TableRow("Adb", float(metrics.adb_mm), "mm"),
            TableRow("Hdb", float(metrics.hdb_mm), "mm"),
            TableRow("Head volume (on reference grid)", float(metrics.volume_pred_ml), "mL"),
            TableRow("Reference volume", float(metrics.volume_ref_ml), "mL"),
        ]
    return rows


# --- 2D: biometry of one plane ------------------------------------------------------------------

#: plane -> (JSON key of its measurement, its name).
_PLANE_MEASURES = {"head": ("hc_mm", "HC"), "abdomen": ("ac_mm", "AC"), "femur": ("fl_mm", "FL")}
_ELLIPSE_KEYS = ("cx", "cy", "a", "b", "theta")


@dataclass(frozen=True)
class PlaneMeasurement:
    """2D biometry of one standard plane, as ``fetalbiometry measure --json`` reports it.

    Positions follow the HC18 convention (x = column, y = row, from the centre of the first
    pixel) scaled to mm by the pixel size; ``theta`` is in radians.

    Attributes:
        plane: "head", "abdomen" or "femur".
        value_mm: HC, AC or FL, mm.
        ellipse_mm: (cx, cy, a, b, theta) of the fitted ellipse (head and abdomen).
        femur_endpoints_mm: ((x1, y1), (x2, y2)) of the femur length (femur).
        ga_weeks_hadlock: gestational age by Hadlock, weeks.
        ga_weeks_intergrowth: gestational age by INTERGROWTH-21st, weeks (HC only).
        centile: size-for-age centile, if the command gave one.
    """

    plane: str
    value_mm: float
    ellipse_mm: tuple[float, float, float, float, float] | None = None
    femur_endpoints_mm: tuple[tuple[float, float], tuple[float, float]] | None = None
    ga_weeks_hadlock: float | None = None
    ga_weeks_intergrowth: float | None = None
    centile: float | None = None

    @property
    def measure_name(self) -> str:
        """"HC", "AC" or "FL"."""
        return _PLANE_MEASURES[self.plane][1]


@dataclass(frozen=True)
class NoPlaneMeasurement:
    """``fetalbiometry measure`` found no trustworthy measurement (exit status 2), and says why.

    Attributes:
        plane: "head", "abdomen" or "femur".
        reason: e.g. "no HC: the head is cut by the image border (...)".
    """

    plane: str
    reason: str

    @property
    def measure_name(self) -> str:
        """"HC", "AC" or "FL"."""
        return _PLANE_MEASURES[self.plane][1]


def _optional_float(payload: dict, key: str) -> float | None:
    value = payload.get(key)
    return None if value is None else float(value)


def parse_measurement(output: str) -> PlaneMeasurement | NoPlaneMeasurement:
    """Read the JSON object that ``fetalbiometry measure --json`` printed.

    Expected keys: ``plane``; ``hc_mm``, ``ac_mm`` or ``fl_mm`` for that plane; ``ellipse``
    ({cx, cy, a, b, theta}, mm and radians) for head and abdomen; ``femur_endpoints``
    ([[x1, y1], [x2, y2]], mm) for the femur; optional ``ga_weeks_hadlock``,
    ``ga_weeks_intergrowth`` and ``centile``. Without a trustworthy measurement the object is
    ``{"plane": ..., "no_measurement": reason}``.

    Args:
        output: the command's output; text around the JSON object (log lines) is ignored.

    Returns:
        The measurement, or why there is none.

    Raises:
        ValueError: no JSON object, or one without the keys its plane needs.
    """
    start = output.find("{")
    if start < 0:
        raise ValueError("the measure command printed no JSON result")
    try:
        payload, _ = json.JSONDecoder().raw_decode(output[start:])
    except json.JSONDecodeError as error:
        raise ValueError(f"the measure command printed invalid JSON: {error}") from None
    plane = payload.get("plane")
    if plane not in _PLANE_MEASURES:
        raise ValueError(f"unknown plane {plane!r} in the measure result; expected one of {sorted(_PLANE_MEASURES)}")
    if payload.get("no_measurement") is not None:
        return NoPlaneMeasurement(plane=plane, reason=str(payload["no_measurement"]))
    value_key = _PLANE_MEASURES[plane][0]
    if payload.get(value_key) is None:
        raise ValueError(f"the measure result for plane {plane!r} has no {value_key!r}")
    ellipse = payload.get("ellipse")
    endpoints = payload.get("femur_endpoints")
    if plane == "femur" and endpoints is None:
        raise ValueError("the measure result for the femur has no 'femur_endpoints'")
    if plane != "femur" and ellipse is None:
        raise ValueError(f"the measure result for plane {plane!r} has no 'ellipse'")
    return PlaneMeasurement(
        plane=plane,
        value_mm=float(payload[value_key]),
        ellipse_mm=None if ellipse is None else tuple(float(ellipse[key]) for key in _ELLIPSE_KEYS),
        femur_endpoints_mm=None if endpoints is None else tuple((float(x), float(y)) for x, y in endpoints),
        ga_weeks_hadlock=_optional_float(payload, "ga_weeks_hadlock"),
        ga_weeks_intergrowth=_optional_float(payload, "ga_weeks_intergrowth"),
        centile=_optional_float(payload, "centile"),
    )


def measurement_rows(measurement: PlaneMeasurement | NoPlaneMeasurement) -> list[TableRow]:
    """Rows of the 2D result table: plane, HC/AC/FL, gestational ages and centile (those given),
    or the plane and why it has no measurement."""
    if isinstance(measurement, NoPlaneMeasurement):
        return [TableRow("Plane", measurement.plane), TableRow("No measurement", measurement.reason)]
    rows = [
        TableRow("Plane", measurement.plane),
        TableRow(measurement.measure_name, measurement.value_mm, "mm"),
    ]
    optional = (
        ("GA (Hadlock)", measurement.ga_weeks_hadlock, "weeks"),
        ("GA (INTERGROWTH-21st)", measurement.ga_weeks_intergrowth, "weeks"),
        ("Centile", measurement.centile, ""),
    )
    rows += [TableRow(name, value, unit) for name, value, unit in optional if value is not None]
    return rows


def measurement_summary(measurement: PlaneMeasurement | NoPlaneMeasurement) -> str:
    """One line for the panel, e.g. ``HC 175.2 mm | GA 20.1 wk (Hadlock) | centile 45``, or
    ``no measurement: REASON``."""
    if isinstance(measurement, NoPlaneMeasurement):
        return f"no measurement: {measurement.reason}"
    parts = [f"{measurement.measure_name} {measurement.value_mm:.1f} mm"]
    if measurement.ga_weeks_hadlock is not None:
        parts.append(f"GA {measurement.ga_weeks_hadlock:.1f} wk (Hadlock)")
    if measurement.ga_weeks_intergrowth is not None:
        parts.append(f"GA {measurement.ga_weeks_intergrowth:.1f} wk (INTERGROWTH-21st)")
    if measurement.centile is not None:
        parts.append(f"centile {measurement.centile:.0f}")
    return " | ".join(parts)


def _xy_mm_to_ijk(points_xy_mm: np.ndarray, pixel_size_mm: float) -> np.ndarray:
    """HC18 (x, y) in mm to voxel indices (i = column, j = row, k = 0) of a single-slice volume."""
    if not pixel_size_mm > 0:
        raise ValueError(f"pixel size must be positive, got {pixel_size_mm} mm")
    xy = np.asarray(points_xy_mm, dtype=float).reshape(-1, 2) / pixel_size_mm
    return np.column_stack([xy, np.zeros(len(xy))])


def measurement_outline_ijk(measurement: PlaneMeasurement, pixel_size_mm: float, n: int = 72) -> np.ndarray:
    """Voxel (IJK) points to draw: ``n`` points of the ellipse, or the two femur endpoints.

    Args:
        measurement: the 2D measurement.
        pixel_size_mm: pixel size that was passed to ``fetalbiometry measure``.
        n: number of ellipse points (evenly spaced in the ellipse parameter).

    Returns:
        (n, 3) array of (i, j, k) for an ellipse, (2, 3) for the femur.
    """
    if measurement.plane == "femur":
        return _xy_mm_to_ijk(np.asarray(measurement.femur_endpoints_mm), pixel_size_mm)
    from fetalbiometry.biometry.ellipse import Ellipse, ellipse_outline

    return _xy_mm_to_ijk(ellipse_outline(Ellipse(*measurement.ellipse_mm), n), pixel_size_mm)


def ijk_to_ras(points_ijk: np.ndarray, ijk_to_ras_matrix: np.ndarray) -> np.ndarray:
    """Map (N, 3) voxel indices to (N, 3) RAS positions with a volume's 4x4 IJK-to-RAS matrix."""
    points = np.asarray(points_ijk, dtype=float).reshape(-1, 3)
    matrix = np.asarray(ijk_to_ras_matrix, dtype=float)
    if matrix.shape != (4, 4):
        raise ValueError(f"IJK-to-RAS matrix must be 4x4, got {matrix.shape}")
    homogeneous = np.column_stack([points, np.ones(len(points))])
    return (homogeneous @ matrix.T)[:, :3]


def write_slice_png(pixels: np.ndarray, path: PathLike) -> Path:
    """Write one image plane as an 8-bit grayscale PNG for ``fetalbiometry measure``.

    uint8 pixels are written unchanged (HC18 images); other types are mapped linearly from
    their [min, max] to [0, 255].

    Args:
        pixels: (rows, columns) array; row 0 is the first image row (j = 0).
        path: destination ``.png``.

    Returns:
        ``path``.
    """
    from fetalbiometry.io import write_image

    array = np.asarray(pixels)
    if array.ndim != 2:
        raise ValueError(f"a single image plane is needed, got an array of shape {array.shape}")
    if array.dtype != np.uint8:
        low, high = float(np.min(array)), float(np.max(array))
        scale = 255.0 / (high - low) if high > low else 0.0
        array = np.round((array.astype(float) - low) * scale).astype(np.uint8)
    return write_image(sitk.GetImageFromArray(array), path)


# --- Reproducibility study ----------------------------------------------------------------------


@dataclass(frozen=True)
class StudyOutputs:
    """The files of a finished ``fetalbiometry study`` run (plots: ``figures/*.png``)."""

    volumes_csv: Path
    subjects_csv: Path
    summary_json: Path
    report_html: Path
    plots: tuple[Path, ...]


def study_outputs(out_dir: PathLike) -> StudyOutputs:
    """Locate the outputs of ``fetalbiometry study`` in ``out_dir``.

    Raises:
        FileNotFoundError: a table, the summary or the report is missing (the run did not finish).
    """
    out_dir = Path(out_dir)
    outputs = StudyOutputs(
        volumes_csv=out_dir / "volumes.csv",
        subjects_csv=out_dir / "subjects.csv",
        summary_json=out_dir / "summary.json",
        report_html=out_dir / "report.html",
        plots=tuple(sorted((out_dir / "figures").glob("*.png"))),
    )
    required = (outputs.volumes_csv, outputs.subjects_csv, outputs.summary_json, outputs.report_html)
    missing = [path.name for path in required if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"the study in {out_dir} did not write {', '.join(missing)}")
    return outputs

