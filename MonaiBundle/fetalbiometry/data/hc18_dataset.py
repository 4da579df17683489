"""Standard-plane frames as training samples for the 2D networks, with the MTLN augmentation.

A frame's reference is its structure (:data:`PlaneStructure`): the head or abdomen ellipse, or
the femur's bar (a :class:`~fetalbiometry.biometry.Rectangle` between the two end points). A sample
(:func:`make_plane_sample`) is a dict:

- ``"image"``: float32 (1, H, W), intensities / 255, the frame scaled to fit ``spatial_size``
  with its aspect kept and zero-padded at the bottom and right (letterbox);
- ``"label"``: float32 (1, H, W), the filled reference structure (1 = head, abdomen or femur) on
  that grid, or with ``label_supersampling`` the fraction of each pixel inside it;
- ``"ellipse"``: float32 (5,), the ellipse normalised for the MTLN's Ellipse Tuner
  (:func:`fetalbiometry.networks.mtln.encode_ellipse`); for a femur, the ellipse inscribed in
  its bar;
- ``"hc_px"``: the reference measurement in pixels of the sample grid: the HC (Ramanujan
  perimeter), the regression CNNs' target before division by the training set's maximum; for
  the other planes of the multi-task U-Net the AC, or the FL (the bar's length). The key names
  follow HC18, where every frame is a head;
- ``"hc_mm"``: the reference measurement in mm (the CSV value for HC18);
- ``"pixel_size"``: side of a square pixel of the sample grid, mm (the original size divided by
  the scale and the augmentation's zoom), so that ``hc_px * pixel_size`` is the measurement in mm;
- ``"plane"``: int64, the plane's index in :data:`~fetalbiometry.biometry.PLANE_CLASSES`
  (0 = head for HC18), the multi-task U-Net's class target;
- ``"filename"``, ``"augmentation"``: where it comes from.

Scaling keeps the aspect so that pixels stay square and one pixel size converts every length:
an 800 x 540 frame is scaled by 160/540 to 237 x 160 and padded to the default 256 x 160, a
multiple of 32 for the MTLN's five halvings. (The regression paper stretched its frames to
224 x 224; here they are letterboxed to any ``spatial_size``, e.g. (224, 224).) The label is the
reference structure mapped exactly through the scaling and augmentation (both similarities: one
scale, rotations and flips), then rasterised.

MTLN augmentation (Sobhaninia et al. 2019, ``mtln-multitask-linknet-hc.txt``, section III.B):
"horizontal and vertical flipping, as well as using fixed rotations from -60 to 60 in steps of
20 degrees [...] we remove the corrupted images from the training set and keep images with a
complete fetal head", 999 images becoming 8823: each image, its two flips and its six rotations
(±20°, ±40°, ±60°; 9 x 999 = 8991) less those whose head left the image.
:data:`MTLN_AUGMENTATIONS` lists the nine; :func:`augmentations_keeping_head` drops, offline,
those that move the head (further) out of the image, judged on the exact transformed ellipse.
:class:`PlaneSampleDataset` does this for any annotated frames (:class:`AnnotatedPlane`: a user's
datalist, :mod:`fetalbiometry.data.plane_dataset`); :class:`HC18PlaneDataset` for HC18 records.

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
from functools import partial
from typing import Any, Union

import cv2
import numpy as np
from monai.data import Dataset
from monai.transforms import apply_transform

from fetalbiometry.biometry.ellipse import Ellipse, ellipse_to_mask
from fetalbiometry.biometry.planes import PLANE_CLASSES, ellipse_bounding_box, ellipse_overhang
from fetalbiometry.biometry.rectangle import Rectangle, rectangle_to_mask
from fetalbiometry.data.hc18 import HC18Record, read_annotation, read_frame
from fetalbiometry.errors import InputError
from fetalbiometry.networks.mtln import encode_ellipse

__all__ = [
    "DEFAULT_SPATIAL_SIZE",
    "IDENTITY",
    "HeadCrop",
    "MTLN_AUGMENTATIONS",
    "ZOOM_AUGMENTATIONS",
    "AnnotatedPlane",
    "HC18PlaneDataset",
    "PlaneAugmentation",
    "PlaneSampleDataset",
    "PlaneStructure",
    "affine_ellipse",
    "affine_rectangle",
    "affine_structure",
    "augmentations_keeping_head",
    "crop_structure",
    "hc18_plane",
    "require_head_crop",
    "letterbox",
    "letterbox_matrix",
    "make_plane_sample",
    "structure_area_fractions",
    "measured_length",
    "structure_overhang",
    "structure_to_mask",
]

PlaneStructure = Union[Ellipse, Rectangle]
"""A frame's reference structure: the head or abdomen ellipse, or the femur's bar, in pixels."""

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


def affine_rectangle(rectangle: Rectangle, matrix: np.ndarray) -> Rectangle:
    """The image of a rectangle under a similarity of the plane (exact).

    A similarity (one scale s, a rotation, possibly a flip, a translation: the letterbox and the
    MTLN augmentations) maps the rectangle to the rectangle with centre ``A c + t``, sides times
    s, its long side along ``A (cos θ, sin θ)``. Other affine maps shear it into a parallelogram.

    Args:
        rectangle: rectangle in pixels (x = column, y = row).
        matrix: 2 x 3 affine matrix ``[A | t]`` acting on (x, y) (or its 3 x 3 homogeneous form).

    Returns:
        the mapped rectangle, its angle in [0, π).

    Raises:
        ValueError: ``matrix`` is not a similarity.
    """
    matrix = np.asarray(matrix, dtype=np.float64)[:2]
    linear, offset = matrix[:, :2], matrix[:, 2]
    scale = math.sqrt(abs(np.linalg.det(linear)))
    if not np.allclose(linear.T @ linear, scale**2 * np.eye(2), rtol=1e-9, atol=1e-12):
        raise ValueError("a rectangle stays a rectangle only under a similarity (scale, rotation, flip)")
    direction = linear @ np.array([math.cos(rectangle.angle), math.sin(rectangle.angle)])
    cx, cy = linear @ np.asarray(rectangle.center, dtype=np.float64) + offset
    angle = math.atan2(direction[1], direction[0]) % math.pi
    return Rectangle((float(cx), float(cy)), scale * rectangle.length, scale * rectangle.width, angle)


def affine_structure(structure: PlaneStructure, matrix: np.ndarray) -> PlaneStructure:
    """The image of a structure under an affine map (:func:`affine_ellipse`, :func:`affine_rectangle`)."""
    if isinstance(structure, Rectangle):
        return affine_rectangle(structure, matrix)
    return affine_ellipse(structure, matrix)


def structure_to_mask(structure: PlaneStructure, shape: Sequence[int]) -> np.ndarray:
    """Rasterise a structure: the pixels of ``shape`` (rows, columns) whose centres lie in it."""
    if isinstance(structure, Rectangle):
        return rectangle_to_mask(structure, tuple(shape))
    return ellipse_to_mask(structure, tuple(shape))


def structure_area_fractions(structure: PlaneStructure, shape: Sequence[int], supersampling: int = 1) -> np.ndarray:
    """The fraction of each pixel of ``shape`` (rows, columns) that a structure covers, float32 in [0, 1].

    Each pixel is sampled at ``supersampling``² points of a regular sub-grid (the pixel centre
    alone for 1, which is :func:`structure_to_mask`). A training target made this way keeps where
    the reference boundary runs inside a pixel, which a 0/1 mask rounds to the pixel: on an HC18
    frame letterboxed to 160 x 256, one network pixel is 3.4 frame pixels.

    Raises:
        InputError: ``supersampling`` is not a positive integer.
    """
    if isinstance(supersampling, bool) or not isinstance(supersampling, int) or supersampling < 1:
        raise InputError(f"label supersampling must be a positive integer, got {supersampling!r}")
    rows, columns = shape
    if supersampling == 1:
        return structure_to_mask(structure, shape).astype(np.float32)
    fine_shape = (rows * supersampling, columns * supersampling)
    fine_matrix, _ = letterbox_matrix(shape, fine_shape)  # pixel (x, y) -> s(x + 1/2) - 1/2 on the sub-grid
    fine = structure_to_mask(affine_structure(structure, fine_matrix), fine_shape).astype(np.float32)
    return fine.reshape(rows, supersampling, columns, supersampling).mean(axis=(1, 3))


def structure_overhang(structure: PlaneStructure, shape: Sequence[int]) -> float:
    """How far (pixels) a structure runs out of an image of ``shape``; zero or negative inside.

    As :func:`~fetalbiometry.biometry.ellipse_overhang` (the image spans the pixel edges
    −0.5 … size − 0.5), for a rectangle by its corners.
    """
    if not isinstance(structure, Rectangle):
        return ellipse_overhang(structure, shape)
    rows, columns = shape
    x, y = structure.corners.T
    return float(max(-0.5 - x.min(), -0.5 - y.min(), x.max() - (columns - 0.5), y.max() - (rows - 0.5)))


def measured_length(structure: PlaneStructure) -> float:
    """What a plane's biometry measures (pixels): the ellipse's Ramanujan perimeter (HC, AC), the bar's length (FL)."""
    if isinstance(structure, Rectangle):
        return structure.length
    return structure.circumference


def _tuner_ellipse(structure: PlaneStructure) -> Ellipse:
    """The ellipse of a structure for the Ellipse Tuner's target: itself, or inscribed in a femur bar."""
    if isinstance(structure, Rectangle):
        return Ellipse(*structure.center, 0.5 * structure.length, 0.5 * structure.width, structure.angle)
    return structure


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
    """A fixed flip, rotation or zoom of a 2D image about its centre.

    Args:
        name: e.g. ``"rotate+20"``.
        flip_horizontal: mirror left-right (x → columns − 1 − x).
        flip_vertical: mirror top-bottom (y → rows − 1 − y).
        rotation_deg: rotation after the flips, degrees, counter-clockwise as displayed.
        zoom: scale factor applied with the rotation (> 1 enlarges); lengths in pixels scale by it,
            so the sample's pixel size is divided by it.

    Raises:
        InputError: a zoom that is not positive and finite.
    """

    name: str
    flip_horizontal: bool = False
    flip_vertical: bool = False
    rotation_deg: float = 0.0
    zoom: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.zoom) and self.zoom > 0):
            raise InputError(f"augmentation {self.name!r}: zoom must be positive and finite, got {self.zoom}")

    def matrix(self, shape: Sequence[int]) -> np.ndarray:
        """The 2 x 3 matrix mapping pixel (x, y) of an image of ``shape`` (rows, columns) to the output."""
        rows, columns = shape
        flip = np.diag([-1.0 if self.flip_horizontal else 1.0, -1.0 if self.flip_vertical else 1.0, 1.0])
        flip[0, 2] = columns - 1.0 if self.flip_horizontal else 0.0
        flip[1, 2] = rows - 1.0 if self.flip_vertical else 0.0
        rotation = cv2.getRotationMatrix2D(((columns - 1) / 2.0, (rows - 1) / 2.0), self.rotation_deg, self.zoom)
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

ZOOM_AUGMENTATIONS: tuple[PlaneAugmentation, ...] = (
    PlaneAugmentation("zoom0.80", zoom=0.8),
    PlaneAugmentation("zoom1.25", zoom=1.25),
)
"""Not in the MTLN paper: the image shrunk by 0.8 and enlarged by 1.25 about its centre, so that
the network sees each head at more than one size (an enlargement is dropped where the head would
leave the image, like any augmentation). The shipped HC model is trained without them
(docs/biometry.md measures them). Add them with ``--augmentations
'$fetalbiometry.data.hc18_dataset.MTLN_AUGMENTATIONS + fetalbiometry.data.hc18_dataset.ZOOM_AUGMENTATIONS'``."""


@dataclass(frozen=True)
class HeadCrop:
    """A window of the frame around the head, for a second, finer look at it.

    Letterboxed whole, an HC18 frame spans the network's input at one scale, so a small head covers
    few network pixels. The window is the head's bounding box enlarged by ``margin``, widened to the
    input's aspect and kept inside the frame; letterboxed, it shows the head ``zoom`` times larger
    than the whole frame does. Inference (:class:`fetalbiometry.planes2d.predictor.PlanePredictor`) takes
    the window around the ellipse of a first look at the whole frame and looks again; training
    (:class:`PlaneSampleDataset`) adds the window around the reference ellipse as more samples, so
    that the second look sees what the network was trained on. Not in the MTLN paper: the common
    two-stage scheme of finding the structure, then segmenting it in a window (docs/biometry.md
    measures it).

    With ``look_size`` larger than the network's ``spatial_size`` the second look is a finer look at
    nearly every head, large ones included: the window is letterboxed to ``look_size`` (the network
    is fully convolutional) and the zoom is still measured against the first look, so a head too
    large for a second look at ``spatial_size`` is seen on a grid up to ``look_size /
    spatial_size`` times finer than the first look's. A training step still costs what a first-look
    step costs: training takes crops of ``spatial_size`` from that fine letterbox
    (:meth:`training_windows`), which show part of the head at the scale the finer look sees it.

    Args:
        margin: the window's height (or width) over the head's bounding box's, at least 1.
        min_zoom: no window when it would enlarge the head less than this over the first look (the
            head already fills the frame: a second look gains nothing).
        max_zoom: the largest enlargement over the first look; a smaller head gets a window larger
            than its margin.
        look_size: (rows, columns) the window is letterboxed to for the second look; None: the
            network's ``spatial_size``. At least ``spatial_size`` (both multiples of 32 for the MTLN).
        tiled: run the finer look on the four tiles of ``spatial_size`` at the corners of the
            ``look_size`` letterbox (:meth:`tiles`), the crops the network was trained on, rather
            than on the whole letterbox; about twice the time.
        large_heads_only: the finer look only for the heads that a look at ``spatial_size`` would
            not enlarge ``min_zoom`` times (:meth:`coarse_look_enlarges`); smaller heads keep that
            look, and train on their windows alone. Needs a ``look_size``.

    Raises:
        InputError: a margin below 1, zooms that are not 1 ≤ ``min_zoom`` ≤ ``max_zoom``, a
            ``look_size`` that is not two positive integers, or ``tiled`` or ``large_heads_only``
            without a ``look_size``.
    """

    margin: float = 1.3
    min_zoom: float = 1.2
    max_zoom: float = 3.0
    look_size: tuple[int, int] | None = None
    tiled: bool = False
    large_heads_only: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.margin) and self.margin >= 1.0):
            raise InputError(f"head crop margin must be at least 1, got {self.margin}")
        if not (math.isfinite(self.max_zoom) and 1.0 <= self.min_zoom <= self.max_zoom):
            raise InputError(
                f"head crop zooms must satisfy 1 <= min_zoom <= max_zoom, got {self.min_zoom}, {self.max_zoom}"
            )
        if self.look_size is not None:
            if len(self.look_size) != 2 or not all(isinstance(size, int) and size > 0 for size in self.look_size):
                raise InputError(f"head crop look_size must be two positive integers (rows, columns), got {self.look_size}")
            object.__setattr__(self, "look_size", tuple(self.look_size))
        if self.tiled and self.look_size is None:
            raise InputError("head crop tiled needs a look_size")
        if self.large_heads_only and self.look_size is None:
            raise InputError("head crop large_heads_only needs a look_size")

    def input_size(self, spatial_size: Sequence[int]) -> tuple[int, int]:
        """(rows, columns) that :meth:`window` takes its aspect from: ``look_size`` or ``spatial_size``."""
        return self.look_size if self.look_size is not None else (int(spatial_size[0]), int(spatial_size[1]))

    def coarse_look_enlarges(
        self, window: tuple[int, int, int, int], shape: Sequence[int], spatial_size: Sequence[int]
    ) -> bool:
        """Whether ``window``, letterboxed to ``spatial_size``, shows the head ``min_zoom`` times the first look's size.

        Args:
            window: (top, left, rows, columns) from :meth:`window`.
            shape: (rows, columns) of the frame.
            spatial_size: (rows, columns) of the first look's input.
        """
        first_look_scale = min(spatial_size[0] / shape[0], spatial_size[1] / shape[1])
        window_scale = min(spatial_size[0] / window[2], spatial_size[1] / window[3])
        return window_scale >= self.min_zoom * first_look_scale

    def look_input_size(
        self, window: tuple[int, int, int, int], shape: Sequence[int], spatial_size: Sequence[int]
    ) -> tuple[int, int]:
        """(rows, columns) the second look letterboxes ``window`` to: ``spatial_size``, or a finer ``look_size``.

        With ``large_heads_only``, ``look_size`` only where :meth:`coarse_look_enlarges` is false.
        """
        coarse = (int(spatial_size[0]), int(spatial_size[1]))
        if self.large_heads_only and self.coarse_look_enlarges(window, shape, spatial_size):
            return coarse
        return self.look_size if self.look_size is not None else coarse

    def window(
        self, ellipse: Ellipse, shape: Sequence[int], spatial_size: Sequence[int]
    ) -> tuple[int, int, int, int] | None:
        """The window around ``ellipse`` in a frame of ``shape`` (rows, columns), or None.

        Args:
            ellipse: the head in frame pixels.
            shape: (rows, columns) of the frame.
            spatial_size: (rows, columns) of the network's input: the first look's, to which the
                zoom is relative. The window takes the aspect of :meth:`input_size`.

        Returns:
            (top, left, rows, columns) of the window, or None when it would enlarge the head less
            than ``min_zoom``.
        """
        frame_rows, frame_columns = shape
        input_rows, input_columns = self.input_size(spatial_size)
        x_min, y_min, x_max, y_max = ellipse_bounding_box(ellipse)
        rows = self.margin * max(y_max - y_min, (x_max - x_min) * input_rows / input_columns)
        frame_scale = min(spatial_size[0] / frame_rows, spatial_size[1] / frame_columns)
        zoom = input_rows / (rows * frame_scale)
        if zoom < self.min_zoom:
            return None
        rows = input_rows / (min(zoom, self.max_zoom) * frame_scale)
        rows, columns = min(round(rows), frame_rows), min(round(rows * input_columns / input_rows), frame_columns)
        top = round(min(max(0.5 * (y_min + y_max) - 0.5 * rows, 0.0), frame_rows - rows))
        left = round(min(max(0.5 * (x_min + x_max) - 0.5 * columns, 0.0), frame_columns - columns))
        return int(top), int(left), int(rows), int(columns)

    def training_windows(
        self, window: tuple[int, int, int, int], shape: Sequence[int], spatial_size: Sequence[int]
    ) -> list[tuple[int, int, int, int]]:
        """The training samples' windows for a second look at ``window``: itself, and crops of it.

        Without ``look_size``, the window itself, letterboxed to ``spatial_size`` as the second
        look sees it. With ``look_size``: the window itself when, letterboxed to ``spatial_size``,
        it still enlarges the head ``min_zoom`` times over the first look (the windows a second look
        at ``spatial_size`` would take, :meth:`coarse_look_enlarges`); and, unless ``large_heads_only``
        gives such a window that look alone, four crops of ``spatial_size`` at the corners of the
        window's letterbox at ``look_size`` (overlapping where ``look_size`` is under twice
        ``spatial_size``), each returned as the part of the frame it shows: letterboxed to
        ``spatial_size`` it has the finer look's scale, and shows the head cut by its edges.

        Args:
            window: (top, left, rows, columns) from :meth:`window`.
            shape: (rows, columns) of the frame.
            spatial_size: (rows, columns) of the training samples, the first look's input.

        Returns:
            windows (top, left, rows, columns) in frame pixels, inside ``window``.
        """
        top, left, rows, columns = window
        if self.look_size is None:
            return [window]
        coarse_look = self.coarse_look_enlarges(window, shape, spatial_size)
        if coarse_look and self.large_heads_only:
            return [window]
        windows = [window] if coarse_look else []
        look_scale = min(self.look_size[0] / rows, self.look_size[1] / columns)
        crop_rows = min(round(spatial_size[0] / look_scale), rows)
        crop_columns = min(round(spatial_size[1] / look_scale), columns)
        return windows + [
            (top + row_offset, left + column_offset, crop_rows, crop_columns)
            for row_offset, column_offset in _corner_offsets((rows, columns), (crop_rows, crop_columns))
        ]

    def tiles(self, look_size: Sequence[int], spatial_size: Sequence[int]) -> list[tuple[int, int]]:
        """(row, column) of the four tiles of ``spatial_size`` at the corners of a ``look_size`` grid.

        They overlap where ``look_size`` is under twice ``spatial_size``; a tiled finer look runs
        the network on each, as :meth:`training_windows` crops the window for training.
        """
        return _corner_offsets(look_size, spatial_size)


def _corner_offsets(outer: Sequence[int], inner: Sequence[int]) -> list[tuple[int, int]]:
    """(row, column) offsets of an ``inner`` (rows, columns) box at the four corners of an ``outer`` one."""
    return [
        (row, column)
        for row in (0, max(int(outer[0]) - int(inner[0]), 0))
        for column in (0, max(int(outer[1]) - int(inner[1]), 0))
    ]


def require_head_crop(value: object) -> HeadCrop | None:
    """``value`` if it is a :class:`HeadCrop` or None (a config's ``head_crop``).

    Raises:
        InputError: anything else, e.g. a command-line override written ``false`` or ``None``
            rather than ``'$None'``, which arrives as a string.
    """
    if value is not None and not isinstance(value, HeadCrop):
        raise InputError(f"head_crop must be a HeadCrop or None (on the command line '$None'); got {value!r}")
    return value


def crop_structure(structure: PlaneStructure, top: int, left: int) -> PlaneStructure:
    """The structure in the pixels of a window whose first pixel is frame pixel (``left``, ``top``)."""
    return affine_structure(structure, np.array([[1.0, 0.0, -float(left)], [0.0, 1.0, -float(top)]]))


def augmentations_keeping_head(
    structure: PlaneStructure, shape: Sequence[int], augmentations: Sequence[PlaneAugmentation] = MTLN_AUGMENTATIONS
) -> list[PlaneAugmentation]:
    """The augmentations that do not move the head (or abdomen, or femur) out of the image.

    An augmentation is dropped when the transformed structure runs out of the image
    (:func:`structure_overhang`) further than the original does: a head whole in the original
    must stay whole, and one the sonographer already cut at the border may not lose more. The
    identity is always kept.

    Args:
        structure: the head ellipse (or abdomen ellipse, or femur bar) in pixels of an image of ``shape``.
        shape: (rows, columns).
        augmentations: the candidates.

    Returns:
        the kept augmentations, in input order.
    """
    allowed = max(structure_overhang(structure, shape), 0.0) + 1e-6

    def keeps_head(augmentation: PlaneAugmentation) -> bool:
        moved = affine_structure(structure, augmentation.matrix(shape))
        return augmentation == IDENTITY or structure_overhang(moved, shape) <= allowed

    return [augmentation for augmentation in augmentations if keeps_head(augmentation)]


def make_plane_sample(
    image: np.ndarray,
    structure: PlaneStructure,
    pixel_size: float,
    spatial_size: Sequence[int] = DEFAULT_SPATIAL_SIZE,
    augmentation: PlaneAugmentation = IDENTITY,
    filename: str = "",
    reference_mm: float | None = None,
    plane: str = "head",
    label_supersampling: int = 1,
) -> dict[str, Any]:
    """A training sample (see the module docstring) from a 2D frame and its reference structure.

    Args:
        image: 2D frame (rows, columns), 8-bit intensities.
        structure: the reference ellipse (head, abdomen) or femur bar in pixels of ``image``.
        pixel_size: side of a square pixel of ``image``, mm.
        spatial_size: (rows, columns) of the sample.
        augmentation: flip, rotation or zoom applied after scaling.
        filename: kept in the sample.
        reference_mm: reference HC, AC or FL in mm; the structure's (:func:`measured_length`)
            when None.
        plane: ``"head"``, ``"abdomen"`` or ``"femur"``.
        label_supersampling: 1 for a 0/1 ``label``; more for the fraction of each pixel inside the
            structure (:func:`structure_area_fractions`), a target finer than the pixel.

    Returns:
        the sample dict.

    Raises:
        InputError: the frame is not 2D or the plane unknown.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"expected a 2D frame, got shape {image.shape}")
    if plane not in PLANE_CLASSES:
        raise InputError(f"plane must be one of {', '.join(PLANE_CLASSES)}; got {plane!r}")
    scaled, scaling, scale = letterbox(image.astype(np.float32) / 255.0, spatial_size)
    moved = affine_structure(structure, _homogeneous(augmentation.matrix(spatial_size)) @ _homogeneous(scaling))
    out_pixel_size = pixel_size / (scale * augmentation.zoom)
    return {
        "image": augmentation.apply(scaled)[None],
        "label": structure_area_fractions(moved, spatial_size, label_supersampling)[None],
        "ellipse": encode_ellipse(_tuner_ellipse(moved), spatial_size),
        "hc_px": measured_length(moved),
        "hc_mm": measured_length(moved) * out_pixel_size if reference_mm is None else reference_mm,
        "pixel_size": out_pixel_size,
        "plane": np.int64(PLANE_CLASSES.index(plane)),
        "filename": filename,
        "augmentation": augmentation.name,
    }


@dataclass(frozen=True)
class AnnotatedPlane:
    """A frame, read when needed, with its reference structure.

    Args:
        name: e.g. the file name.
        read_frame: returns the 2D frame (rows, columns) of 8-bit intensities.
        frame_shape: (rows, columns) of the frame.
        pixel_size_mm: side of a square pixel of the frame, mm.
        structure: the reference ellipse (head, abdomen) or femur bar, in pixels of the frame.
        plane: ``"head"``, ``"abdomen"`` or ``"femur"``.
        reference_mm: the reference HC, AC or FL in mm when it is not the structure's own
            (HC18's CSV value); None for :func:`measured_length` x ``pixel_size_mm``.
    """

    name: str
    read_frame: Callable[[], np.ndarray]
    frame_shape: tuple[int, int]
    pixel_size_mm: float
    structure: PlaneStructure
    plane: str = "head"
    reference_mm: float | None = None

    @property
    def value_mm(self) -> float:
        """The reference HC, AC or FL, mm."""
        if self.reference_mm is not None:
            return self.reference_mm
        return measured_length(self.structure) * self.pixel_size_mm


class PlaneSampleDataset(Dataset):
    """Annotated frames as samples of :func:`make_plane_sample`, optionally augmented offline.

    Each frame is expanded into one item per augmentation that keeps its structure in the image
    (:func:`augmentations_keeping_head`); frames are read when an item is fetched. With a
    ``head_crop``, a frame whose head (or abdomen) ellipse gets a window (:meth:`HeadCrop.window`)
    also gives that window as a frame of its own, expanded by the same augmentations; with the
    finer look's ``look_size`` it also gives four crops of the window at the finer look's scale
    (:meth:`HeadCrop.training_windows`), unaugmented: they cut the head, which a rotation would
    cut further, and an epoch stays within 1.4 times the second-look recipe's length.

    Args:
        planes: the annotated frames.
        spatial_size: (rows, columns) of the samples.
        augmentations: per frame, e.g. :data:`MTLN_AUGMENTATIONS`; the identity alone by default.
        transform: applied to each sample dict (e.g. ``BoundaryWeightMapd``).
        head_crop: add the windows around the reference ellipses, or None.
        label_supersampling: as in :func:`make_plane_sample` (1: 0/1 labels).

    Raises:
        InputError: ``head_crop`` is neither a :class:`HeadCrop` nor None.
    """

    def __init__(
        self,
        planes: Sequence[AnnotatedPlane],
        spatial_size: Sequence[int] = DEFAULT_SPATIAL_SIZE,
        augmentations: Sequence[PlaneAugmentation] = (IDENTITY,),
        transform: Callable | None = None,
        head_crop: HeadCrop | None = None,
        label_supersampling: int = 1,
    ) -> None:
        self.spatial_size = tuple(spatial_size)
        self.label_supersampling = label_supersampling
        head_crop = require_head_crop(head_crop)
        items = []
        for plane in planes:
            items.extend(self._items(plane, None, augmentations))
            if head_crop is not None and isinstance(plane.structure, Ellipse):
                window = head_crop.window(plane.structure, plane.frame_shape, self.spatial_size)
                if window is not None:
                    frame_overhang = max(structure_overhang(plane.structure, plane.frame_shape), 0.0)
                    for crop in head_crop.training_windows(window, plane.frame_shape, self.spatial_size):
                        cut = structure_overhang(crop_structure(plane.structure, crop[0], crop[1]), crop[2:])
                        crop_augmentations = augmentations if cut <= frame_overhang + 1e-6 else (IDENTITY,)
                        items.extend(self._items(plane, crop, crop_augmentations))
        super().__init__(items, transform)

    def _items(
        self,
        plane: AnnotatedPlane,
        window: tuple[int, int, int, int] | None,
        augmentations: Sequence[PlaneAugmentation],
    ) -> list[dict[str, Any]]:
        """One item per augmentation that keeps the structure in the frame, or in its ``window``."""
        structure, shape = plane.structure, plane.frame_shape
        if window is not None:
            structure, shape = crop_structure(structure, window[0], window[1]), window[2:]
        scaling, _ = letterbox_matrix(shape, self.spatial_size)
        resized = affine_structure(structure, scaling)
        return [
            {"plane": plane, "hc_px": measured_length(resized) * a.zoom, "augmentation": a, "window": window}
            for a in augmentations_keeping_head(resized, self.spatial_size, augmentations)
        ]

    def _transform(self, index: int) -> dict[str, Any]:
        item = self.data[index]
        plane: AnnotatedPlane = item["plane"]
        frame, structure = plane.read_frame(), plane.structure
        if item["window"] is not None:
            top, left, rows, columns = item["window"]
            frame, structure = frame[top : top + rows, left : left + columns], crop_structure(structure, top, left)
        sample = make_plane_sample(
            frame,
            structure,
            plane.pixel_size_mm,
            self.spatial_size,
            item["augmentation"],
            plane.name,
            plane.reference_mm,
            plane.plane,
            self.label_supersampling,
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


def hc18_plane(record: HC18Record) -> AnnotatedPlane:
    """An annotated HC18 record: the ellipse fitted to its outline, the CSV HC as reference.

    Raises:
        InputError: the record has no annotation.
    """
    annotation = read_annotation(record)
    return AnnotatedPlane(
        record.filename,
        partial(read_frame, record),
        annotation.mask.shape,
        record.pixel_size_mm,
        annotation.ellipse_px,
        "head",
        record.hc_mm,
    )


class HC18PlaneDataset(PlaneSampleDataset):
    """HC18 training records as samples of :func:`make_plane_sample`, optionally augmented offline.

    At construction each record's annotation is read and fitted once (:func:`hc18_plane`), and
    the record is expanded into one item per augmentation that keeps its head in the image
    (:func:`augmentations_keeping_head`); images are read when an item is fetched.

    Args:
        records: HC18 records with annotations (e.g. one side of ``split_by_subject``).
        spatial_size: (rows, columns) of the samples.
        augmentations: per record, e.g. :data:`MTLN_AUGMENTATIONS`; the identity alone by default.
        transform: applied to each sample dict (e.g. ``BoundaryWeightMapd``).
        head_crop: add the windows around the heads (see :class:`PlaneSampleDataset`), or None.
        label_supersampling: as in :func:`make_plane_sample` (1: 0/1 labels).

    Raises:
        InputError: a record has no annotation.
    """

    def __init__(
        self,
        records: Sequence[HC18Record],
        spatial_size: Sequence[int] = DEFAULT_SPATIAL_SIZE,
        augmentations: Sequence[PlaneAugmentation] = (IDENTITY,),
        transform: Callable | None = None,
        head_crop: HeadCrop | None = None,
        label_supersampling: int = 1,
    ) -> None:
        planes = [hc18_plane(record) for record in records]
        super().__init__(planes, spatial_size, augmentations, transform, head_crop, label_supersampling)
