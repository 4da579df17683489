"""Ignite handlers for the bundle's evaluation (``MonaiBundle/configs/evaluate.json``).

MONAI's metric handlers (``HausdorffDistance``, ``SurfaceDistance``) call its distance metrics
without the voxel spacing, i.e. in voxels. The paper reports Adb and Hdb in mm (Eqs. 7-8), so
:class:`SegmentationMetricsSaver` computes every criterion with :mod:`fetalbiometry.metrics` at
each volume's own spacing, read from the ``MetaTensor`` affine.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.handlers import from_engine
from monai.utils import CommonKeys

from fetalbiometry.io import atomic_output
from fetalbiometry.metrics import SegmentationMetrics, SegmentationMetricsAccumulator, compute_segmentation_metrics

__all__ = ["SegmentationMetricsSaver", "case_names"]

logger = logging.getLogger(__name__)

OutputTransform = Callable[[Any], tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]]
_PREDICTIONS_AND_LABELS: OutputTransform = from_engine([CommonKeys.PRED, CommonKeys.LABEL])


def case_names(batch: Sequence[dict[str, Any]], key: str = CommonKeys.IMAGE) -> list[str]:
    """The source file (``filename_or_obj``) of ``key`` in each item of a decollated batch."""
    return [str(item[key].meta.get("filename_or_obj", "")) for item in batch]


def _foreground(volume: torch.Tensor) -> np.ndarray:
    """Head mask of a (C, x, y, z) volume: channel 1 of a one-hot pair, or the single channel > 0."""
    array = volume.detach().cpu().numpy()
    return array[1] > 0.5 if array.shape[0] == 2 else array[0] > 0


def _finite_or_none(value: float) -> float | None:
    """``value``, or ``None`` (JSON null) where it is NaN or infinite."""
    return value if np.isfinite(value) else None


class SegmentationMetricsSaver:
    """Compute DSC, Conf, Jacc, Adb, Hdb (mm) and volumes per case; write a CSV and a summary JSON.

    Attach it to an evaluator whose post-processing leaves the prediction on the reference's full
    resolution grid (``Invertd``). At every iteration, each case's prediction and label (one-hot
    with 2 channels, or one channel of class indices) go through
    :func:`fetalbiometry.metrics.compute_segmentation_metrics` with the spacing of the label's
    affine, in array axis order. At the end of the epoch it writes ``<output_dir>/metrics.csv``
    (one row per case) and ``<output_dir>/metrics_summary.json`` (mean and SD of every metric over
    the cases, ``n_cases``; null where a value is undefined, e.g. the SD of one case, or infinite,
    e.g. a mean over a missed head). Run the evaluation in one process: cases are not gathered across ranks.

    Args:
        output_dir: folder of the two files.
        output_transform: maps ``engine.state.output`` to ``(predictions, labels)`` lists.
        name_transform: maps ``engine.state.batch`` to the case names.
        hd_percentile: optional percentile for Hdb (see :func:`fetalbiometry.metrics.hausdorff_boundary_distance`).
    """

    def __init__(
        self,
        output_dir: str | Path,
        output_transform: OutputTransform = _PREDICTIONS_AND_LABELS,
        name_transform: Callable[[Any], list[str]] = case_names,
        hd_percentile: float | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.output_transform = output_transform
        self.name_transform = name_transform
        self.hd_percentile = hd_percentile
        self.accumulator = SegmentationMetricsAccumulator()
        self.cases: list[tuple[str, SegmentationMetrics]] = []

    def attach(self, engine: Engine) -> None:
        """Register the handler's events on ``engine``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the cases of a previous run."""
        self.accumulator.reset()
        self.cases.clear()

    def record(self, engine: Engine) -> None:
        """Compute the metrics of every case of the current batch."""
        predictions, labels = self.output_transform(engine.state.output)
        for name, prediction, label in zip(self.name_transform(engine.state.batch), predictions, labels, strict=True):
            if not isinstance(label, MetaTensor):
                raise TypeError("labels must be MetaTensors with an affine to give the voxel spacing.")
            spacing = affine_to_spacing(label.affine, r=label.ndim - 1).tolist()
            metrics = compute_segmentation_metrics(
                _foreground(prediction), _foreground(label), spacing, hd_percentile=self.hd_percentile
            )
            self.accumulator.append(metrics)
            self.cases.append((name, metrics))
            logger.info(f"{name}: DSC {metrics.dice:.4f}, Adb {metrics.adb_mm:.3f} mm, Hdb {metrics.hdb_mm:.3f} mm")

    def write(self, engine: Engine | None = None) -> None:
        """Write the per-case CSV and the summary JSON of the cases recorded so far."""
        if not self.cases:
            return
        names = [f.name for f in fields(SegmentationMetrics)]
        csv_path = self.output_dir / "metrics.csv"
        with atomic_output(csv_path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["case", *names])
            for case, metrics in self.cases:
                writer.writerow([case, *(f"{getattr(metrics, name):.6g}" for name in names)])
        aggregate = self.accumulator.aggregate()
        summary = {
            "n_cases": len(self.cases),
            "metrics": {name: {k: _finite_or_none(v) for k, v in stats.items()} for name, stats in aggregate.items()},
        }
        with atomic_output(self.output_dir / "metrics_summary.json") as temporary:
            temporary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        logger.info(
            f"{len(self.cases)} case(s): "
            + ", ".join(f"{k} {v['mean']:.4g} ± {v['sd']:.2g}" for k, v in aggregate.items())
            + f"; written to {csv_path}"
        )
