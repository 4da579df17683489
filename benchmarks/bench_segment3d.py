"""Whole ``fetalbiometry segment`` runs at scanner grids, and the network against BasicUNet (not a test).

Issue: any volume up to 300³ voxels is segmented in at most 20 s on 2 CPU cores, model load
included, with at most 4 GiB of memory. The bundle resamples every volume to its ``target_spacing``
first, so the cost follows the field of view in mm, not the voxel count: the worst case is the
largest grid at the coarsest scanner spacing (300³ at 1.2 mm, a 360 mm field of view).

Two measurements, in one run on one machine:

1. ``fetalbiometry segment --device cpu`` on synthetic head volumes of 128³ to 300³ voxels at
   0.6-1.2 mm, each in a fresh process (wall time of the whole command, and that process's peak
   resident memory from ``os.wait4``);
2. the shipped network against ``monai.networks.nets.BasicUNet`` of the same widths per level
   (16, 32, 32, 32, 32, 16; as in ``bench_networks3d.py``) on the same network-grid input at the bundle's working spacing: the median of ``--repeats``
   forward passes each, and their ratio. The machine is shared and noisy, so the ratio is the figure
   to compare between runs.

    .venv/bin/python benchmarks/bench_segment3d.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import BasicUNet

from fetalbiometry.data.synthetic import make_head_volume
from fetalbiometry.io import write_image
from fetalbiometry.segment3d.segmenter import load_bundle_model

#: (voxels a side, spacing in mm): the grids of the command runs.
GRIDS = ((128, 1.2), (200, 1.0), (300, 0.6), (300, 1.2))
TIME_LIMIT_S = 20.0
MEMORY_LIMIT_GIB = 4.0


def command_run(size: int, spacing: float, folder: Path) -> tuple[float, float, str]:
    """Wall seconds, peak GiB and the volume line of ``fetalbiometry segment`` on a ``size``³ phantom."""
    image = write_image(
        make_head_volume(seed=7, shape=(size,) * 3, spacing=(spacing,) * 3, ga_weeks=30.0).image,
        folder / f"volume-{size}-{spacing}.nii.gz",
    )
    command = [sys.executable, "-m", "fetalbiometry.cli", "segment", str(image), str(folder / "label.nii.gz")]
    log = folder / "log.txt"
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as output:
        process = subprocess.Popen([*command, "--device", "cpu"], stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak resident set (KiB on Linux)
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen.wait
    seconds = time.perf_counter() - start
    peak_kib = usage.ru_maxrss
    lines = log.read_text(encoding="utf-8").splitlines()
    volume_line = next((line for line in lines if line.startswith("head volume")), lines[-1] if lines else "")
    return seconds, peak_kib / 2**20, volume_line


def forward_seconds(network: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median wall seconds of ``repeats`` forward passes after one warm-up."""
    times = []
    with torch.no_grad():
        network(x)
        for _ in range(repeats):
            start = time.perf_counter()
            network(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_bundle_model()
    print(f"working spacing {model.target_spacing} mm, torch threads {torch.get_num_threads()}\n")
    print("| grid | field of view | network grid | whole command | peak memory | result |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for size, spacing in GRIDS:
            seconds, gib, volume_line = command_run(size, spacing, Path(folder))
            network_side = int(np.ceil(size * spacing / model.target_spacing[0] / 8) * 8)
            flag = "" if seconds <= TIME_LIMIT_S and gib <= MEMORY_LIMIT_GIB else " **over target**"
            print(
                f"| {size}³ at {spacing} mm | {size * spacing:.0f} mm | ≤ {network_side}³ | {seconds:.1f} s{flag} "
                f"| {gib:.2f} GiB | {volume_line} |"
            )
    print("\n| network grid | shipped network | BasicUNet | ratio |")
    print("|---|---|---|---|")
    network = model.network.eval()
    baseline = BasicUNet(spatial_dims=3, in_channels=1, out_channels=2, features=(16, 32, 32, 32, 32, 16)).eval()
    for side in (64, 120):
        x = torch.rand(1, 1, side, side, side)
        ours, theirs = forward_seconds(network, x, args.repeats), forward_seconds(baseline, x, args.repeats)
        print(f"| {side}³ | {ours:.2f} s | {theirs:.2f} s | {ours / theirs:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
