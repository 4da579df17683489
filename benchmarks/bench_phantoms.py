"""Time to make a phantom with each B-mode model, as ratios measured in one run (not a test).

The polar model (:func:`fetalbiometry.data.ultrasound.polar_envelope`) is timed against the earlier
Cartesian model on the same scenes (``image_model="cartesian"`` of
:func:`fetalbiometry.data.synthetic.make_plane` and :func:`~fetalbiometry.data.synthetic.make_head_volume`),
on one core (the BLAS and OpenMP thread pools are limited to one thread before NumPy loads):

- a 2D head plane at the default 160 x 240 and at an HC18 frame's 540 x 800;
- a 3D head volume of 128³ voxels of 1.3 mm (the default field of view).

The machine is shared and noisy, so the two models' runs are interleaved and each is the median
of ``--repeats`` runs; the ratio polar / Cartesian is the figure to compare across machines, the
medians are printed against the issue's targets (50 ms per plane, 3 s per 128³ volume, one core).

    .venv/bin/python -m benchmarks.bench_phantoms
    .venv/bin/python -m benchmarks.bench_phantoms --repeats 3
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
import statistics
import time
from collections.abc import Callable

from fetalbiometry.data.synthetic import IMAGE_MODELS, make_head_volume, make_plane

CASES: dict[str, tuple[Callable[[str, int], object], float]] = {
    "plane 160x240": (lambda model, seed: make_plane("head", seed, image_model=model), 0.05),
    "plane 540x800": (lambda model, seed: make_plane("head", seed, (540, 800), image_model=model), 0.5),
    "volume 128^3 at 1.3 mm": (
        lambda model, seed: make_head_volume(seed, (128, 128, 128), (1.3, 1.3, 1.3), image_model=model),
        3.0,
    ),
}


def time_case(make: Callable[[str, int], object], repeats: int) -> dict[str, float]:
    """Median seconds per phantom of each model, runs interleaved, one warm-up each."""
    times: dict[str, list[float]] = {model: [] for model in IMAGE_MODELS}
    for repeat in range(repeats + 1):
        for model in IMAGE_MODELS:
            start = time.perf_counter()
            make(model, repeat)
            if repeat:
                times[model].append(time.perf_counter() - start)
    return {model: statistics.median(values) for model, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("| phantom | polar (s) | cartesian (s) | polar / cartesian | target (s) |")
    print("|---|---|---|---|---|")
    for name, (make, target) in CASES.items():
        seconds = time_case(make, args.repeats)
        polar, cartesian = seconds["polar"], seconds["cartesian"]
        print(f"| {name} | {polar:.3f} | {cartesian:.3f} | {polar / cartesian:.2f} | {target:g} |")


if __name__ == "__main__":
    main()
