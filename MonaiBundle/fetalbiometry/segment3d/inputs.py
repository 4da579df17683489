"""What a volume must be for the segmenter, and what looks wrong about its geometry.

:func:`check_segmentable` refuses what cannot be segmented (not 3D, not grayscale, too small, one
value everywhere). :func:`geometry_warnings` only warns: the segmenter works in mm
(:mod:`fetalbiometry.segment3d.transforms`), so a volume whose spacing is wrong gives a head of the
wrong size, not an error. ``fetalbiometry segment`` (and so the Slicer panel, which runs it) checks
both before it loads the model. Light on purpose: no PyTorch.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from fetalbiometry.errors import InputError
from fetalbiometry.io import check_dimension

__all__ = ["MIN_SEGMENT_SIDE", "PLAUSIBLE_FIELD_OF_VIEW_MM", "check_segmentable", "geometry_warnings"]

MIN_SEGMENT_SIDE = 8
"""Fewest voxels along any axis of a volume that is segmented: the network downsamples three times."""

PLAUSIBLE_FIELD_OF_VIEW_MM = (40.0, 600.0)
"""The extent of a fetal head volume along each axis: outside it, the spacing is likely wrong."""


def geometry_warnings(image: sitk.Image) -> list[str]:
    """Why ``image``'s spacing may be missing or wrong, one sentence each (empty when plausible).

    A spacing of exactly 1 mm on every axis is what readers report for a file that stores none
    (a NIfTI without units, a raw export); a field of view under 40 mm or over 600 mm along an axis
    cannot hold a fetal head at a scanner's scale. The network works in mm, so a wrong spacing
    gives a wrong head, not an error: these are warnings for the user to check.
    """
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    field_of_view = spacing * np.asarray(image.GetSize(), dtype=float)
    low, high = PLAUSIBLE_FIELD_OF_VIEW_MM
    warnings = []
    if np.all(spacing == 1.0):
        warnings.append(
            "the spacing is exactly 1 mm on every axis, the default of a file that stores none: "
            "check that the volume's spacing is its scanner's"
        )
    for axis, extent in zip("xyz", field_of_view):
        if not low <= extent <= high:
            warnings.append(
                f"the field of view along {axis} is {extent:.0f} mm, outside the {low:.0f}-{high:.0f} mm "
                "of a fetal head volume: check the volume's spacing"
            )
    return warnings


def check_segmentable(image: sitk.Image, name: str = "the volume") -> None:
    """Refuse what is not one grayscale 3D volume of at least 8 voxels a side with some contrast.

    Raises:
        InputError: naming ``name`` and what is wrong.
    """
    check_dimension(image, (3,), name=name)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel; expected grayscale")
    size = image.GetSize()
    if min(size) < MIN_SEGMENT_SIDE:
        raise InputError(
            f"{name} is {'x'.join(map(str, size))} voxels; segment needs a 3D volume of at least "
            f"{MIN_SEGMENT_SIDE} voxels along every axis (a single slice is a 2D plane: use measure)"
        )
    extremes = sitk.MinimumMaximumImageFilter()
    extremes.Execute(image)
    if extremes.GetMinimum() == extremes.GetMaximum():
        raise InputError(f"{name} holds one value everywhere ({extremes.GetMinimum():g}): there is no image to segment")
