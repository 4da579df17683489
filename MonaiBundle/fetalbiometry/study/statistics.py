"""Agreement and reproducibility statistics of a volumetric study (pure functions).

The 3D whole-head paper (hybrid attention + auto-context; ``3d-whole-head-hybrid-attention-
autocontext``, Sec. 3.2, Figs. 8-9) validates head volumes in two ways, both implemented here:

* agreement with an expert: Pearson correlation (0.990) and Bland-Altman bias and 95 %
  limits of agreement (-1.6 +/- 19.5 mL), see :func:`pearson_r` and :func:`bland_altman`;
* reproducibility over rescans of one fetus from 3 probe directions: the standard deviation of
  each subject's volumes, summarised by its mean, minimum and maximum over subjects (11.524,
  1.960, 49.869 mL), see :func:`subject_spread` and :func:`spread_summary`.

Standard deviations are sample standard deviations (``ddof=1``) throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

#: Multiplier of the SD of differences that gives the 95 % limits of agreement
#: (Bland & Altman 1986).
LIMITS_OF_AGREEMENT_Z = 1.96


@dataclass(frozen=True)
class BlandAltman:
    """Bland-Altman agreement of paired measurements.

    Attributes:
        n: number of pairs.
        bias: mean difference (ours - reference).
        sd: sample SD (ddof=1) of the differences.
        lower: bias - 1.96 * sd.
        upper: bias + 1.96 * sd.
    """

    n: int
    bias: float
    sd: float
    lower: float
    upper: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class SubjectSpread:
    """Volumes of one subject's rescans.

    Attributes:
        subject: subject identifier.
        n: number of volumes.
        mean: mean volume.
        sd: sample SD (ddof=1), or None with fewer than 2 volumes.
    """

    subject: str
    n: int
    mean: float
    sd: float | None


@dataclass(frozen=True)
class SpreadSummary:
    """Mean, minimum and maximum of the per-subject SDs (paper, Fig. 9).

    Attributes:
        n_subjects: subjects with at least 2 volumes (those that have an SD).
        mean_sd, min_sd, max_sd: statistics of the per-subject SDs, None when no subject has one.
    """

    n_subjects: int
    mean_sd: float | None
    min_sd: float | None
    max_sd: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def _as_pairs(ours: Sequence[float], reference: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(ours, dtype=float)
    y = np.asarray(reference, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired measurements need two 1-D sequences of one length, got {x.shape} and {y.shape}")
    return x, y


def pearson_r(ours: Sequence[float], reference: Sequence[float]) -> float | None:
    """Pearson correlation coefficient of paired measurements (paper: 0.990 for head volume).

    Args:
        ours: measurements of the method.
        reference: the expert's measurements of the same volumes.

    Returns:
        r, or None when there are fewer than 2 pairs or either side is constant.
    """
    x, y = _as_pairs(ours, reference)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(stats.pearsonr(x, y).statistic)


def bland_altman(ours: Sequence[float], reference: Sequence[float]) -> BlandAltman | None:
    """Bland-Altman bias and 95 % limits of agreement (paper: -1.6 +/- 19.5 mL).

    Differences are ``ours - reference``: a negative bias means the method measures less than
    the expert. Limits are ``bias +/- 1.96 * SD`` with the sample SD (ddof=1) of the differences.

    Args:
        ours: measurements of the method.
        reference: the expert's measurements of the same volumes.

    Returns:
        The agreement, or None with fewer than 2 pairs.
    """
    x, y = _as_pairs(ours, reference)
    if len(x) < 2:
        return None
    differences = x - y
    bias = float(np.mean(differences))
    sd = float(np.std(differences, ddof=1))
    half_width = LIMITS_OF_AGREEMENT_Z * sd
    return BlandAltman(n=len(x), bias=bias, sd=sd, lower=bias - half_width, upper=bias + half_width)


def subject_spread(subjects: Sequence[str], volumes: Sequence[float]) -> list[SubjectSpread]:
    """Per-subject number, mean and sample SD (ddof=1) of volumes (paper, Fig. 9 box plot).

    Args:
        subjects: subject of each volume.
        volumes: the volumes, in the same order.

    Returns:
        One entry per subject, in order of first appearance.
    """
    if len(subjects) != len(volumes):
        raise ValueError(f"{len(subjects)} subjects for {len(volumes)} volumes")
    groups: dict[str, list[float]] = {}
    for subject, volume in zip(subjects, volumes):
        groups.setdefault(subject, []).append(float(volume))
    return [
        SubjectSpread(
            subject=subject,
            n=len(values),
            mean=float(np.mean(values)),
            sd=float(np.std(values, ddof=1)) if len(values) > 1 else None,
        )
        for subject, values in groups.items()
    ]


def spread_summary(spreads: Sequence[SubjectSpread]) -> SpreadSummary:
    """Reproducibility: mean, min and max of the per-subject SDs (paper: 11.524, 1.960, 49.869 mL).

    Args:
        spreads: output of :func:`subject_spread`; subjects without an SD are left out.

    Returns:
        The summary; its statistics are None when no subject has 2 or more volumes.
    """
    sds = [spread.sd for spread in spreads if spread.sd is not None]
    if not sds:
        return SpreadSummary(n_subjects=0, mean_sd=None, min_sd=None, max_sd=None)
    return SpreadSummary(n_subjects=len(sds), mean_sd=float(np.mean(sds)), min_sd=min(sds), max_sd=max(sds))


def mean_and_sd(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean and sample SD (ddof=1) of a metric, as reported "mean +/- sd" in the paper's tables.

    Args:
        values: the metric of each volume.

    Returns:
        ``{"n", "mean", "sd"}``; mean is None for no values, sd is None for fewer than 2.
    """
    array = np.asarray(values, dtype=float)
    return {
        "n": int(array.size),
        "mean": float(np.mean(array)) if array.size else None,
        "sd": float(np.std(array, ddof=1)) if array.size > 1 else None,
    }
