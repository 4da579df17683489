"""The brain's echo in polar 3D phantoms, by the isotropic spacing the volume is written at.

One 22-week head (seed 5, lateral probe) written at six spacings over about the same field of
view; for the voxels inside half the skull's radius (the brain), the median grey level and the
share of black voxels. The figures of ``docs/experiments/2026-12-05-3d-polar-phantoms.md``.

    python docs/experiments/scripts/brain_echo_by_spacing.py
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from fetalbiometry.data.synthetic import HeadPhantom, make_head_volume
from fetalbiometry.data.ultrasound import CartesianGrid, Ellipsoid

GRIDS = ((0.5, 180), (0.7, 128), (1.0, 90), (1.2, 76), (1.4, 64), (2.6, 40))  # (spacing mm, voxels a side)


def skull_radius(phantom: HeadPhantom) -> np.ndarray:
    """Each voxel's radius in the skull ellipsoid's frame (1 on its outer surface), array order."""
    image, truth = phantom.image, phantom.truth
    steps = np.reshape(image.GetDirection(), (3, 3)) * np.array(image.GetSpacing())
    grid = CartesianGrid(np.array(image.GetOrigin()), steps, image.GetSize()[::-1])
    pose = Rotation.from_euler("xyz", [truth[f"pose_{a}_deg"] for a in "xyz"], degrees=True).as_matrix()
    centre = np.array([truth[f"head_{a}_mm"] for a in "xyz"])
    skull = Ellipsoid(centre, np.array([truth["bpd_mm"], truth["ofd_mm"], truth["skull_height_mm"]]) / 2.0, pose)
    return np.linalg.norm(skull.local(grid.points()), axis=0).reshape(grid.shape)


def main() -> None:
    print("| spacing (mm) | brain median | brain voxels black |")
    print("|---|---|---|")
    for spacing, size in GRIDS:
        phantom = make_head_volume(5, shape=(size,) * 3, spacing=(spacing,) * 3, ga_weeks=22.0, probe_direction="lateral")
        brain = sitk.GetArrayViewFromImage(phantom.image)[skull_radius(phantom) < 0.5]
        print(f"| {spacing} | {np.median(brain):.0f} | {100 * np.mean(brain == 0):.0f} % |")


if __name__ == "__main__":
    main()
