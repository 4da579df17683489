"""Preparing the inputs of the ``fetalbiometry`` commands, reading back what they produce, and
the rows of the result tables.

- 3D: the head label's volume, and the inputs and JSON of ``fetalbiometry evaluate``, which
  computes the agreement with a reference on the reference's grid (the prediction is resampled
  onto it here, with SimpleITK).
- 2D: the JSON of ``fetalbiometry measure`` (plane, HC/AC/FL, fitted ellipse or femur line,
  gestational age, centile) and the ellipse outline in voxel (IJK) and patient (RAS) space.
- Sample data and study: the files that ``fetalbiometry synth`` and ``fetalbiometry study`` write.

Only numpy and SimpleITK are used (both ship with Slicer): ``fetalbiometry`` runs out of
Slicer's process, never inside it. The module runs in Slicer's Python, so it stays
Python-3.9-safe (a test checks), which lets an older Slicer load it and say what it needs.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Union

import numpy as np
import SimpleITK as sitk

__all__ = [
    "HEAD_SEGMENT_COLOR",
    "HEAD_SEGMENT_NAME",
    "HEAD_TERMINOLOGY",
    "TABLE_COLUMNS",
    "NoPlaneMeasurement",
    "PlaneMeasurement",
    "StudyOutputs",
    "AgreementMetrics",
    "TableRow",
    "ellipse_outline_mm",
    "head_volume_ml",
    "ijk_to_ras",
    "measurement_outline_ijk",
    "measurement_rows",
    "measurement_summary",
    "parse_agreement",
    "parse_measurement",
    "phantom_files",
    "resample_to_reference",
    "write_evaluation_inputs",
    "SEGMENTATION_NOTE_PREFIXES",
    "segmentation_notes",
    "segmentation_rows",
    "study_outputs",
    "write_slice_png",
]

PathLike = Union[str, "os.PathLike[str]"]

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
    """An image, or the image in a file that SimpleITK reads (the module writes NRRD)."""
    return image if isinstance(image, sitk.Image) else sitk.ReadImage(str(image))


def _foreground(label: sitk.Image) -> sitk.Image:
    """uint8 mask of the voxels > 0 (a segmentation exported with several segments counts as one)."""
    return sitk.Cast(label > 0, sitk.sitkUInt8)


def head_volume_ml(label: sitk.Image | PathLike) -> float:
    """Volume of the voxels > 0 of a label image, in mL: voxel count × voxel volume (mm³) / 1000.

    The same figure as ``fetalbiometry volume`` (a test checks), without starting a command.
    """
    mask = _foreground(_read(label))
    voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    return voxels * math.prod(mask.GetSpacing()) / 1000.0


def resample_to_reference(label: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """The mask of ``label`` (voxels > 0) sampled on the grid of ``reference``.

    Nearest-neighbour interpolation in physical space (identity transform), 0 outside
    ``label``: each reference voxel takes the value of the label voxel that contains its centre.
    """
    return sitk.Resample(
        _foreground(label), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, sitk.sitkUInt8
    )


def write_evaluation_inputs(
    prediction: sitk.Image | PathLike, reference: sitk.Image | PathLike, out_dir: PathLike
) -> tuple[Path, Path]:
    """Write the two labels that ``fetalbiometry evaluate`` compares, both on the reference's grid.

    The reference keeps its voxels and the prediction is resampled onto them
    (:func:`resample_to_reference`), so the two may come from different grids (e.g. a reference
    drawn on a cropped volume). Voxels > 0 are the head in both.

    Returns:
        (prediction path, reference path), NRRD files in ``out_dir``.
    """
    reference_mask = _foreground(_read(reference))
    prediction_path = Path(out_dir) / "prediction-on-reference.nrrd"
    reference_path = Path(out_dir) / "reference-mask.nrrd"
    sitk.WriteImage(resample_to_reference(_read(prediction), reference_mask), str(prediction_path), True)
    sitk.WriteImage(reference_mask, str(reference_path), True)
    return prediction_path, reference_path


@dataclass(frozen=True)
class AgreementMetrics:
    """The criteria of the 3D whole-head paper (Eqs. 6-8), as ``fetalbiometry evaluate --json`` prints them."""

    dice: float
    jaccard: float
    conformity: float
    adb_mm: float
    hdb_mm: float
    volume_pred_ml: float
    volume_ref_ml: float


def _json_object(output: str, command: str) -> dict:
    """The first JSON object in a command's output (log lines around it are ignored)."""
    start = output.find("{")
    if start < 0:
        raise ValueError(f"the {command} command printed no JSON result")
    try:
        payload, _ = json.JSONDecoder().raw_decode(output[start:])
    except json.JSONDecodeError as error:
        raise ValueError(f"the {command} command printed invalid JSON: {error}") from None
    return payload


def parse_agreement(output: str) -> AgreementMetrics:
    """Read the JSON object that ``fetalbiometry evaluate --json`` printed.

    Raises:
        ValueError: no JSON object, or one without a criterion.
    """
    payload = _json_object(output, "evaluate")
    names = list(AgreementMetrics.__dataclass_fields__)
    missing = [name for name in names if payload.get(name) is None]
    if missing:
        raise ValueError(f"the evaluate result has no {', '.join(missing)}")
    return AgreementMetrics(**{name: float(payload[name]) for name in names})


#: How the lines of ``fetalbiometry segment`` that the panel shows begin: the spacing the network
#: worked at, each warning about the volume's spacing, and a head volume that is not reported.
SEGMENTATION_NOTE_PREFIXES = ("working spacing:", "fetalbiometry: warning:", "head volume: not reported:")


def segmentation_notes(output: Sequence[str]) -> List[str]:
    """The lines of ``fetalbiometry segment``'s output that the panel shows under its button."""
    return [line.strip() for line in output if line.strip().startswith(SEGMENTATION_NOTE_PREFIXES)]


def segmentation_rows(volume_ml: float, metrics: AgreementMetrics | None = None) -> list[TableRow]:
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
    """``fetalbiometry measure`` found no trustworthy measurement (exit status 3), and says why.

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
    payload = _json_object(output, "measure")
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
    return _xy_mm_to_ijk(ellipse_outline_mm(measurement.ellipse_mm, n), pixel_size_mm)


def ellipse_outline_mm(ellipse_mm: tuple[float, float, float, float, float], n: int = 72) -> np.ndarray:
    """``n`` points of an ellipse (cx, cy, a, b, theta), evenly spaced in its parameter t.

    x = cx + a cos t cos θ − b sin t sin θ, y = cy + a cos t sin θ + b sin t cos θ: the
    convention of ``fetalbiometry.biometry.ellipse`` (HC18; a test checks they agree).

    Returns:
        (n, 2) array of (x, y), in the unit of the ellipse (mm).
    """
    cx, cy, a, b, theta = (float(value) for value in ellipse_mm)
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    x = cx + a * np.cos(t) * math.cos(theta) - b * np.sin(t) * math.sin(theta)
    y = cy + a * np.cos(t) * math.sin(theta) + b * np.sin(t) * math.cos(theta)
    return np.stack([x, y], axis=1)


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
    array = np.asarray(pixels)
    if array.ndim != 2:
        raise ValueError(f"a single image plane is needed, got an array of shape {array.shape}")
    if array.dtype != np.uint8:
        low, high = float(np.min(array)), float(np.max(array))
        scale = 255.0 / (high - low) if high > low else 0.0
        array = np.round((array.astype(float) - low) * scale).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return Path(path)


# --- Sample data --------------------------------------------------------------------------------


def phantom_files(out_dir: PathLike) -> tuple[Path, Path]:
    """The volume and the reference label of the first phantom that ``fetalbiometry synth 3d`` wrote.

    Read from ``manifest.csv`` (columns ``image`` and ``reference``, paths relative to it).

    Raises:
        FileNotFoundError: no manifest, no row, or a file it names is missing.
    """
    manifest = Path(out_dir) / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"fetalbiometry synth wrote no manifest.csv in {out_dir}")
    with open(manifest, newline="", encoding="utf-8") as stream:
        row = next(csv.DictReader(stream), None)
    if row is None or not row.get("image") or not row.get("reference"):
        raise FileNotFoundError(f"{manifest} lists no phantom with an image and a reference")
    image, reference = manifest.parent / row["image"], manifest.parent / row["reference"]
    for path in (image, reference):
        if not path.is_file():
            raise FileNotFoundError(f"{manifest} names {path}, which does not exist")
    return image, reference


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

