"""Volume error of one head written at the five grids of ``tests/segment3d/test_physical_scale.py``.

Two heads: the test's (seed 424242, 28 weeks, field of view 1.3 times the head) and a 20-week head
in the 166 mm field of view of ``fetalbiometry synth 3d`` (seed 11).

    python docs/experiments/scripts/five_grids.py MODEL.pt   # or - for the shipped model
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.spatial.transform import Rotation

from fetalbiometry.data.anatomy import HeadAnatomy
from fetalbiometry.data.synthetic import make_head_volume
from fetalbiometry.metrics import label_volume_ml
from fetalbiometry.segment3d.segmenter import Segmenter

OBLIQUE = Rotation.from_euler("xyz", [30.0, 20.0, 10.0], degrees=True).as_matrix().ravel().tolist()
GRIDS = [((1.0, 1.0, 1.0), None), ((0.7, 0.7, 0.7), None), ((0.8, 0.8, 1.4), None), ((1.0, 1.0, 1.0), OBLIQUE), ((1.2, 0.7, 0.7), OBLIQUE)]
HEADS = [(424242, 28.0, None), (11, 20.0, 166.0)]  # seed, weeks, field of view (None: 1.3 × the head + 12 mm)


def main() -> int:
    segmenter = Segmenter.from_bundle(None if sys.argv[1] == "-" else sys.argv[1], device="cpu")
    for seed, weeks, field_of_view in HEADS:
        if field_of_view is None:
            field_of_view = 1.3 * 2.5 * float(np.max(HeadAnatomy.from_seed(seed, weeks).skull.semi_axes)) + 12.0
        errors = []
        for spacing, direction in GRIDS:
            shape = tuple(int(np.ceil(field_of_view / s)) for s in spacing[::-1])
            phantom = make_head_volume(seed, shape=shape, spacing=spacing, ga_weeks=weeks, direction=direction)
            volume = label_volume_ml(segmenter.segment(phantom.image))
            errors.append(f"{100.0 * (volume / phantom.truth['volume_ml'] - 1.0):+.1f} %")
        print(f"seed {seed}, {weeks:g} weeks, {field_of_view:.0f} mm: {', '.join(errors)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
