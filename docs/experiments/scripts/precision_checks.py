"""The same-process timings and the 2D accuracy check behind the speed changes of 2026-12-04.

Prints, on this machine with 2 threads (see docs/experiments/2026-12-04-3d-physical-scale.md and
docs/benchmarks.md):

1. the shipped 3D network's forward pass on a 96³ grid, alternating: batch norm by separate
   reductions (before) against the fused kernel (now), and float32 against bfloat16;
2. the shipped HC network's forward pass at 160 x 256, float32 against bfloat16;
3. the shipped HC model on the 77 validation frames of the HC18 split in float32 and in bfloat16:
   ADF, DSC, HD and the change of each frame's HC.

    HC18_DIR=../shared/data/hc18 python docs/experiments/scripts/precision_checks.py
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch

from fetalbiometry.networks.normalization import _VolumeStatistics
from fetalbiometry.planes2d.evaluation import evaluate_planes, hc18_case, summarize_planes
from fetalbiometry.planes2d.predictor import load_plane_predictor
from fetalbiometry.planes2d.training import hc18_splits
from fetalbiometry.segment3d.segmenter import Segmenter
from fetalbiometry.weights import cpu_autocast


@contextmanager
def batch_norm_by_reductions():
    """The volume-statistics batch norm as it was before 2026-12-04: separate reductions."""
    fused = _VolumeStatistics.forward
    _VolumeStatistics.forward = _VolumeStatistics._normalise_by_reductions
    try:
        yield
    finally:
        _VolumeStatistics.forward = fused


def alternate(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs interleaved ``repeats`` times after one warm-up each."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(2)
    segmenter = Segmenter.from_bundle(device="cpu")
    volume = torch.rand(1, 1, 96, 96, 96)

    def forward3d(bfloat16: bool) -> object:
        with cpu_autocast(segmenter.device, bfloat16):
            return segmenter.model.inferer(volume, segmenter.network)

    def reductions3d() -> object:
        with batch_norm_by_reductions():
            return forward3d(False)

    seconds = alternate({"reductions": reductions3d, "fused": lambda: forward3d(False), "bfloat16": lambda: forward3d(True)}, 2)
    print(f"3D forward 96³: {', '.join(f'{name} {value:.2f} s' for name, value in seconds.items())}")
    print(f"  fused / reductions {seconds['fused'] / seconds['reductions']:.2f}, bfloat16 / float32 {seconds['bfloat16'] / seconds['fused']:.2f}")

    predictor = load_plane_predictor(None, "mtln.json", "cpu")
    frame = torch.rand(1, 1, 160, 256)

    def forward2d(bfloat16: bool) -> object:
        with cpu_autocast(predictor.device, bfloat16):
            return predictor.network(frame)

    seconds = alternate({"float32": lambda: forward2d(False), "bfloat16": lambda: forward2d(True)}, 20)
    print(f"HC network 160x256: float32 {1000 * seconds['float32']:.1f} ms, bfloat16 {1000 * seconds['bfloat16']:.1f} ms")

    root = os.environ.get("HC18_DIR", "../shared/data/hc18")
    cases = [hc18_case(record) for record in hc18_splits(root)["validation"]]
    measured = {}
    for bfloat16 in (False, True):
        predictor.bfloat16 = bfloat16
        results = evaluate_planes(predictor, cases)
        summary = summarize_planes(results)
        measured[bfloat16] = np.array([np.nan if r.value_mm is None else r.value_mm for r in results], dtype=float)
        figures = ", ".join(f"{key} {summary[key]['mean']:.3f}" for key in ("adf_mm", "dsc_percent", "hd_mm"))
        print(f"validation, {'bfloat16' if bfloat16 else 'float32'}: {summary['measured']} measured, {figures}")
    change = np.abs(measured[True] - measured[False])
    print(f"HC change per frame: mean {np.nanmean(change):.3f} mm, largest {np.nanmax(change):.3f} mm")


if __name__ == "__main__":
    main()
