"""Segmentation and biometry agreement metrics in physical units.

Region and boundary criteria of the 3D whole-head paper (Yang et al., "Hybrid attention for
automatic segmentation of whole fetal head in prenatal ultrasound volumes", Eqs. 6-8): Dice
similarity coefficient (DSC), Jaccard, conformity (Chang et al.), average and Hausdorff
distance of boundaries (Adb, Hdb); the volume of a mask; and the HC difference DF / ADF of the
multi-task LinkNet paper (Eqs. 10-11).

Conventions shared by every function here:

- Masks are 2D or 3D numpy arrays holding only 0 and 1 (or bool). ``pred`` is the
  segmentation E, ``ref`` the reference (ground truth) G, on the same voxel grid.
- ``spacing`` is the voxel size in mm in ARRAY AXIS ORDER, i.e. in the order of
  ``mask.shape`` ((z, y, x) or (y, x) for arrays from SimpleITK, the reverse of
  ``SimpleITK.Image.GetSpacing()``). Distances are in mm, volumes in mL.
- Boundary (the surfaces eE, eG of Eq. 7-8): the voxels of the mask that have at least one
  face neighbour (4-neighbourhood in 2D, 6-neighbourhood in 3D) in the background or outside
  the array, i.e. ``mask & ~binary_erosion(mask)`` with a zero border, as computed by
  :func:`monai.metrics.utils.get_mask_edges`. Distances are Euclidean between voxel centres.
- Empty masks: an empty reference makes every pairwise criterion undefined and raises
  :class:`~fetalbiometry.errors.EmptyMaskError`. An empty prediction against a non-empty
  reference is a complete miss: DSC = Jaccard = 0, conformity = -inf (its limit as DSC -> 0),
  Adb = Hdb = inf.

MONAI's ignite handlers (``HausdorffDistance``, ``SurfaceDistance``) call its distance metrics
without a spacing, i.e. in voxels; evaluation in mm must go through these functions instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import SimpleITK as sitk

from fetalbiometry.errors import EmptyMaskError, GeometryMismatchError, InputError
from fetalbiometry.io import array_spacing, check_same_grid

__all__ = [
    "SegmentationMetrics",
    "SegmentationMetricsAccumulator",
    "average_boundary_distance",
    "check_label_image",
    "circumference_difference",
    "compute_segmentation_metrics",
    "conformity",
    "conformity_from_dice",
    "dice",
    "evaluate_images",
    "hausdorff_boundary_distance",
    "head_volume_flag",
    "jaccard",
    "label_mask",
    "label_volume_ml",
    "volume_ml",
]

_MM3_PER_ML = 1000.0


def _binary_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """Return ``mask`` as a bool array after checking it is a 2D/3D array of 0 and 1."""
    array = np.asarray(mask)
    if array.ndim not in (2, 3):
        raise InputError(f"mask '{name}' must be 2D or 3D, got {array.ndim}D (shape {array.shape})")
    if array.dtype == bool:
        return array
    if not np.all((array == 0) | (array == 1)):
        others = np.setdiff1d(np.unique(array), [0, 1])
        raise InputError(
            f"mask '{name}' is not binary: it holds values other than 0 and 1 (e.g. {others[0]}); "
            "threshold it or select one label first"
        )
    return array.astype(bool)


def _mask_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check that ``pred`` and ``ref`` are binary masks of one shape with a non-empty ``ref``."""
    pred_mask, ref_mask = _binary_mask(pred, "prediction"), _binary_mask(ref, "reference")
    if pred_mask.shape != ref_mask.shape:
        raise GeometryMismatchError(
            f"prediction shape {pred_mask.shape} differs from reference shape {ref_mask.shape}"
        )
    if not ref_mask.any():
        raise EmptyMaskError("the reference mask is empty: overlap and boundary distances are undefined")
    return pred_mask, ref_mask


def _checked_spacing(spacing: Sequence[float], ndim: int) -> np.ndarray:
    """Return ``spacing`` as a float array after checking one finite positive value per axis."""
    values = np.asarray(spacing, dtype=float).ravel()
    if values.size != ndim:
        raise InputError(f"spacing {tuple(values)} must give one value per array axis ({ndim})")
    if not np.all(np.isfinite(values) & (values > 0)):
        raise InputError(f"spacing {tuple(values)} must be finite and positive (mm)")
    return values


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice similarity coefficient DSC = 2|E ∩ G| / (|E| + |G|) (Eq. 6).

    Args:
        pred: segmentation mask E (2D or 3D, 0/1).
        ref: reference mask G, same shape, not empty.

    Returns:
        DSC in [0, 1]; 0 for an empty prediction.

    Raises:
        EmptyMaskError: ``ref`` is empty.
    """
    pred_mask, ref_mask = _mask_pair(pred, ref)
    overlap = np.count_nonzero(pred_mask & ref_mask)
    return float(2.0 * overlap / (np.count_nonzero(pred_mask) + np.count_nonzero(ref_mask)))


def jaccard(pred: np.ndarray, ref: np.ndarray) -> float:
    """Jaccard index |E ∩ G| / |E ∪ G| (Eq. 6).

    Args:
        pred: segmentation mask E (2D or 3D, 0/1).
        ref: reference mask G, same shape, not empty.

    Returns:
        Jaccard in [0, 1]; 0 for an empty prediction.

    Raises:
        EmptyMaskError: ``ref`` is empty.
    """
    pred_mask, ref_mask = _mask_pair(pred, ref)
    return float(np.count_nonzero(pred_mask & ref_mask) / np.count_nonzero(pred_mask | ref_mask))


def conformity_from_dice(dsc: float) -> float:
    """Conformity (3·DSC - 2) / DSC of Chang et al., as used in the 3D whole-head paper.

    Conformity is 1 for a perfect overlap, 0 at DSC = 2/3 and tends to -inf as DSC -> 0; it
    spreads the high-DSC range, where segmentations differ, over a wider scale.

    Args:
        dsc: Dice similarity coefficient in [0, 1].

    Returns:
        Conformity in [-inf, 1]; ``-inf`` for DSC = 0 (the limit; the formula divides by 0).
    """
    if not 0.0 <= dsc <= 1.0:
        raise InputError(f"DSC must lie in [0, 1], got {dsc}")
    if dsc == 0.0:
        return float("-inf")
    return (3.0 * dsc - 2.0) / dsc


def conformity(pred: np.ndarray, ref: np.ndarray) -> float:
    """Conformity (3·DSC - 2) / DSC of ``pred`` against ``ref``; see :func:`conformity_from_dice`.

    Args:
        pred: segmentation mask E (2D or 3D, 0/1).
        ref: reference mask G, same shape, not empty.

    Returns:
        Conformity in [-inf, 1]; ``-inf`` for an empty or disjoint prediction.

    Raises:
        EmptyMaskError: ``ref`` is empty.
    """
    return conformity_from_dice(dice(pred, ref))


def _boundary_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each boundary voxel of G to the boundary of E, and from eE to eG.

    Returns ``(ref_to_pred, pred_to_ref)`` as float64 arrays; both are ``[inf]`` when the
    prediction is empty.
    """
    pred_mask, ref_mask = _mask_pair(pred, ref)
    voxel_size = _checked_spacing(spacing, pred_mask.ndim)
    if not pred_mask.any():
        return np.array([np.inf]), np.array([np.inf])
    # ``spacing`` must NOT go to get_mask_edges: with it, MONAI switches to sub-voxel edge codes
    # from 2x2(x2) neighbourhoods, located on a grid offset by half a voxel, instead of the
    # voxel boundary by binary erosion that we define above. Its crop to the union bounding box
    # (margin 1, zero padding) keeps both masks aligned and keeps array-border voxels as boundary.
    # Imported here: MONAI takes seconds to import, and volumes and overlaps do not need it.
    from monai.metrics.utils import get_mask_edges, get_surface_distance

    edges_pred, edges_ref = get_mask_edges(pred_mask, ref_mask, crop=True)  # numpy in, numpy out
    # On numpy input get_surface_distance queries a KD-tree of the scaled edge coordinates (exact
    # Euclidean distances), but returns float32: widen before any averaging.
    ref_to_pred = get_surface_distance(edges_ref, edges_pred, distance_metric="euclidean", spacing=voxel_size)
    pred_to_ref = get_surface_distance(edges_pred, edges_ref, distance_metric="euclidean", spacing=voxel_size)
    return np.asarray(ref_to_pred, dtype=np.float64), np.asarray(pred_to_ref, dtype=np.float64)


def _average_of_directed_means(ref_to_pred: np.ndarray, pred_to_ref: np.ndarray) -> float:
    return 0.5 * (float(ref_to_pred.mean()) + float(pred_to_ref.mean()))


def _symmetric_hausdorff(ref_to_pred: np.ndarray, pred_to_ref: np.ndarray, percentile: float | None) -> float:
    if percentile is None:
        return float(max(ref_to_pred.max(), pred_to_ref.max()))
    if not 0.0 <= percentile <= 100.0:
        raise InputError(f"Hausdorff percentile must lie in [0, 100], got {percentile}")
    if np.isinf(ref_to_pred).any():
        return float("inf")
    return float(max(np.percentile(ref_to_pred, percentile), np.percentile(pred_to_ref, percentile)))


def average_boundary_distance(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """Average distance of boundaries Adb (Eq. 7), in mm.

    Adb = 0.5 · (mean over eG of the distance to eE + mean over eE of the distance to eG). Eq. 7
    prints |G| and |E| as denominators, but its sums run over the boundary voxels eG and eE, so
    the denominators are taken as the numbers of boundary voxels (a mean distance, in mm).

    Args:
        pred: segmentation mask E (2D or 3D, 0/1).
        ref: reference mask G, same shape, not empty.
        spacing: voxel size in mm, in array axis order.

    Returns:
        Adb in mm; ``inf`` for an empty prediction.

    Raises:
        EmptyMaskError: ``ref`` is empty.
    """
    return _average_of_directed_means(*_boundary_distances(pred, ref, spacing))


def hausdorff_boundary_distance(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], percentile: float | None = None
) -> float:
    """Hausdorff distance of boundaries Hdb = max(H(eG, eE), H(eE, eG)) (Eq. 8), in mm.

    Args:
        pred: segmentation mask E (2D or 3D, 0/1).
        ref: reference mask G, same shape, not empty.
        spacing: voxel size in mm, in array axis order.
        percentile: if given (e.g. 95), each directed distance H takes this percentile of the
            boundary distances instead of their maximum, and Hdb is the larger of the two, as in
            :class:`monai.metrics.HausdorffDistanceMetric`; always <= the plain Hdb.

    Returns:
        Hdb in mm; ``inf`` for an empty prediction.

    Raises:
        EmptyMaskError: ``ref`` is empty.
    """
    return _symmetric_hausdorff(*_boundary_distances(pred, ref, spacing), percentile)


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a 3D mask (or area of a 2D mask, mm² / 1000) as voxel count × voxel volume.

    Args:
        mask: binary mask (2D or 3D, 0/1); may be empty.
        spacing: voxel size in mm, in array axis order.

    Returns:
        Volume in mL (cm³).
    """
    binary = _binary_mask(mask, "mask")
    voxel_mm3 = float(np.prod(_checked_spacing(spacing, binary.ndim)))
    return float(np.count_nonzero(binary) * voxel_mm3 / _MM3_PER_ML)


def circumference_difference(
    pred: float | np.ndarray, ref: float | np.ndarray
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Difference DF = HC_pred - HC_ref and absolute difference ADF = |DF| (MTLN paper, Eqs. 10-11).

    Args:
        pred: predicted circumference(s) in mm (a scalar or an array).
        ref: reference circumference(s) in mm, same shape as ``pred``.

    Returns:
        ``(DF, ADF)`` in mm: floats for scalar input, arrays otherwise. NaN (a missing
        measurement) propagates.
    """
    pred_mm, ref_mm = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
    if pred_mm.shape != ref_mm.shape:
        raise InputError(f"predicted circumferences {pred_mm.shape} and references {ref_mm.shape} differ in shape")
    difference = pred_mm - ref_mm
    if difference.ndim == 0:
        return float(difference), float(abs(difference))
    return difference, np.abs(difference)


@dataclass(frozen=True)
class SegmentationMetrics:
    """The five criteria of the 3D whole-head paper plus both volumes, for one case.

    Attributes:
        dice: DSC (Eq. 6), in [0, 1].
        jaccard: Jaccard (Eq. 6), in [0, 1].
        conformity: (3·DSC - 2) / DSC, in [-inf, 1].
        adb_mm: average distance of boundaries (Eq. 7), mm.
        hdb_mm: Hausdorff distance of boundaries (Eq. 8; a percentile of it if one was asked), mm.
        volume_pred_ml: volume of the segmentation, mL.
        volume_ref_ml: volume of the reference, mL.
    """

    dice: float
    jaccard: float
    conformity: float
    adb_mm: float
    hdb_mm: float
    volume_pred_ml: float
    volume_ref_ml: float

    def as_dict(self) -> dict[str, float]:
        """Return the metrics as ``{field name: value}``, in field order."""
        return asdict(self)


def compute_segmentation_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], hd_percentile: float | None = None
) -> SegmentationMetrics:
    """Compute all :class:`SegmentationMetrics` of ``pred`` against ``ref`` in one pass.

    Args:
        pred: segmentation mask E (2D or 3D, 0/1).
        ref: reference mask G, same shape, not empty.
        spacing: voxel size in mm, in array axis order.
        hd_percentile: optional percentile for Hdb (see :func:`hausdorff_boundary_distance`).

    Returns:
        The metrics; see the module docstring for an empty prediction.

    Raises:
        EmptyMaskError: ``ref`` is empty.
    """
    pred_mask, ref_mask = _mask_pair(pred, ref)  # validated once; bool masks pass the checks below for free
    dsc = dice(pred_mask, ref_mask)
    ref_to_pred, pred_to_ref = _boundary_distances(pred_mask, ref_mask, spacing)
    return SegmentationMetrics(
        dice=dsc,
        jaccard=jaccard(pred_mask, ref_mask),
        conformity=conformity_from_dice(dsc),
        adb_mm=_average_of_directed_means(ref_to_pred, pred_to_ref),
        hdb_mm=_symmetric_hausdorff(ref_to_pred, pred_to_ref, hd_percentile),
        volume_pred_ml=volume_ml(pred_mask, spacing),
        volume_ref_ml=volume_ml(ref_mask, spacing),
    )


def check_label_image(label: sitk.Image, name: str = "label") -> None:
    """Refuse an image that is not a label: a float image holding values other than 0 and 1.

    Integer images are labels whatever their values (multi-label files keep the "everything > 0"
    rule of :func:`label_mask`); a float image is accepted only when it is exactly binary, so a
    probability map or an intensity volume is never measured as if it were a segmentation.

    Raises:
        InputError: naming the image and its value range.
    """
    if label.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{name} is not a label: it has {label.GetNumberOfComponentsPerPixel()} components per voxel")
    array = sitk.GetArrayViewFromImage(label)
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return
    if not np.isin(array, (0.0, 1.0)).all():
        low, high = float(np.min(array)), float(np.max(array))
        raise InputError(
            f"{name} is not a label: {label.GetPixelIDTypeAsString()} values from {low:g} to {high:g}; "
            "expected integers or exactly 0 and 1 (threshold a probability map first)"
        )


def label_mask(label: sitk.Image, label_value: int | None = None) -> np.ndarray:
    """The structure of a label image as a bool array in (z, y, x) order.

    Args:
        label: a label image (any integer or float pixel type).
        label_value: keep only voxels of this value; by default every voxel > 0 is kept, so a
            0/1, 0/255 or multi-label file all give the whole labelled structure.
    """
    array = sitk.GetArrayViewFromImage(label)
    return array > 0 if label_value is None else array == label_value


def label_volume_ml(label: sitk.Image, label_value: int | None = None) -> float:
    """Volume (mL) of a label image's structure, from its own spacing (see :func:`label_mask`)."""
    return volume_ml(label_mask(label, label_value), array_spacing(label))


def evaluate_images(
    pred: sitk.Image,
    ref: sitk.Image,
    hd_percentile: float | None = None,
    names: tuple[str, str] = ("prediction", "reference"),
) -> SegmentationMetrics:
    """Compute :class:`SegmentationMetrics` of two label images that share one grid.

    Physical positions are origin + direction · diag(spacing) · index; the direction matrix is
    orthonormal, so the distance between two voxels depends on the index difference and the
    spacing only. Spacing therefore suffices for every distance and volume, whatever the
    orientation of the grid.

    Args:
        pred: segmentation label image, 2D or 3D; every voxel > 0 is the structure.
        ref: reference label image on the same grid (size, spacing, origin, direction).
        hd_percentile: optional percentile for Hdb (see :func:`hausdorff_boundary_distance`).
        names: what to call the two images in a geometry-mismatch message (e.g. file paths).

    Returns:
        The metrics of ``pred`` against ``ref``.

    Raises:
        GeometryMismatchError: the two grids differ.
        EmptyMaskError: ``ref`` is empty.
    """
    check_same_grid(pred, ref, names=names)
    return compute_segmentation_metrics(
        label_mask(pred),
        label_mask(ref),
        array_spacing(ref),
        hd_percentile=hd_percentile,
    )


class SegmentationMetricsAccumulator:
    """Collect :class:`SegmentationMetrics` case by case and summarise them over a data set.

    Example::

        accumulator = SegmentationMetricsAccumulator()
        for pred, ref in cases:
            accumulator.append(evaluate_images(pred, ref))
        summary = accumulator.aggregate()  # {"dice": {"mean": ..., "sd": ...}, ...}
    """

    def __init__(self) -> None:
        self._cases: list[SegmentationMetrics] = []

    def append(self, metrics: SegmentationMetrics) -> None:
        """Add the metrics of one case."""
        self._cases.append(metrics)

    def reset(self) -> None:
        """Forget every case."""
        self._cases.clear()

    def __len__(self) -> int:
        return len(self._cases)

    def aggregate(self) -> dict[str, dict[str, float]]:
        """Return the mean and the sample standard deviation (n - 1) of every metric.

        Returns:
            ``{metric name: {"mean": m, "sd": s}}``; ``sd`` is NaN for a single case. A case
            with an infinite distance (an empty prediction) makes that mean infinite.

        Raises:
            InputError: no case was appended.
        """
        if not self._cases:
            raise InputError("no case to aggregate: append metrics first")
        table = np.array([[getattr(case, f.name) for f in fields(SegmentationMetrics)] for case in self._cases])
        sd = table.std(axis=0, ddof=1) if len(self._cases) > 1 else np.full(table.shape[1], np.nan)
        return {
            f.name: {"mean": float(mean), "sd": float(s)}
            for f, mean, s in zip(fields(SegmentationMetrics), table.mean(axis=0), sd)
        }


PLAUSIBLE_HEAD_VOLUME_ML = (5.0, 1000.0)
"""Whole-fetal-head volumes (mL) of the gestational range, with margins: about 13 mL at 14 weeks,
about 750 mL for the largest heads at 40 weeks (the growth charts' HC of the phantoms' anatomy)."""


def head_volume_flag(volume_ml: float) -> str | None:
    """Why a segmented whole-fetal-head volume must not be reported as a number; None when it may.

    The rule that ``fetalbiometry segment``, the study and the Slicer panel share: an empty
    segmentation found no head, and a volume outside :data:`PLAUSIBLE_HEAD_VOLUME_ML` is no head of
    the gestational range (often a wrong spacing, or something else segmented).
    """
    low, high = PLAUSIBLE_HEAD_VOLUME_ML
    if not np.isfinite(volume_ml):
        return f"head volume is not a finite number ({volume_ml})"
    if volume_ml <= 0.0:
        return "empty segmentation: no head found"
    if not low <= volume_ml <= high:
        return (
            f"implausible head volume {volume_ml:.1f} mL, outside the {low:g}-{high:g} mL of a fetal head "
            "from 14 to 40 weeks: check the volume's spacing"
        )
    return None
