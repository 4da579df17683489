"""Study-level summary (``summary.json``): counts, reproducibility, agreement with experts and labels."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fetalbiometry.io import atomic_output
from fetalbiometry.study.statistics import (
    BlandAltman,
    SpreadSummary,
    SubjectSpread,
    bland_altman,
    mean_and_sd,
    pearson_r,
    spread_summary,
    subject_spread,
)
from fetalbiometry.study.tables import REFERENCE_METRICS, VolumeRecord

#: What the 3D whole-head paper reports (Sec. 3.2, Figs. 8-9), for side-by-side reading.
PAPER_RESULTS = {
    "expert_pearson_r": 0.990,
    "expert_bias_ml": -1.6,
    "expert_loa_half_width_ml": 19.5,
    "expert_n_volumes": 50,
    "reproducibility_mean_sd_ml": 11.524,
    "reproducibility_min_sd_ml": 1.960,
    "reproducibility_max_sd_ml": 49.869,
    "reproducibility_n_subjects": 52,
    "reproducibility_n_volumes": 156,
}

SD_DEFINITION = "sample standard deviation (ddof=1)"
DIFFERENCE_DEFINITION = "ours - expert (negative bias: the segmentation is smaller than the expert's volume)"


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: map them to null."""
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class StudySummary:
    """Everything ``summary.json`` holds.

    Attributes:
        n_volumes: manifest rows.
        n_ok, n_failed: rows by status (n_failed counts the flagged rows too: neither gives a volume).
        n_subjects: subjects with at least one ok volume.
        reproducibility: mean/min/max of per-subject volume SDs (ddof=1).
        n_expert_pairs: ok volumes with an expert volume.
        expert_pearson_r: Pearson r against the expert volumes (None with < 2 pairs).
        expert_bland_altman: bias and 95 % limits, differences = ours - expert (None with < 2 pairs).
        reference_metrics: ``{metric: {"n", "mean", "sd"}}`` over ok volumes with a reference label.
    """

    n_volumes: int
    n_ok: int
    n_failed: int
    n_subjects: int
    reproducibility: SpreadSummary
    n_expert_pairs: int
    expert_pearson_r: float | None
    expert_bland_altman: BlandAltman | None
    reference_metrics: dict[str, dict[str, float | int | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The JSON document of ``summary.json`` (NaN/inf written as null)."""
        agreement = self.expert_bland_altman
        return {
            "counts": {
                "volumes": self.n_volumes,
                "ok": self.n_ok,
                "failed": self.n_failed,
                "subjects": self.n_subjects,
            },
            "reproducibility": {
                "definition": f"per-subject {SD_DEFINITION} of the head volumes of its rescans; "
                "mean, min and max over subjects with at least 2 ok volumes",
                "n_subjects": self.reproducibility.n_subjects,
                "mean_sd_ml": self.reproducibility.mean_sd,
                "min_sd_ml": self.reproducibility.min_sd,
                "max_sd_ml": self.reproducibility.max_sd,
            },
            "expert_agreement": {
                "n": self.n_expert_pairs,
                "pearson_r": _finite(self.expert_pearson_r),
                "difference": DIFFERENCE_DEFINITION,
                "bias_ml": agreement.bias if agreement else None,
                "sd_of_differences_ml": agreement.sd if agreement else None,
                "lower_limit_ml": agreement.lower if agreement else None,
                "upper_limit_ml": agreement.upper if agreement else None,
                "limits": f"bias -/+ 1.96 x {SD_DEFINITION} of the differences",
            },
            "reference_metrics": {
                name: {key: _finite(value) if key != "n" else value for key, value in stats.items()}
                for name, stats in self.reference_metrics.items()
            },
        }


def per_subject(records: Sequence[VolumeRecord]) -> list[SubjectSpread]:
    """Per-subject n, mean and SD of the ok volumes, in order of first appearance."""
    measured = [record for record in records if record.ok and record.volume_ml is not None]
    return subject_spread([r.subject for r in measured], [r.volume_ml for r in measured])


def expert_pairs(records: Sequence[VolumeRecord]) -> tuple[list[float], list[float]]:
    """(our volumes, expert volumes) of the ok volumes that have an expert volume."""
    paired = [r for r in records if r.ok and r.volume_ml is not None and r.expert_volume_ml is not None]
    return [r.volume_ml for r in paired], [r.expert_volume_ml for r in paired]


def summarize(records: Sequence[VolumeRecord]) -> StudySummary:
    """Compute the study summary from all volume records.

    Args:
        records: one record per manifest row.

    Returns:
        The summary (see :class:`StudySummary`).
    """
    ok = [record for record in records if record.ok]
    ours, expert = expert_pairs(records)
    compared = [record for record in ok if record.dice is not None]
    return StudySummary(
        n_volumes=len(records),
        n_ok=len(ok),
        n_failed=len(records) - len(ok),
        n_subjects=len({record.subject for record in ok}),
        reproducibility=spread_summary(per_subject(records)),
        n_expert_pairs=len(ours),
        expert_pearson_r=pearson_r(ours, expert),
        expert_bland_altman=bland_altman(ours, expert),
        reference_metrics={
            name: mean_and_sd([getattr(record, name) for record in compared]) for name in REFERENCE_METRICS
        }
        if compared
        else {},
    )


def write_summary_json(path: Path, summary: StudySummary) -> Path:
    """Write ``summary.json`` atomically (strict JSON: no NaN/inf)."""
    with atomic_output(path) as temporary:
        Path(temporary).write_text(json.dumps(summary.as_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path
