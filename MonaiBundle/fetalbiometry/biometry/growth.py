"""Gestational age, size-for-age centiles and fetal weight from fetal biometry.

Every function takes lengths in millimetres, the unit the segmentation and the ellipse fit
produce, and converts internally where a published equation is written in centimetres. Gestational
age (GA) is in weeks (fractional, "exact" weeks: 20 weeks + 3 days = 20.43), weight in grams.
Scalars give a ``float``; NumPy arrays give an array of the broadcast shape.

Equations implemented:

- Hadlock FP, Deter RL, Harrist RB, Park SK. Estimating fetal age: computer-assisted analysis of
  multiple fetal growth parameters. Radiology 1984;152:497-501. GA from HC, AC, FL or BPD alone.
- Papageorghiou AT, Kemp B, Stones W, et al. Ultrasound-based gestational-age estimation in late
  first trimester and early second trimester: the INTERGROWTH-21st dating study. Ultrasound Obstet
  Gynecol 2016;48:719-726. GA from HC.
- Papageorghiou AT, Ohuma EO, Altman DG, et al. International standards for fetal growth based on
  serial ultrasound measurements: the Fetal Growth Longitudinal Study of the INTERGROWTH-21st
  Project. Lancet 2014;384:869-879. Mean and SD of HC, AC, FL and BPD for GA 14-40 weeks.
- Hadlock FP, Harrist RB, Sharman RS, Deter RL, Park SK. Estimation of fetal weight with the use of
  head, body, and femur measurements: a prospective study. Am J Obstet Gynecol 1985;151:333-337.

The trimesters are those of the American College of Obstetricians and Gynecologists: the first
up to 13 weeks 6 days, the second from 14 weeks 0 days to 27 weeks 6 days, the third from 28 weeks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from fetalbiometry.errors import InputError

__all__ = [
    "Measure",
    "HADLOCK_1984_GA",
    "INTERGROWTH_FETAL_GROWTH",
    "INTERGROWTH_GA_RANGE_WEEKS",
    "TRIMESTERS",
    "TRIMESTER_START_WEEKS",
    "FractionalPolynomial",
    "ga_hadlock",
    "ga_hadlock_hc",
    "ga_hadlock_ac",
    "ga_hadlock_fl",
    "ga_hadlock_bpd",
    "ga_intergrowth_hc",
    "intergrowth_mean_sd",
    "intergrowth_zscore",
    "intergrowth_centile",
    "efw_hadlock",
    "gestational_age_report",
    "trimester",
]

Measure = Literal["hc", "ac", "fl", "bpd"]

MM_PER_CM = 10.0

# Hadlock 1984, single-parameter models: GA (weeks) = c0 + c1·x + c2·x² + c3·x³, x in cm.
HADLOCK_1984_GA: dict[str, tuple[float, float, float, float]] = {
    "hc": (8.96, 0.540, 0.0, 0.0003),
    "ac": (8.14, 0.753, 0.0036, 0.0),
    "fl": (10.35, 2.460, 0.170, 0.0),
    "bpd": (9.54, 1.482, 0.1676, 0.0),
}


TRIMESTERS: tuple[str, ...] = ("first", "second", "third")
"""The trimesters' names, in order."""

TRIMESTER_START_WEEKS: tuple[float, float] = (14.0, 28.0)
"""The gestational ages (weeks) at which the second and third trimesters start."""


@dataclass(frozen=True)
class FractionalPolynomial:
    """A fractional polynomial in gestational age, as INTERGROWTH-21st publishes its curves.

    Evaluates ``sum(c * GA**p * ln(GA)**q for c, p, q in terms)``, exponentiated when
    ``log_scale`` is set (the SD curves of BPD and FL are modelled on the log scale).

    Args:
        terms: ``(coefficient, power of GA, power of ln GA)`` triples.
        log_scale: return ``exp`` of the sum.
    """

    terms: tuple[tuple[float, float, int], ...]
    log_scale: bool = False

    def __call__(self, ga_weeks: np.ndarray) -> np.ndarray:
        log_ga = np.log(ga_weeks)
        total = sum(c * ga_weeks**p * log_ga**q for c, p, q in self.terms)
        return np.exp(total) if self.log_scale else total


# INTERGROWTH-21st fetal growth standards (Papageorghiou et al., Lancet 2014), GA in exact
# weeks, sizes in mm: (mean curve, SD curve). Coefficients cross-checked against the gigs R package
# (lshtm-gigs/gigs, R/ig_fet.R) and two independent clinical calculators; the resulting curves
# reproduce the INTERGROWTH-21st z-score and centile tables (see tests/test_growth.py).
INTERGROWTH_FETAL_GROWTH: dict[str, tuple[FractionalPolynomial, FractionalPolynomial]] = {
    "hc": (
        FractionalPolynomial(((-28.2849, 0, 0), (1.69267, 2, 0), (-0.397485, 2, 1))),
        FractionalPolynomial(
            ((1.98735, 0, 0), (0.0136772, 3, 0), (-0.00726264, 3, 1), (0.000976253, 3, 2))
        ),
    ),
    "bpd": (
        FractionalPolynomial(((5.60878, 0, 0), (0.158369, 2, 0), (-0.00256379, 3, 0))),
        FractionalPolynomial(
            ((0.101242, 0, 0), (0.00150557, 3, 0), (-0.000771535, 3, 1), (0.0000999638, 3, 2)),
            log_scale=True,
        ),
    ),
    "ac": (
        FractionalPolynomial(((-81.3243, 0, 0), (11.6772, 1, 0), (-0.000561865, 3, 0))),
        FractionalPolynomial(
            ((-4.36302, 0, 0), (0.121445, 2, 0), (-0.0130256, 3, 0), (0.00282143, 3, 1))
        ),
    ),
    "fl": (
        FractionalPolynomial(((-39.9616, 0, 0), (4.32298, 1, 0), (-0.0380156, 2, 0))),
        FractionalPolynomial(
            ((0.605843, 0, 0), (-42.0014, -2, 0), (0.00000917972, 3, 0)), log_scale=True
        ),
    ),
}

INTERGROWTH_GA_RANGE_WEEKS = (14.0, 40.0)


def _as_result(values: np.ndarray) -> float | np.ndarray:
    """A Python float for 0-d results, the array otherwise."""
    return float(values) if np.ndim(values) == 0 else values


def _positive_finite(name: str, value: ArrayLike) -> np.ndarray:
    """``value`` as a float array; InputError unless every element is finite and > 0."""
    array = np.asarray(value, dtype=float)
    bad = ~np.isfinite(array) | (array <= 0)
    if np.any(bad):
        first_bad = array[bad].flat[0]
        raise InputError(f"{name} must be a positive, finite length in mm; got {first_bad}")
    return array


def _check_measure(measure: str, table: dict) -> None:
    if measure not in table:
        raise InputError(f"unknown measure {measure!r}; expected one of {', '.join(table)}")


def _intergrowth_ga(ga_weeks: ArrayLike) -> np.ndarray:
    """``ga_weeks`` as a float array; InputError outside the standards' 14-40 weeks."""
    ga = np.asarray(ga_weeks, dtype=float)
    low, high = INTERGROWTH_GA_RANGE_WEEKS
    outside = ~np.isfinite(ga) | (ga < low) | (ga > high)
    if np.any(outside):
        raise InputError(
            f"gestational age must be within {low:g}-{high:g} weeks for the INTERGROWTH-21st "
            f"fetal growth standards; got {ga[outside].flat[0]}"
        )
    return ga


def ga_hadlock(measure: Measure, value_mm: ArrayLike) -> float | np.ndarray:
    """Gestational age from one fetal measurement, Hadlock et al., Radiology 1984;152:497-501.

    GA (weeks) = c0 + c1·x + c2·x² + c3·x³ with x in cm and the coefficients of
    :data:`HADLOCK_1984_GA`:

    - HC: 8.96 + 0.540·HC + 0.0003·HC³
    - AC: 8.14 + 0.753·AC + 0.0036·AC²
    - FL: 10.35 + 2.460·FL + 0.170·FL²
    - BPD: 9.54 + 1.482·BPD + 0.1676·BPD²

    The models were fitted on 361 fetuses of 14-42 menstrual weeks; outside that span they
    extrapolate.

    Args:
        measure: ``"hc"``, ``"ac"``, ``"fl"`` or ``"bpd"``.
        value_mm: the measurement in mm (float or array).

    Returns:
        Gestational age in weeks.

    Raises:
        InputError: unknown measure, or a non-positive or non-finite measurement.
    """
    _check_measure(measure, HADLOCK_1984_GA)
    x_cm = _positive_finite(measure, value_mm) / MM_PER_CM
    c0, c1, c2, c3 = HADLOCK_1984_GA[measure]
    return _as_result(c0 + c1 * x_cm + c2 * x_cm**2 + c3 * x_cm**3)


def ga_hadlock_hc(hc_mm: ArrayLike) -> float | np.ndarray:
    """Gestational age (weeks) from head circumference (mm), Hadlock 1984.

    Shorthand for ``ga_hadlock("hc", hc_mm)``; see :func:`ga_hadlock`.
    """
    return ga_hadlock("hc", hc_mm)


def ga_hadlock_ac(ac_mm: ArrayLike) -> float | np.ndarray:
    """Gestational age (weeks) from abdominal circumference (mm), Hadlock 1984.

    Shorthand for ``ga_hadlock("ac", ac_mm)``; see :func:`ga_hadlock`.
    """
    return ga_hadlock("ac", ac_mm)


def ga_hadlock_fl(fl_mm: ArrayLike) -> float | np.ndarray:
    """Gestational age (weeks) from femur length (mm), Hadlock 1984.

    Shorthand for ``ga_hadlock("fl", fl_mm)``; see :func:`ga_hadlock`.
    """
    return ga_hadlock("fl", fl_mm)


def ga_hadlock_bpd(bpd_mm: ArrayLike) -> float | np.ndarray:
    """Gestational age (weeks) from biparietal diameter (mm), Hadlock 1984.

    Shorthand for ``ga_hadlock("bpd", bpd_mm)``; see :func:`ga_hadlock`.
    """
    return ga_hadlock("bpd", bpd_mm)


def ga_intergrowth_hc(hc_mm: ArrayLike) -> float | np.ndarray:
    """Gestational age from head circumference, INTERGROWTH-21st dating study.

    Papageorghiou et al., Ultrasound Obstet Gynecol 2016;48:719-726, HC in mm:
    GA (days) = exp(0.05970·(ln HC)² + 6.409·10⁻⁹·HC³ + 3.3258), returned in weeks (days / 7).
    The study recommends HC for dating between 14 and 26 weeks when no crown-rump length is
    available.

    Args:
        hc_mm: head circumference in mm (float or array).

    Returns:
        Gestational age in weeks.

    Raises:
        InputError: a non-positive or non-finite measurement.
    """
    hc = _positive_finite("hc", hc_mm)
    days = np.exp(0.05970 * np.log(hc) ** 2 + 6.409e-9 * hc**3 + 3.3258)
    return _as_result(days / 7.0)


def intergrowth_mean_sd(
    measure: Measure, ga_weeks: ArrayLike
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Mean and SD of a fetal measurement at a gestational age, INTERGROWTH-21st standards.

    Papageorghiou et al., Lancet 2014;384:869-879: the measurement is normally distributed at each
    GA, with mean and SD given by the fractional polynomials of :data:`INTERGROWTH_FETAL_GROWTH`
    (e.g. HC mean = -28.2849 + 1.69267·GA² - 0.397485·GA²·ln GA).

    Args:
        measure: ``"hc"``, ``"ac"``, ``"fl"`` or ``"bpd"``.
        ga_weeks: gestational age in exact weeks, 14-40 inclusive (float or array).

    Returns:
        ``(mean_mm, sd_mm)``.

    Raises:
        InputError: unknown measure, or a GA outside 14-40 weeks or not finite.
    """
    _check_measure(measure, INTERGROWTH_FETAL_GROWTH)
    ga = _intergrowth_ga(ga_weeks)
    mean_curve, sd_curve = INTERGROWTH_FETAL_GROWTH[measure]
    return _as_result(mean_curve(ga)), _as_result(sd_curve(ga))


def intergrowth_zscore(
    measure: Measure, value_mm: ArrayLike, ga_weeks: ArrayLike
) -> float | np.ndarray:
    """z-score of a fetal measurement for its gestational age, INTERGROWTH-21st standards.

    z = (x - mean(GA)) / SD(GA) with the curves of :func:`intergrowth_mean_sd`
    (Papageorghiou et al., Lancet 2014;384:869-879).

    Args:
        measure: ``"hc"``, ``"ac"``, ``"fl"`` or ``"bpd"``.
        value_mm: the measurement in mm (float or array).
        ga_weeks: gestational age in exact weeks, 14-40 inclusive; broadcasts with ``value_mm``.

    Returns:
        The z-score.

    Raises:
        InputError: unknown measure, a non-positive or non-finite measurement, or a GA outside
            14-40 weeks.
    """
    value = _positive_finite(measure, value_mm)
    mean, sd = intergrowth_mean_sd(measure, ga_weeks)
    return _as_result((value - mean) / sd)


def intergrowth_centile(
    measure: Measure, value_mm: ArrayLike, ga_weeks: ArrayLike
) -> float | np.ndarray:
    """Centile (0-100) of a fetal measurement for its gestational age, INTERGROWTH-21st standards.

    Centile = 100·Φ(z), Φ the standard normal distribution function and z from
    :func:`intergrowth_zscore` (Papageorghiou et al., Lancet 2014;384:869-879).

    Args:
        measure: ``"hc"``, ``"ac"``, ``"fl"`` or ``"bpd"``.
        value_mm: the measurement in mm (float or array).
        ga_weeks: gestational age in exact weeks, 14-40 inclusive; broadcasts with ``value_mm``.

    Returns:
        The centile, in percent.

    Raises:
        InputError: as :func:`intergrowth_zscore`.
    """
    return _as_result(100.0 * norm.cdf(intergrowth_zscore(measure, value_mm, ga_weeks)))


def efw_hadlock(hc_mm: ArrayLike, ac_mm: ArrayLike, fl_mm: ArrayLike) -> float | np.ndarray:
    """Estimated fetal weight from HC, AC and FL, Hadlock et al. 1985.

    Hadlock et al., Am J Obstet Gynecol 1985;151:333-337, the HC/AC/FL model:
    log10 EFW (g) = 1.326 - 0.00326·AC·FL + 0.0107·HC + 0.0438·AC + 0.158·FL, lengths in cm.

    Args:
        hc_mm: head circumference in mm.
        ac_mm: abdominal circumference in mm.
        fl_mm: femur length in mm. The three broadcast together.

    Returns:
        Estimated fetal weight in grams.

    Raises:
        InputError: a non-positive or non-finite measurement.
    """
    hc = _positive_finite("hc", hc_mm) / MM_PER_CM
    ac = _positive_finite("ac", ac_mm) / MM_PER_CM
    fl = _positive_finite("fl", fl_mm) / MM_PER_CM
    log10_weight = 1.326 - 0.00326 * ac * fl + 0.0107 * hc + 0.0438 * ac + 0.158 * fl
    return _as_result(10.0**log10_weight)


def trimester(ga_weeks: ArrayLike) -> str | np.ndarray:
    """The trimester (:data:`TRIMESTERS`) of a gestational age, split at :data:`TRIMESTER_START_WEEKS`.

    Args:
        ga_weeks: gestational age in weeks (float or array).

    Returns:
        ``"first"``, ``"second"`` or ``"third"``; an array of them for an array.

    Raises:
        InputError: a gestational age that is not finite.
    """
    ga = np.asarray(ga_weeks, dtype=float)
    if not np.all(np.isfinite(ga)):
        raise InputError(f"gestational age must be finite; got {ga[~np.isfinite(ga)].flat[0]}")
    names = np.asarray(TRIMESTERS)[np.searchsorted(TRIMESTER_START_WEEKS, ga, side="right")]
    return str(names) if names.ndim == 0 else names


def gestational_age_report(
    hc_mm: float, ac_mm: float | None, fl_mm: float | None, bpd_mm: float | None, ga_weeks: float | None
) -> dict[str, float]:
    """Every GA estimate, EFW and centile that the given measurements allow."""
    report: dict[str, float] = {
        "ga_weeks_hadlock_hc": float(ga_hadlock_hc(hc_mm)),
        "ga_weeks_intergrowth_hc": float(ga_intergrowth_hc(hc_mm)),
    }
    measurements = {"hc": hc_mm, "ac": ac_mm, "fl": fl_mm, "bpd": bpd_mm}
    hadlock = {"ac": ga_hadlock_ac, "fl": ga_hadlock_fl, "bpd": ga_hadlock_bpd}
    for name, estimate in hadlock.items():
        if measurements[name] is not None:
            report[f"ga_weeks_hadlock_{name}"] = float(estimate(measurements[name]))
    if ac_mm is not None and fl_mm is not None:
        report["efw_g_hadlock"] = float(efw_hadlock(hc_mm, ac_mm, fl_mm))
    if ga_weeks is not None:
        for name, value in measurements.items():
            if value is not None:
                report[f"zscore_{name}"] = float(intergrowth_zscore(name, value, ga_weeks))
                report[f"centile_{name}"] = float(intergrowth_centile(name, value, ga_weeks))
    return report
