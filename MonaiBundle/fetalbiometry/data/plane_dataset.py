"""Head, abdomen and femur planes for the multi-task U-Net: synthetic, or a user's own datalist.

There are no public AC or FL images, so the multi-task U-Net (Qazi et al.,
``shared/papers/multitask-unet-hc-ac-fl.txt``) is trained on the phantom generator's standard
planes (:class:`SyntheticPlaneDataset`), or on a user's annotated frames listed in a datalist
(:func:`read_plane_datalist`). Both give the samples of
:func:`~fetalbiometry.data.hc18_dataset.make_plane_sample`, the same dict as HC18's, whose
``"plane"`` entry is the class target.

Datalist format: a JSON object with up to three parts, ``"training"``, ``"validation"`` and
``"test"``, each a list of entries::

    {"image": "frames/0001.png", "pixel_size": 0.12, "plane": "head",
     "calipers": {"ofd": [[120.5, 210.0], [402.0, 188.5]], "bpd": [[255.0, 90.0], [270.0, 310.0]]}}
    {"image": "frames/0002.png", "pixel_size": 0.2, "plane": "abdomen", "label": "masks/0002.png"}
    {"image": "frames/0003.png", "pixel_size": 0.15, "plane": "femur",
     "calipers": {"fl": [[100.0, 150.0], [380.0, 120.0]]}}

- ``image``: a 2D frame of 8-bit intensities (0-255): PNG, NIfTI, NRRD, MetaImage or a DICOM
  folder (:func:`fetalbiometry.io.read_image`). Paths are relative to the datalist's folder.
- ``pixel_size``: side of a square pixel, mm. It is used whatever spacing the file stores.
- ``plane``: ``"head"``, ``"abdomen"`` or ``"femur"``.
- the reference, one of:

  - ``label``: a mask on the image's grid (non-zero = the structure). A head or abdomen mask is
    reduced to its fitted ellipse, a femur mask to its minimum-area rectangle, as HC18's outlines
    are reduced to ellipses: the network learns the shape that is measured.
  - ``calipers``: pixel coordinates [x = column, y = row] of two points per diameter: ``ofd``
    and ``bpd`` for a head, ``tad`` and ``apad`` for an abdomen (the ellipse with these axes,
    :func:`~fetalbiometry.biometry.ellipse_from_diameters`; diameters outer edge to outer edge),
    ``fl`` for a femur (a bar between the end points,
    :func:`~fetalbiometry.biometry.femur_from_endpoints`, 2 mm + 5 % of FL thick like the
    phantoms' diaphysis, :func:`~fetalbiometry.data.anatomy.femur_diaphysis_width_mm`).

The reference measurement is the structure's: the Ramanujan perimeter of the ellipse (HC, AC),
the bar's length (FL, the calipers' distance). Every file is read and checked when the datalist
is read, so a bad entry stops before training, with its part, index and reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from torch.utils.data import Dataset

from fetalbiometry.biometry.calipers import caliper_segment, ellipse_from_diameters, femur_from_endpoints
from fetalbiometry.biometry.ellipse import fit_ellipse_to_mask
from fetalbiometry.biometry.planes import PLANE_CLASSES, PLANE_MEASURES
from fetalbiometry.biometry.rectangle import Rectangle, fit_min_area_rectangle
from fetalbiometry.data.anatomy import femur_diaphysis_width_mm
from fetalbiometry.data.hc18_dataset import (
    DEFAULT_SPATIAL_SIZE,
    AnnotatedPlane,
    PlaneStructure,
    make_plane_sample,
)
from fetalbiometry.data.synthetic import DEFAULT_PLANE_SHAPE, PlanePhantom, make_plane
from fetalbiometry.errors import EmptyMaskError, InputError
from fetalbiometry.io import read_image

__all__ = [
    "CALIPERS",
    "DATALIST_PARTS",
    "SyntheticPlaneDataset",
    "datalist_plane",
    "read_plane_datalist",
    "read_plane_image",
]

DATALIST_PARTS = ("training", "validation", "test")
"""The parts of a plane datalist."""

CALIPERS: Mapping[str, tuple[str, ...]] = {"head": ("ofd", "bpd"), "abdomen": ("tad", "apad"), "femur": ("fl",)}
"""The caliper pairs of each plane; for an ellipse the first names the axis its angle follows."""

_ENTRY_KEYS = ("image", "pixel_size", "plane", "label", "calipers")


class SyntheticPlaneDataset(Dataset):
    """Synthetic standard planes (:func:`~fetalbiometry.data.synthetic.make_plane`) as training samples.

    Item ``i`` is the plane of kind ``kinds[i % len(kinds)]`` with seed ``base_seed + i``, so the
    classes are balanced and the set is the same on every run. Every phantom is a new random
    size, pose and zoom, so no offline augmentation is applied. The label is the phantom's exact
    structure (:attr:`~fetalbiometry.data.synthetic.PlanePhantom.structure`) letterboxed to
    ``spatial_size``; the reference measurement is the phantom's true HC, AC or FL.

    Use seed ranges that do not overlap for training, validation and test (e.g. base seeds 0,
    100000 and 200000).

    Args:
        length: number of planes.
        base_seed: seed of item 0.
        spatial_size: (rows, columns) of the samples.
        kinds: the plane kinds, cycled through (all of :data:`~fetalbiometry.biometry.PLANE_CLASSES`
            by default).
        shape: (rows, columns) of the generated frames.
        transform: applied to each sample dict.

    Raises:
        ValueError: ``length`` < 1, ``base_seed`` < 0, or no or unknown kinds.
    """

    def __init__(
        self,
        length: int,
        base_seed: int = 0,
        spatial_size: Sequence[int] = DEFAULT_SPATIAL_SIZE,
        kinds: Sequence[str] = PLANE_CLASSES,
        shape: Sequence[int] = DEFAULT_PLANE_SHAPE,
        transform: Callable | None = None,
    ) -> None:
        if length < 1 or base_seed < 0:
            raise ValueError(f"need length >= 1 and base_seed >= 0, got length={length}, base_seed={base_seed}.")
        if not kinds or any(kind not in PLANE_CLASSES for kind in kinds):
            raise ValueError(f"kinds must be among {PLANE_CLASSES}, got {tuple(kinds)}.")
        self.length = length
        self.base_seed = base_seed
        self.spatial_size = tuple(spatial_size)
        self.kinds = tuple(kinds)
        self.shape = tuple(shape)
        self.transform = transform

    def __len__(self) -> int:
        return self.length

    def phantom(self, index: int) -> PlanePhantom:
        """The phantom of item ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(f"plane index {index} out of range 0..{self.length - 1}.")
        return make_plane(self.kinds[index % len(self.kinds)], self.base_seed + index, self.shape)

    def __getitem__(self, index: int) -> dict[str, Any]:
        phantom = self.phantom(index)
        truth = phantom.truth
        kind = str(truth["kind"])
        sample = make_plane_sample(
            sitk.GetArrayFromImage(phantom.image),
            phantom.structure,
            float(truth["pixel_size_mm"]),
            self.spatial_size,
            filename=f"{kind}-{truth['seed']}",
            reference_mm=float(truth[f"{PLANE_MEASURES[kind]}_mm"]),
            plane=kind,
        )
        return self.transform(sample) if self.transform is not None else sample


def read_plane_image(path: str | Path) -> np.ndarray:
    """A 2D frame or mask of a datalist as an array (rows, columns).

    Args:
        path: PNG, NIfTI, NRRD, MetaImage or DICOM folder (the file's spacing is not used: the
            datalist gives the pixel size).

    Returns:
        the pixel values, in the file's type.

    Raises:
        InputError: missing or unreadable file, or not 2D.
    """
    path = Path(path)
    # read_image wants a pixel size for PNG, which stores none, and refuses one for the others
    image = read_image(path, pixel_size=1.0 if path.suffix.lower() == ".png" else None)
    if image.GetDimension() != 2 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: expected a 2D single-channel image")
    return sitk.GetArrayFromImage(image)


def _read_frame_checked(path: Path) -> np.ndarray:
    frame = read_plane_image(path)
    low, high = float(frame.min()), float(frame.max())
    if low < 0.0 or high > 255.0:
        raise InputError(f"{path}: intensities must be 8-bit (0-255), found {low:g} to {high:g}")
    return frame


def _structure_from_mask(mask: np.ndarray, plane: str) -> PlaneStructure:
    try:
        structure = fit_min_area_rectangle(mask) if plane == "femur" else fit_ellipse_to_mask(mask)
    except EmptyMaskError:
        raise InputError("the label mask is empty") from None
    if isinstance(structure, Rectangle) and not structure.width > 0:
        raise InputError("the femur mask is a line one pixel wide; draw the diaphysis with its thickness")
    return structure


def _structure_from_calipers(calipers: Any, plane: str, pixel_size: float) -> PlaneStructure:
    names = CALIPERS[plane]
    if not isinstance(calipers, Mapping) or set(calipers) != set(names):
        found = sorted(calipers) if isinstance(calipers, Mapping) else calipers
        raise InputError(f"calipers of a {plane} must be {' and '.join(names)}; got {found!r}")
    if plane == "femur":
        segment = caliper_segment(calipers["fl"], "fl")
        length_mm = float(np.hypot(*(segment[1] - segment[0]))) * pixel_size
        return femur_from_endpoints(segment, femur_diaphysis_width_mm(length_mm) / pixel_size)
    return ellipse_from_diameters(calipers[names[0]], calipers[names[1]], names)


def datalist_plane(entry: Mapping[str, Any], base_dir: str | Path = ".") -> AnnotatedPlane:
    """One datalist entry (see the module docstring) as an :class:`AnnotatedPlane`.

    The image (and mask) are read now, to check them; the frame is read again when a sample
    needs it.

    Args:
        entry: the entry's JSON object.
        base_dir: the folder relative paths start from (the datalist's).

    Returns:
        the annotated plane, named by its image path as written in the entry.

    Raises:
        InputError: a missing or unknown key, missing or unreadable file, non-positive pixel size,
            unknown plane, bad calipers, or a mask that is empty or not on the image's grid.
    """
    if not isinstance(entry, Mapping):
        raise InputError(f"an entry must be a JSON object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(_ENTRY_KEYS))
    missing = [key for key in ("image", "pixel_size", "plane") if key not in entry]
    if unknown or missing:
        problem = f"unknown key(s) {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
        raise InputError(f"{problem}; an entry has image, pixel_size, plane, and label or calipers")
    if ("label" in entry) == ("calipers" in entry):
        raise InputError("an entry needs either a label mask or calipers (one of the two)")
    pixel_size = entry["pixel_size"]
    number = isinstance(pixel_size, (int, float)) and not isinstance(pixel_size, bool)
    if not (number and math.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"pixel_size must be a positive number of mm, got {pixel_size!r}")
    plane = entry["plane"]
    if plane not in PLANE_CLASSES:
        raise InputError(f"plane must be one of {', '.join(PLANE_CLASSES)}; got {plane!r}")
    image_path = Path(base_dir) / str(entry["image"])
    frame = _read_frame_checked(image_path)
    if "label" in entry:
        mask = read_plane_image(Path(base_dir) / str(entry["label"]))
        if mask.shape != frame.shape:
            raise InputError(
                f"label {entry['label']} is {mask.shape[1]} x {mask.shape[0]} pixels, "
                f"the image {frame.shape[1]} x {frame.shape[0]}"
            )
        structure = _structure_from_mask(mask != 0, plane)
    else:
        structure = _structure_from_calipers(entry["calipers"], plane, float(pixel_size))
    return AnnotatedPlane(
        str(entry["image"]), partial(_read_frame_checked, image_path), frame.shape, float(pixel_size), structure, plane
    )


def read_plane_datalist(path: str | Path) -> dict[str, list[AnnotatedPlane]]:
    """Read and check a plane datalist (see the module docstring).

    Args:
        path: the datalist JSON file; relative paths in it start from its folder.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``, a part the file lacks empty.

    Raises:
        InputError: the file is missing or not a JSON object of the three parts, or an entry is
            bad (the message names the part and index, e.g. ``training[3]``, and the reason).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"datalist not found: {path}")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a JSON file ({error})") from None
    if not isinstance(content, dict) or set(content) - set(DATALIST_PARTS):
        found = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise InputError(f"{path}: expected a JSON object with parts {', '.join(DATALIST_PARTS)}; got {found}")
    parts: dict[str, list[AnnotatedPlane]] = {}
    for part in DATALIST_PARTS:
        entries = content.get(part, [])
        if not isinstance(entries, list):
            raise InputError(f"{path}: {part} must be a list of entries")
        parts[part] = []
        for index, entry in enumerate(entries):
            try:
                parts[part].append(datalist_plane(entry, path.parent))
            except InputError as error:
                raise InputError(f"{path} {part}[{index}]: {error}") from None
    return parts
