"""B-mode image formation for the synthetic phantoms of :mod:`fetalbiometry.data.synthetic`.

A phantom is a scene of tissues with a mean echo level, seen by a curvilinear (sector) probe.
This module turns that into what a scanner shows, the effects the 3D whole-head paper lists as its
challenges (shared/papers/3d-whole-head-hybrid-attention-autocontext.txt, section 1: speckle,
ambiguous boundaries, "long-span shadow occlusion caused by the severe acoustic attenuation on
skull, particularly in the far field"):

- a sector field of view with a dark outside, like the HC18 images and 3D probes (75° scan angle);
- depth attenuation left after time-gain compensation, along each beam line;
- acoustic shadows: the beam from the probe to a point is attenuated by the bone it crosses, with
  the crossing length computed exactly for ellipses and ellipsoids, so shadows fall behind bones
  whatever their pose;
- speckle: the envelope of a smoothed complex Gaussian field (Rayleigh distributed, spatially
  correlated), log-compressed for display.

Everything except speckle is a function of points in millimetres, so the grid only samples it.
Points are (d, N) arrays, one row per coordinate (x, y[, z]), which keeps the arithmetic on long
contiguous rows. The probe looks along +y (the image rows, or the second axis of a volume): depth
grows downwards.

Nothing in MONAI, SimpleITK or scikit-image simulates B-mode formation from an analytic scene
(simulators such as Field II work from point scatterers and are far too slow for cohorts), hence
this small model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

__all__ = ["Bone", "Ellipsoid", "FourierNoise", "SectorProbe", "bmode", "rayleigh_speckle", "transmission"]

BEAM_AXIS = 1  # the probe looks along +y, the image rows
_MIN_GRAIN_VOXELS = 0.6


def _squared_norm(vectors: np.ndarray) -> np.ndarray:
    """Squared length of each column of a (d, N) array."""
    return np.einsum("ij,ij->j", vectors, vectors)


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipse (2D) or ellipsoid (3D) in millimetres.

    Args:
        center: (d,) centre.
        semi_axes: (d,) semi-axes, along the columns of ``rotation``.
        rotation: (d, d) orthonormal matrix whose columns are the directions of the axes.
    """

    center: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray

    @cached_property
    def _axis_aligned(self) -> bool:
        return bool(np.array_equal(self.rotation, np.eye(len(self.center))))

    def local(self, points: np.ndarray) -> np.ndarray:
        """(d, N) coordinates scaled by the semi-axes: the surface is the unit sphere."""
        offset = points - self.center[:, None]
        return (offset if self._axis_aligned else self.rotation.T @ offset) / self.semi_axes[:, None]

    def signed_distance(self, points: np.ndarray, cull_mm: float | None = None) -> np.ndarray:
        """Distance to the surface in mm, negative inside (first order in ``radius - 1``, exact for a sphere).

        Args:
            points: (d, N) points.
            cull_mm: if given, only points within this distance of the bounding box are evaluated;
                the others get +inf (a speed-up for small structures in large volumes).
        """
        if cull_mm is not None:
            reach = float(self.semi_axes.max()) + cull_mm
            near = np.ones(points.shape[1], dtype=bool)
            for coordinate, centre in zip(points, self.center):
                near &= np.abs(coordinate - centre) <= reach
            near = np.flatnonzero(near)
            distance = np.full(points.shape[1], np.inf)
            distance[near] = self.signed_distance(points[:, near])
            return distance
        u = self.local(points)
        radius = np.sqrt(_squared_norm(u))
        gradient = np.sqrt(_squared_norm(u / self.semi_axes[:, None]))  # |grad radius| × radius
        centre = np.full_like(radius, self.semi_axes.min())  # the limit at the centre, up to direction
        return (radius - 1.0) * np.divide(radius, gradient, out=centre, where=gradient > 0.0)

    def segment_interval(self, start: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where the segments from ``start`` (d,) to each of the (d, N) points cross the ellipsoid.

        The segment s + t·(p − s), t in [0, 1], is inside where |u(t)|² ≤ 1; u(t) is affine in t,
        so this is a quadratic in t solved in closed form.

        Returns:
            (t_enter, t_exit), each (N,), clipped to [0, 1]; equal where the segment misses.
        """
        u_start = self.local(start[:, None])[:, 0]
        step = self.local(points) - u_start[:, None]
        a = np.maximum(_squared_norm(step), 1e-12)
        half_b = u_start @ step
        c = float(u_start @ u_start) - 1.0
        root = np.sqrt(np.maximum(half_b * half_b - a * c, 0.0))
        t_enter = np.clip((-half_b - root) / a, 0.0, 1.0)
        t_exit = np.clip((-half_b + root) / a, 0.0, 1.0)
        return t_enter, np.maximum(t_exit, t_enter)


@dataclass(frozen=True)
class Bone:
    """A bone that attenuates the beam: a solid ellipsoid, or the shell between it and ``inner``.

    Args:
        outer: outer surface.
        attenuation_per_mm: amplitude attenuation coefficient of the bone (1/mm).
        inner: inner surface of a shell (the skull), or None for a solid bone (femur, spine).
        density: optional relative bone density (0–1) at the point where a beam enters ``outer``,
            given that point's :meth:`Ellipsoid.local` coordinates (d, N): sutures and fontanelles
            let the beam through.
    """

    outer: Ellipsoid
    attenuation_per_mm: float
    inner: Ellipsoid | None = None
    density: Callable[[np.ndarray], np.ndarray] | None = None

    def moved(self, center: np.ndarray, rotation: np.ndarray) -> Bone:
        """The bone after the rigid motion x -> center + rotation @ x."""

        def move(e: Ellipsoid | None) -> Ellipsoid | None:
            return None if e is None else Ellipsoid(center + rotation @ e.center, e.semi_axes, rotation @ e.rotation)

        return Bone(move(self.outer), self.attenuation_per_mm, move(self.inner), self.density)

    def optical_depth(self, apex: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Attenuation coefficient × bone length crossed by the beam from ``apex`` to each point."""
        t_enter, t_exit = self.outer.segment_interval(apex, points)
        hit = np.flatnonzero(t_exit > t_enter)
        behind = points[:, hit]
        crossed = t_exit[hit] - t_enter[hit]
        if self.inner is not None:
            inner_enter, inner_exit = self.inner.segment_interval(apex, behind)
            crossed -= inner_exit - inner_enter
        depth = np.zeros(points.shape[1])
        depth[hit] = self.attenuation_per_mm * crossed * np.sqrt(_squared_norm(behind - apex[:, None]))
        if self.density is not None:
            u_apex = self.outer.local(apex[:, None])
            entry = u_apex + t_enter[hit] * (self.outer.local(behind) - u_apex)
            depth[hit] *= self.density(entry)
        return depth


def transmission(apex: np.ndarray, points: np.ndarray, bones: Sequence[Bone]) -> np.ndarray:
    """Fraction of the echo amplitude that survives the bones between the probe and each (d, N) point."""
    optical_depth = np.zeros(points.shape[1])
    for bone in bones:
        optical_depth += bone.optical_depth(apex, points)
    return np.exp(-optical_depth)


@dataclass(frozen=True)
class FourierNoise:
    """A smooth random field in millimetres: zero mean, unit variance, defined everywhere.

    The sum of ``K`` plane waves with random directions, wavelengths and phases (random-phase
    Fourier synthesis), so it is the same function of position whatever grid samples it.

    Args:
        wave_vectors: (K, d) in radians per mm.
        phases: (K,) in radians.
    """

    wave_vectors: np.ndarray
    phases: np.ndarray

    @classmethod
    def random(
        cls, rng: np.random.Generator, dim: int, wavelength_mm: tuple[float, float], n_waves: int = 12
    ) -> FourierNoise:
        """Waves with wavelengths uniform in ``wavelength_mm`` and isotropic directions."""
        directions = rng.standard_normal((n_waves, dim))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = rng.uniform(*wavelength_mm, size=n_waves)
        phases = rng.uniform(0.0, 2.0 * math.pi, size=n_waves)
        return cls(directions * (2.0 * math.pi / wavelengths)[:, None], phases)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Field values at (d, N) points."""
        field = np.zeros(points.shape[1])
        for wave_vector, phase in zip(self.wave_vectors, self.phases):
            field += np.cos(wave_vector @ points + phase)
        return field * math.sqrt(2.0 / len(self.phases))


@dataclass(frozen=True)
class SectorProbe:
    """A curvilinear probe whose beams fan out from a virtual apex above the field of view.

    Args:
        apex: (d,) position of the apex in mm; beams point along +y within the sector.
        skin_radius_mm: distance from the apex to the probe face (the skin); nearer is not imaged.
        half_angle_deg: half the scan angle, in every lateral direction (the 3D paper's probe
            scans 75°).
        attenuation_per_mm: amplitude attenuation left after time-gain compensation (1/mm).
    """

    apex: np.ndarray
    skin_radius_mm: float
    half_angle_deg: float = 37.5
    attenuation_per_mm: float = 0.004

    def beams(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit beam directions (d, N) at (d, N) points and their depths below the skin (N,), mm."""
        offset = points - self.apex[:, None]
        radius = np.maximum(np.sqrt(_squared_norm(offset)), 1e-9)
        return offset / radius, radius - self.skin_radius_mm

    def in_sector(self, points: np.ndarray) -> np.ndarray:
        """Whether each point lies in the imaged sector (below the skin, within the scan angle)."""
        offset = points - self.apex[:, None]
        inside = _squared_norm(offset) >= self.skin_radius_mm**2
        limit = math.tan(math.radians(self.half_angle_deg)) * offset[BEAM_AXIS]
        for axis, coordinate in enumerate(offset):
            if axis != BEAM_AXIS:
                inside &= np.abs(coordinate) <= limit
        return inside

    def lateral_angle(self, points: np.ndarray) -> np.ndarray:
        """Angle of each point's beam from the probe axis in the x direction, radians."""
        return np.arctan2(points[0] - self.apex[0], points[BEAM_AXIS] - self.apex[BEAM_AXIS])

    def gain(self, depth_mm: np.ndarray) -> np.ndarray:
        """Echo amplitude left at each depth after attenuation and time-gain compensation."""
        return np.exp(-self.attenuation_per_mm * np.maximum(depth_mm, 0.0))


def rayleigh_speckle(
    shape: Sequence[int],
    spacing: Sequence[float],
    correlation_mm: Sequence[float],
    rng: np.random.Generator,
    looks: int = 2,
) -> np.ndarray:
    """Fully developed speckle, compounded over a few looks: mean 1.

    Each look is the envelope of a complex Gaussian field whose in-phase and quadrature parts are
    white noise smoothed by a Gaussian point-spread function of standard deviation
    ``correlation_mm`` (mm, per axis): Rayleigh distributed, with grains of about that size, never
    below 0.6 voxel (an image sampled on a grid cannot resolve finer than its spacing). Averaging
    ``looks`` independent envelopes, as the spatial compounding of clinical scanners does, fills
    the dark speckle nulls and lowers the contrast by about sqrt(looks).

    Args:
        shape: array shape.
        spacing: grid spacing in mm, array axis order.
        correlation_mm: speckle grain size in mm, array axis order.
        rng: random generator.
        looks: number of compounded looks (1: pure Rayleigh speckle).

    Returns:
        float32 array of ``shape``, mean 1.
    """
    sigma = [max(c / s, _MIN_GRAIN_VOXELS) for c, s in zip(correlation_mm, spacing)]
    envelope = np.zeros(shape, dtype=np.float32)
    for _ in range(looks):
        in_phase, quadrature = (
            ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma) for _ in range(2)
        )
        envelope += np.hypot(in_phase, quadrature)
    return envelope / envelope.mean()


def bmode(
    echo_level: np.ndarray,
    attenuation: np.ndarray,
    speckle: np.ndarray,
    in_sector: np.ndarray,
    rng: np.random.Generator,
    dynamic_range_db: float = 50.0,
) -> np.ndarray:
    """Display B-mode intensities (0–255) from tissue echo levels, attenuation and speckle.

    ``echo_level`` is what a tissue would show on screen unattenuated and without speckle (0 for
    anechoic fluid, 255 for bone). It is turned into an echo amplitude through the scanner's log
    compression over ``dynamic_range_db``, multiplied by the attenuation (shadows, depth) and the
    speckle envelope, a little electronic noise is added, and the result is log-compressed back
    for display. Shadows and speckle thus act in decibels, as on a scanner. Outside the sector
    is black.

    Args:
        echo_level: display level of the tissue at each point, 0–255.
        attenuation: amplitude factor (0–1) from bone shadows and depth at each point.
        speckle: speckle envelope of the same shape, mean 1 (see :func:`rayleigh_speckle`).
        in_sector: boolean array, the imaged sector.
        rng: random generator for the electronic noise.
        dynamic_range_db: displayed dynamic range.

    Returns:
        float32 array, 0–255.
    """
    floor = 10.0 ** (-dynamic_range_db / 20.0)  # amplitude shown as black
    amplitude = (np.power(10.0, (echo_level / 255.0 - 1.0) * dynamic_range_db / 20.0) - floor) * attenuation * speckle
    amplitude += 0.5 * floor * np.abs(rng.standard_normal(amplitude.shape, dtype=np.float32))
    display = 255.0 * (1.0 + 20.0 * np.log10(np.maximum(amplitude, 1e-6)) / dynamic_range_db)
    image = np.clip(display, 0.0, 255.0).astype(np.float32)
    image[~in_sector] = 0.0
    return image
