"""Fetal biometry: ellipse and rectangle fits (HC, AC, BPD, OFD, FL), measurement of a segmented
plane by its class, gestational age, size-for-age centiles and estimated fetal weight."""

from fetalbiometry.biometry.calipers import caliper_segment, ellipse_from_diameters, femur_from_endpoints
from fetalbiometry.biometry.ellipse import (
    Ellipse,
    bpd_ofd,
    ellipse_outline,
    ellipse_to_mask,
    fit_ellipse,
    fit_ellipse_to_mask,
    fit_ellipse_to_outline,
    ramanujan_circumference,
)
from fetalbiometry.biometry.growth import (
    HADLOCK_1984_GA,
    INTERGROWTH_FETAL_GROWTH,
    INTERGROWTH_GA_RANGE_WEEKS,
    TRIMESTER_START_WEEKS,
    TRIMESTERS,
    FractionalPolynomial,
    Measure,
    efw_hadlock,
    ga_hadlock,
    ga_hadlock_ac,
    ga_hadlock_bpd,
    ga_hadlock_fl,
    ga_hadlock_hc,
    ga_intergrowth_hc,
    intergrowth_centile,
    intergrowth_mean_sd,
    intergrowth_zscore,
    trimester,
)
from fetalbiometry.biometry.planes import (
    PLANE_CLASSES,
    PLANE_MEASURES,
    PlaneMeasurement,
    PlausibilityLimits,
    ellipse_bounding_box,
    ellipse_overhang,
    measure_plane,
    outline_inside_fraction,
)
from fetalbiometry.biometry.rectangle import Rectangle, femur_length, fit_min_area_rectangle, rectangle_to_mask
