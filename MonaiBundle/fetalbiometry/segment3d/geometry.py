"""Does a volume's geometry look like a fetal head volume from a scanner? Warnings, not refusals.

The segmenter works in mm (:mod:`fetalbiometry.segment3d.transforms`), so a volume whose spacing is
wrong gives a head of the wrong size, not an error. ``fetalbiometry segment`` (and so the Slicer
panel, which runs it) prints these warnings before it segments. Light on purpose: no PyTorch.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

__all__ = ["PLAUSIBLE_FIELD_OF_VIEW_MM", "geometry_warnings"]

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
