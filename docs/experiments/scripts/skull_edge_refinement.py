"""Does the frame itself place the head outline better than the network? For
docs/experiments/2026-12-06-hc-soft-boundary-labels.md:

    python docs/experiments/scripts/skull_edge_refinement.py MODEL.pt [--search-mm 0.3 0.6 1 2]

1. The template: the mean intensity profile across the reference outline (HC18's ellipse), along
   its normals, 3 mm either side, each profile z-scored, over every third training-split frame;
   where it peaks and where it falls steepest are printed.
2. On each validation frame, the same profiles across the model's ellipse (``mtln.json``, the
   shipped look) are matched to the template (normalised cross-correlation) at shifts of up to
   ``--search-mm`` along the normal. "One shift": the ellipse grown by the shift of the best mean
   match. "Per direction": the outline points moved by each normal's best shift (where the match
   exceeds 0.5) and an ellipse fitted to them.
3. The ADF (mm) of the three ellipses' Ramanujan perimeters against the CSV's HC.

The profiles are sampled with ``scipy.ndimage.map_coordinates``; no library matches a 1D template
along the normals of an ellipse, so the loop is written out here.
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
from scipy import ndimage

from fetalbiometry.biometry import Ellipse, ellipse_outline, fit_ellipse, measure_plane
from fetalbiometry.data.hc18 import HC18Record, read_annotation, read_frame
from fetalbiometry.errors import NoMeasurementError
from fetalbiometry.planes2d.predictor import load_plane_predictor
from fetalbiometry.planes2d.training import hc18_splits

STEP_MM = 0.1
TEMPLATE_HALF_WIDTH_MM = 3.0
NORMALS = 180


def outward_normals(ellipse: Ellipse) -> tuple[np.ndarray, np.ndarray]:
    """``NORMALS`` points (x, y) evenly spaced in the ellipse's parameter, and the unit outward normals there."""
    t = np.linspace(0.0, 2.0 * math.pi, NORMALS, endpoint=False)
    c, s = math.cos(ellipse.theta), math.sin(ellipse.theta)
    along_a, along_b = ellipse.b * np.cos(t), ellipse.a * np.sin(t)
    normal = np.stack([along_a * c - along_b * s, along_a * s + along_b * c])
    return ellipse_outline(ellipse, NORMALS).T, normal / np.linalg.norm(normal, axis=0)


def profiles(frame: np.ndarray, ellipse: Ellipse, offsets_px: np.ndarray) -> np.ndarray:
    """Intensities (normals × offsets) along the outward normals; NaN outside the frame."""
    (x, y), (nx, ny) = outward_normals(ellipse)
    xs, ys = x[:, None] + nx[:, None] * offsets_px, y[:, None] + ny[:, None] * offsets_px
    values = ndimage.map_coordinates(frame.astype(np.float32), [ys, xs], order=1)
    outside = (xs < 0) | (xs > frame.shape[1] - 1) | (ys < 0) | (ys > frame.shape[0] - 1)
    return np.where(outside, np.nan, values)


def zscored(rows: np.ndarray) -> np.ndarray:
    return (rows - rows.mean(axis=-1, keepdims=True)) / (rows.std(axis=-1, keepdims=True) + 1e-6)


def template(records: list[HC18Record]) -> np.ndarray:
    """The mean z-scored profile across the reference outline."""
    offsets_mm = np.arange(-TEMPLATE_HALF_WIDTH_MM, TEMPLATE_HALF_WIDTH_MM + 1e-9, STEP_MM)
    means = []
    for record in records:
        rows = profiles(read_frame(record), read_annotation(record).ellipse_px, offsets_mm / record.pixel_size_mm)
        means.append(zscored(rows[~np.isnan(rows).any(axis=1)]).mean(axis=0))
    return np.mean(means, axis=0)


def refined(frame: np.ndarray, ellipse: Ellipse, pixel_mm: float, shape: np.ndarray, search_mm: float) -> tuple[Ellipse, Ellipse]:
    """(one shift, per direction) refinements of ``ellipse`` by matching ``shape`` (the template)."""
    shifts_mm = np.arange(-search_mm, search_mm + 1e-9, STEP_MM)
    offsets_mm = np.arange(-TEMPLATE_HALF_WIDTH_MM - search_mm, TEMPLATE_HALF_WIDTH_MM + search_mm + 1e-9, STEP_MM)
    rows = profiles(frame, ellipse, offsets_mm / pixel_mm)
    width = len(shape)
    scores = np.stack([(zscored(rows[:, j : j + width]) * shape).mean(axis=1) for j in range(len(shifts_mm))], axis=1)
    inside = ~np.isnan(scores).any(axis=1)
    grow = shifts_mm[np.argmax(scores[inside].mean(axis=0))] / pixel_mm
    one_shift = Ellipse(ellipse.cx, ellipse.cy, ellipse.a + grow, ellipse.b + grow, ellipse.theta)
    best = np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=1)
    matched = inside & (scores[np.arange(NORMALS), best] > 0.5)
    (x, y), (nx, ny) = outward_normals(ellipse)
    moved = shifts_mm[best] / pixel_mm
    points = np.stack([x + nx * moved, y + ny * moved], axis=1)[matched]
    return one_shift, (fit_ellipse(points) if matched.sum() > 20 else ellipse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--search-mm", type=float, nargs="+", default=[0.3, 0.6, 1.0, 2.0])
    args = parser.parse_args()
    splits = hc18_splits(os.environ.get("HC18_DIR", "../shared/data/hc18"))
    shape = template(splits["training"][::3])
    offsets_mm = np.arange(-TEMPLATE_HALF_WIDTH_MM, TEMPLATE_HALF_WIDTH_MM + 1e-9, STEP_MM)
    fall = np.diff(shape) / STEP_MM
    print(
        f"template: peak {offsets_mm[np.argmax(shape)]:+.1f} mm, steepest fall "
        f"{offsets_mm[np.argmin(fall)] + STEP_MM / 2:+.2f} mm from the reference outline (+: outwards)"
    )
    predictor = load_plane_predictor(args.model, "mtln.json", device="cpu")
    cases = []
    for record in splits["validation"]:
        frame = read_frame(record)
        try:
            ellipse = measure_plane(predictor.predict(frame).mask, "head", record.pixel_size_mm).ellipse
        except NoMeasurementError:
            continue
        cases.append((record, frame, ellipse))
    print(f"{len(cases)} of {len(splits['validation'])} validation frames measured")
    network = [ellipse.circumference * record.pixel_size_mm - record.hc_mm for record, _, ellipse in cases]
    print(f"network: ADF {np.mean(np.abs(network)):.2f} mm, DF {np.mean(network):+.2f} ± {np.std(network):.2f}")
    for search_mm in args.search_mm:
        differences = []
        for record, frame, ellipse in cases:
            candidates = refined(frame, ellipse, record.pixel_size_mm, shape, search_mm)
            differences.append([e.circumference * record.pixel_size_mm - record.hc_mm for e in candidates])
        differences = np.array(differences)
        for name, column in (("one shift", 0), ("per direction", 1)):
            d = differences[:, column]
            print(f"±{search_mm} mm, {name}: ADF {np.mean(np.abs(d)):.2f} mm, DF {d.mean():+.2f} ± {d.std():.2f}, worst {np.abs(d).max():.1f}")


if __name__ == "__main__":
    main()
