"""Segment the phantoms of one part of a datalist as ``fetalbiometry segment`` does; per-case CSV.

The columns are those of the bundle's ``evaluate.json`` (``metrics.csv``), so ``tables3d.py``
summarises either. ``--running-statistics`` puts batch normalisation back to PyTorch's running
averages (the behaviour before ``networks.normalization``), and ``--float32`` keeps the network in
float32 on a CPU with bfloat16 units, for the comparisons in
``docs/experiments/2026-12-04-3d-physical-scale.md``.

    python docs/experiments/scripts/validate3d.py MODEL.pt out/val3d/datalist.json validation > val.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

from fetalbiometry.io import read_image
from fetalbiometry.metrics import evaluate_images
from fetalbiometry.networks.normalization import VolumeBatchNorm2d, VolumeBatchNorm3d
from fetalbiometry.segment3d.segmenter import Segmenter

COLUMNS = ("case", "dice", "jaccard", "conformity", "adb_mm", "hdb_mm", "volume_pred_ml", "volume_ref_ml")


def use_running_statistics(network: torch.nn.Module) -> None:
    """Make every volume-statistics norm of ``network`` plain batch normalisation again."""
    for module in network.modules():
        if isinstance(module, VolumeBatchNorm3d):
            module.__class__ = torch.nn.BatchNorm3d
        elif isinstance(module, VolumeBatchNorm2d):
            module.__class__ = torch.nn.BatchNorm2d


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="weights, or - for the shipped model")
    parser.add_argument("datalist", type=Path)
    parser.add_argument("part", help="training, validation or test")
    parser.add_argument("--running-statistics", action="store_true")
    parser.add_argument("--float32", action="store_true", help="no bfloat16, even on a CPU with bfloat16 units")
    args = parser.parse_args()
    segmenter = Segmenter.from_bundle(None if args.model == "-" else args.model, device="cpu")
    segmenter.bfloat16 = segmenter.bfloat16 and not args.float32
    if args.running_statistics:
        use_running_statistics(segmenter.network)
    writer = csv.writer(sys.stdout)
    writer.writerow(COLUMNS)
    for entry in json.loads(args.datalist.read_text(encoding="utf-8"))[args.part]:
        image = read_image(args.datalist.parent / entry["image"])
        reference = read_image(args.datalist.parent / entry["label"])
        metrics = evaluate_images(segmenter.segment(image), reference).as_dict()
        writer.writerow([entry["image"], *(f"{metrics[name]:.6g}" for name in COLUMNS[1:])])
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
