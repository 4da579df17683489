"""HC18 images as training samples for the 2D networks, with the MTLN augmentation.

A sample (:func:`make_plane_sample`) is a dict:

- ``"image"``: float32 (1, H, W), intensities / 255, the frame scaled to fit ``spatial_size``
  with its aspect kept and zero-padded at the bottom and right (letterbox);
- ``"label"``: float32 (1, H, W), the filled reference ellipse (1 = head) on that grid;
- ``"ellipse"``: float32 (5,), the ellipse normalised for the MTLN's Ellipse Tuner
  (:func:`fetalbiometry.networks.mtln.encode_ellipse`);
- ``"hc_px"``: the reference HC in pixels of the sample grid (Ramanujan perimeter), the regression
  CNNs' target before division by the training set's maximum;
- ``"hc_mm"``: the reference HC in mm (the CSV value for HC18);
- ``"pixel_size"``: side of a square pixel of the sample grid, mm (the original size divided by
  the scale), so that ``hc_px * pixel_size`` is the HC in mm;
- ``"filename"``, ``"augmentation"``: where it comes from.

Scaling keeps the aspect so that pixels stay square and one pixel size converts every length:
an 800 x 540 frame is scaled by 160/540 to 237 x 160 and padded to the default 256 x 160, a
multiple of 32 for the MTLN's five halvings. (The regression paper stretched its frames to
224 x 224; here they are letterboxed to any ``spatial_size``, e.g. (224, 224).) The label is the
reference ellipse mapped exactly through the scaling and augmentation, then rasterised.

MTLN augmentation (Sobhaninia et al. 2019, ``mtln-multitask-linknet-hc.txt``, section III.B):
"horizontal and vertical flipping, as well as using fixed rotations from -60 to 60 in steps of
20 degrees [...] we remove the corrupted images from the training set and keep images with a
complete fetal head", 999 images becoming 8823: each image, its two flips and its six rotations
(±20°, ±40°, ±60°; 9 x 999 = 8991) less those whose head left the image.
:data:`MTLN_AUGMENTATIONS` lists the nine; :func:`augmentations_keeping_head` drops, offline,
those that move the head (further) out of the image, judged on the exact transformed ellipse.

Usage, split by subject (no subject in both parts)::

    train, validation = split_by_subject(training_records(root), test_fraction=0.1, seed=0)
    train_set = HC18PlaneDataset(train, augmentations=MTLN_AUGMENTATIONS,
                                 transform=BoundaryWeightMapd(keys="label"))
    validation_set = HC18PlaneDataset(validation)

For the regression CNNs add MONAI's ``NormalizeIntensityd(keys="image")`` (z-score per image) and
train on ``sample["hc_px"] / train_set.max_hc_px()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from monai.data import Dataset
from monai.transforms import apply_transform

from fetalbiometry.biometry.ellipse import Ellipse, ellipse_to_mask
from fetalbiometry.biometry.planes import ellipse_overhang
from fetalbiometry.data.hc18 import HC18Record, read_annotation
from fetalbiometry.errors import InputError
from fetalbiometry.networks.mtln import encode_ellipse

__all__ = [
    "DEFAULT_SPATIAL_SIZE",
    "IDENTITY",
    "MTLN_AUGMENTATIONS",
    "HC18PlaneDataset",
    "PlaneAugmentation",
    "affine_ellipse",
    "augmentations_keeping_head",
    "letterbox",
    "letterbox_matrix",
    "make_plane_sample",
]

DEFAULT_SPATIAL_SIZE = (160, 256)
"""(rows, columns) of the samples: HC18's 540 x 800 scaled by 160/540, padded to multiples of 32."""


def _homogeneous(matrix: np.ndarray) -> np.ndarray:
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def affine_ellipse(ellipse: Ellipse, matrix: np.ndarray) -> Ellipse:
    """The image of an ellipse under an affine map of the plane (exact).

    The ellipse's points are ``c + R(θ) diag(a, b) u`` for unit vectors u; the map ``p → A p + t``
    sends them to ``A c + t + A R(θ) diag(a, b) u``. With the singular value decomposition
    ``A R(θ) diag(a, b) = U Σ Vᵀ`` (Vᵀ u is again a unit vector) the result is the ellipse with
    centre ``A c + t``, semi-axes the singular values and its first axis along U's first column.

    Args:
        ellipse: ellipse in pixels (x = column, y = row).
        matrix: 2 x 3 affine matrix ``[A | t]`` acting on (x, y), as for ``cv2.warpAffine`` (or its
            3 x 3 homogeneous form).

    Returns:
        the mapped ellipse, normalised (a >= b, θ in [0, π)).
    """
    matrix = np.asarray(matrix, dtype=np.float64)[:2]
    linear, offset = matrix[:, :2], matrix[:, 2]
    cos, sin = math.cos(ellipse.theta), math.sin(ellipse.theta)
    shape = linear @ np.array([[cos, -sin], [sin, cos]]) @ np.diag([ellipse.a, ellipse.b])
    u, singular, _ = np.linalg.svd(shape)
    cx, cy = linear @ np.array([ellipse.cx, ellipse.cy]) + offset
    angle = math.atan2(u[1, 0], u[0, 0])
    return Ellipse(float(cx), float(cy), float(singular[0]), float(singular[1]), angle).normalized()


def letterbox_matrix(shape: Sequence[int], spatial_size: Sequence[int]) -> tuple[np.ndarray, float]:
    """The scaling of :func:`letterbox` as a matrix on pixel coordinates.

    Args:
        shape: (rows, columns) of the input.
        spatial_size: (rows, columns) of the output.

    Returns:
        (2 x 3 matrix mapping pixel (x, y) to (s(x + ½) − ½, s(y + ½) − ½), the scale s =
        min(rows_out / rows, columns_out / columns)).
    """
    scale = min(spatial_size[0] / shape[0], spatial_size[1] / shape[1])
    shift = 0.5 * scale - 0.5
    return np.array([[scale, 0.0, shift], [0.0, scale, shift]]), scale


def letterbox(image: np.ndarray, spatial_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray, float]:
    """Scale a 2D image to fit ``spatial_size`` keeping its aspect, then zero-pad bottom and right.

    The scale s (:func:`letterbox_matrix`) is applied exactly to both axes (area interpolation,
    ``cv2.resize`` with ``fx = fy = s``), so pixels stay square.

    Args:
        image: 2D array.
        spatial_size: (rows, columns) of the output.

    Returns:
        (scaled image of ``spatial_size`` and the input's dtype, the 2 x 3 matrix mapping input
        pixel coordinates to output ones, the scale s).
    """
    matrix, scale = letterbox_matrix(image.shape, spatial_size)
    out_rows, out_columns = spatial_size
    scaled = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)[:out_rows, :out_columns]
    padded = np.zeros((out_rows, out_columns), dtype=image.dtype)
    padded[: scaled.shape[0], : scaled.shape[1]] = scaled
    return padded, matrix, scale


@dataclass(frozen=True)
class PlaneAugmentation:
    """A fixed flip or rotation of a 2D image about its centre.

    Args:
        name: e.g. ``"rotate+20"``.
        flip_horizontal: mirror left-right (x → columns − 1 − x).
        flip_vertical: mirror top-bottom (y → rows − 1 − y).
        rotation_deg: rotation after the flips, degrees, counter-clockwise as displayed.
    """

    name: str
    flip_horizontal: bool = False
    flip_vertical: bool = False
    rotation_deg: float = 0.0

    def matrix(self, shape: Sequence[int]) -> np.ndarray:
        """The 2 x 3 matrix mapping pixel (x, y) of an image of ``shape`` (rows, columns) to the output."""
        rows, columns = shape
        flip = np.diag([-1.0 if self.flip_horizontal else 1.0, -1.0 if self.flip_vertical else 1.0, 1.0])
        flip[0, 2] = columns - 1.0 if self.flip_horizontal else 0.0
        flip[1, 2] = rows - 1.0 if self.flip_vertical else 0.0
        rotation = cv2.getRotationMatrix2D(((columns - 1) / 2.0, (rows - 1) / 2.0), self.rotation_deg, 1.0)
        return (_homogeneous(rotation) @ flip)[:2]

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Resample a 2D image (bilinear, zero outside)."""
        rows, columns = image.shape
        return cv2.warpAffine(
            image, self.matrix(image.shape), (columns, rows), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )


IDENTITY = PlaneAugmentation("identity")
MTLN_AUGMENTATIONS: tuple[PlaneAugmentation, ...] = (
    IDENTITY,
    PlaneAugmentation("flip-horizontal", flip_horizontal=True),
    PlaneAugmentation("flip-vertical", flip_vertical=True),
    *(PlaneAugmentation(f"rotate{angle:+d}", rotation_deg=float(angle)) for angle in (-60, -40, -20, 20, 40, 60)),
)
"""The MTLN augmentation: the image, its two flips and six fixed rotations (section III.B)."""


def augmentations_keeping_head(
    ellipse: Ellipse, shape: Sequence[int], augmentations: Sequence[PlaneAugmentation] = MTLN_AUGMENTATIONS
) -> list[PlaneAugmentation]:
    """The augmentations that do not move the head out of the image.

    An augmentation is dropped when the transformed ellipse runs out of the image
    (:func:`~fetalbiometry.biometry.ellipse_overhang`) further than the original does: a head
    whole in the original must stay whole, and one the sonographer already cut at the border may
    not lose more. The identity is always kept.

    Args:
        ellipse: the head ellipse in pixels of an image of ``shape``.
        shape: (rows, columns).
        augmentations: the candidates.

    Returns:
        the kept augmentations, in input order.
    """
    allowed = max(ellipse_overhang(ellipse, shape), 0.0) + 1e-6

    def keeps_head(augmentation: PlaneAugmentation) -> bool:
        moved = affine_ellipse(ellipse, augmentation.matrix(shape))
        return augmentation == IDENTITY or ellipse_overhang(moved, shape) <= allowed

    return [augmentation for augmentation in augmentations if keeps_head(augmentation)]


def make_plane_sample(
    image: np.ndarray,
    ellipse: Ellipse,
    pixel_size: float,
    spatial_size: Sequence[int] = DEFAULT_SPATIAL_SIZE,
    augmentation: PlaneAugmentation = IDENTITY,
    filename: str = "",
    hc_mm: float | None = None,
) -> dict[str, Any]:
    """A training sample (see the module docstring) from a 2D frame and its head ellipse.

    Args:
        image: 2D frame (rows, columns), 8-bit intensities.
        ellipse: the reference ellipse in pixels of ``image``.
        pixel_size: side of a square pixel of ``image``, mm.
        spatial_size: (rows, columns) of the sample.
        augmentation: flip or rotation applied after scaling.
        filename: kept in the sample.
        hc_mm: reference HC in mm; the ellipse's perimeter in mm when None.

    Returns:
        the sample dict.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"expected a 2D frame, got shape {image.shape}")
    scaled, scaling, scale = letterbox(image.astype(np.float32) / 255.0, spatial_size)
    moved = affine_ellipse(ellipse, _homogeneous(augmentation.matrix(spatial_size)) @ _homogeneous(scaling))
    out_pixel_size = pixel_size / scale
    return {
        "image": augmentation.apply(scaled)[None],
        "label": ellipse_to_mask(moved, tuple(spatial_size)).astype(np.float32)[None],
        "ellipse": encode_ellipse(moved, spatial_size),
        "hc_px": moved.circumference,
        "hc_mm": moved.circumference * out_pixel_size if hc_mm is None else hc_mm,
        "pixel_size": out_pixel_size,
        "filename": filename,
        "augmentation": augmentation.name,
    }


def _read_frame(record: HC18Record) -> np.ndarray:
    image = cv2.imread(str(record.image_path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise InputError(f"cannot read image: {record.image_path}")
    return image


class HC18PlaneDataset(Dataset):
    """HC18 training records as samples of :func:`make_plane_sample`, optionally augmented offline.

    At construction each record's annotation is read and fitted once, and the record is expanded
    into one item per augmentation that keeps its head in the image
    (:func:`augmentations_keeping_head`); images are read when an item is fetched.

    Args:
        records: HC18 records with annotations (e.g. one side of ``split_by_subject``).
        spatial_size: (rows, columns) of the samples.
        augmentations: per record, e.g. :data:`MTLN_AUGMENTATIONS`; the identity alone by default.
        transform: applied to each sample dict (e.g. ``BoundaryWeightMapd``).

    Raises:
        InputError: a record has no annotation.
    """

    def __init__(
        self,
        records: Sequence[HC18Record],
        spatial_size: Sequence[int] = DEFAULT_SPATIAL_SIZE,
        augmentations: Sequence[PlaneAugmentation] = (IDENTITY,),
        transform: Callable | None = None,
    ) -> None:
        self.spatial_size = tuple(spatial_size)
        items = []
        for record in records:
            annotation = read_annotation(record)
            scaling, _ = letterbox_matrix(annotation.mask.shape, self.spatial_size)
            resized = affine_ellipse(annotation.ellipse_px, scaling)
            item = {"record": record, "ellipse": annotation.ellipse_px, "hc_px": resized.circumference}
            kept = augmentations_keeping_head(resized, self.spatial_size, augmentations)
            items.extend({**item, "augmentation": augmentation} for augmentation in kept)
        super().__init__(items, transform)

    def _transform(self, index: int) -> dict[str, Any]:
        item = self.data[index]
        record = item["record"]
        sample = make_plane_sample(
            _read_frame(record),
            item["ellipse"],
            record.pixel_size_mm,
            self.spatial_size,
            item["augmentation"],
            record.filename,
            record.hc_mm,
        )
        return apply_transform(self.transform, sample) if self.transform is not None else sample

    def max_hc_px(self) -> float:
        """The largest reference HC, in pixels of the sample grid: the regression CNNs' normaliser.

        Raises:
            InputError: the dataset is empty.
        """
        if not self.data:
            raise InputError("the dataset is empty: no HC to normalise by")
        return max(item["hc_px"] for item in self.data)
