"""B-mode image formation for the synthetic phantoms of :mod:`fetalbiometry.data.synthetic`.

A phantom is a scene of tissues with a mean echo level, seen by a curvilinear (sector) probe.
This module turns that into what a scanner shows, the effects the 3D whole-head paper lists as its
challenges (shared/papers/3d-whole-head-hybrid-attention-autocontext.txt, section 1: speckle,
ambiguous boundaries, "long-span shadow occlusion caused by the severe acoustic attenuation on
skull, particularly in the far field"):

- a sector field of view with a dark outside, like the HC18 images and 3D probes (75° scan angle);
- acoustic shadows: the beam from the probe to a point is attenuated by the bone it crosses, with
  the crossing length computed exactly for ellipses and ellipsoids, so shadows fall behind bones
  whatever their pose (:func:`transmission`);
- the polar image formation of :func:`polar_envelope` (docs/phantoms.md): scatterers per tissue
  with their own density and amplitude, on a grid in the probe's (depth, angle[, elevation angle])
  coordinates (:class:`PolarGrid`); soft-tissue attenuation integrated along each beam against an
  imperfect time-gain compensation, so echoes behind fluid are enhanced (:func:`time_gain_compensated`);
  reverberation of the near field (:func:`reverberation`); a Gaussian point-spread function whose
  axial and lateral size grow with depth (:class:`PointSpreadFunction`, :func:`depth_dependent_blur`),
  envelope detection, scan conversion to the Cartesian grid (:meth:`PolarGrid.sample`) and log
  compression (:func:`log_compress`);
- the older Cartesian model, kept as a fast baseline: the envelope of a smoothed complex Gaussian
  field on the image grid (:func:`rayleigh_speckle`) times the attenuation (:func:`bmode`).

Everything except the random scatterers is a function of points in millimetres, so the grid only
samples it. Points are (d, N) arrays, one row per coordinate (x, y[, z]), which keeps the arithmetic
on long contiguous rows. The probe looks along +y (the image rows, or the second axis of a volume):
depth grows downwards.

Full simulators were considered and not used (docs/phantoms.md): Field II-like point-scatterer
simulators (``pymust``) take seconds to minutes per frame, and ``k-wave-python`` solves the wave
equation with compiled binaries it downloads at run time and pins older NumPy and SciPy; the
phantoms need tens of milliseconds per plane, hence this convolution model (Bamber and Dickinson
1980; Gao et al., IEEE TUFFC 56(11), 2009, COLE: a PSF convolved with a scatterer map in polar
coordinates, then scan converted).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

__all__ = [
    "Bone",
    "CartesianGrid",
    "Ellipsoid",
    "FourierNoise",
    "PointSpreadFunction",
    "PolarGrid",
    "SectorProbe",
    "bmode",
    "depth_dependent_blur",
    "echo_amplitude",
    "log_compress",
    "polar_envelope",
    "rayleigh_speckle",
    "reverberation",
    "scatterers",
    "time_gain_compensated",
    "transmission",
]

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

    def polar(self, points: np.ndarray) -> np.ndarray:
        """(d, N) beam coordinates of (d, N) points: depth below the skin (mm), then the beam's angle
        from the probe axis towards each lateral axis (x, then z in 3D), radians.

        The angles are those of :meth:`in_sector`: a point is imaged where each is within the half angle.
        """
        offset = points - self.apex[:, None]
        lateral = [axis for axis in range(len(self.apex)) if axis != BEAM_AXIS]
        depth = np.sqrt(_squared_norm(offset)) - self.skin_radius_mm
        return np.vstack([depth[None], *(np.arctan2(offset[axis], offset[BEAM_AXIS])[None] for axis in lateral)])

    def cartesian(self, polar: np.ndarray) -> np.ndarray:
        """(d, N) points at (d, N) beam coordinates: the inverse of :meth:`polar`."""
        direction = np.insert(np.tan(polar[1:]), BEAM_AXIS, 1.0, axis=0)
        direction /= np.sqrt(_squared_norm(direction))
        return self.apex[:, None] + (polar[0] + self.skin_radius_mm) * direction


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


@dataclass(frozen=True)
class CartesianGrid:
    """An image grid in the world: the node of array index (..., j, i) is ``origin + steps @ (i, j, ...)``.

    Args:
        origin: (d,) world position of the first node, mm.
        steps: (d, d) matrix whose column k is the world step of the k-th image index (x first, the
            reverse of the array's axis order, as SimpleITK orders it).
        shape: array shape.
    """

    origin: np.ndarray
    steps: np.ndarray
    shape: tuple[int, ...]

    @property
    def spacing_mm(self) -> np.ndarray:
        """Node spacing along each array axis, mm."""
        return np.linalg.norm(self.steps, axis=0)[::-1]

    def corners(self) -> np.ndarray:
        """(d, 2^d) world points of the grid's corner nodes."""
        extent = np.array(self.shape[::-1], dtype=float) - 1.0
        index = np.array(np.meshgrid(*[(0.0, e) for e in extent], indexing="ij")).reshape(len(extent), -1)
        return self.origin[:, None] + self.steps @ index

    def points(self, rows: slice = slice(None)) -> np.ndarray:
        """(d, N) world points of the nodes in the slab ``rows`` of the first array axis, ravel order."""
        axes = [np.arange(n) for n in self.shape]
        axes[0] = axes[0][rows]
        index = np.meshgrid(*axes, indexing="ij")
        return self.origin[:, None] + self.steps @ np.stack([i.ravel() for i in reversed(index)]).astype(float)

    def indices(self, points: np.ndarray) -> np.ndarray:
        """Fractional array indices (d, N), array axis order, of (d, N) world points."""
        return (np.linalg.inv(self.steps) @ (points - self.origin[:, None]))[::-1]

    def sample(self, values: np.ndarray, points: np.ndarray) -> np.ndarray:
        """``values`` on this grid, linearly interpolated at (d, N) points (nearest node outside)."""
        return ndimage.map_coordinates(values, self.indices(points), order=1, mode="nearest")


@dataclass(frozen=True)
class PointSpreadFunction:
    """Gaussian point-spread function of a curvilinear probe: standard deviations in mm at a depth.

    - axial: ``axial_mm × (1 + depth / axial_doubling_mm)``: the pulse lengthens with depth, as
      frequency-dependent attenuation lowers its centre frequency;
    - lateral: ``lateral_mm + divergence × depth``: the beam widens with depth (a fixed number of
      lines spread over a widening arc, focused near the top of the image);
    - elevation (3D): ``elevation_factor`` × lateral, the elevation aperture being smaller.

    The defaults match the speckle autocorrelation of HC18 frames (docs/phantoms.md).
    """

    axial_mm: float = 0.3
    axial_doubling_mm: float = 300.0
    lateral_mm: float = 0.6
    divergence: float = 0.004
    elevation_factor: float = 1.5

    def sigma_mm(self, depth_mm: float, dim: int) -> np.ndarray:
        """(axial, lateral[, elevation]) standard deviations at ``depth_mm`` below the skin."""
        lateral = self.lateral_mm + self.divergence * depth_mm
        sigmas = (self.axial_mm * (1.0 + depth_mm / self.axial_doubling_mm), lateral, self.elevation_factor * lateral)
        return np.array(sigmas[:dim])


@dataclass(frozen=True)
class PolarGrid:
    """Samples along the beams of a :class:`SectorProbe`: array axes (depth, angle[, elevation angle]).

    Depth runs from the skin in steps of ``depth_step_mm``; the angles span the sector in steps of
    ``angle_step`` radians (the coordinates of :meth:`SectorProbe.polar`).
    """

    probe: SectorProbe
    depth_step_mm: float
    angle_step: float
    shape: tuple[int, ...]

    @classmethod
    def covering(
        cls, probe: SectorProbe, max_depth_mm: float, step_mm: float, reference_depth_mm: float
    ) -> PolarGrid:
        """Depths from the skin to ``max_depth_mm`` every ``step_mm``, beams ``step_mm`` apart at
        ``reference_depth_mm`` (closer above it, further apart below it, as a scanner's lines)."""
        angle_step = step_mm / (probe.skin_radius_mm + reference_depth_mm)
        n_angles = math.ceil(2.0 * math.radians(probe.half_angle_deg) / angle_step) + 1
        n_depths = math.ceil(max_depth_mm / step_mm) + 1
        return cls(probe, step_mm, angle_step, (n_depths,) + (n_angles,) * (len(probe.apex) - 1))

    @classmethod
    def imaging(cls, probe: SectorProbe, grid: CartesianGrid) -> PolarGrid:
        """The polar grid that :meth:`covering` gives for a Cartesian grid: down to its deepest
        corner, sampled at its finest spacing, beams that far apart at its centre."""
        depth = probe.polar(grid.corners())[0]
        centre = probe.polar(grid.corners().mean(axis=1, keepdims=True))[0, 0]
        return cls.covering(probe, float(depth.max()), float(grid.spacing_mm.min()), max(float(centre), 0.0))

    @property
    def depths_mm(self) -> np.ndarray:
        """Depth below the skin of each index of the first axis, mm."""
        return np.arange(self.shape[0]) * self.depth_step_mm

    @property
    def _first(self) -> np.ndarray:
        """Beam coordinates of index 0."""
        half = math.radians(self.probe.half_angle_deg)
        return np.array([0.0] + [-half] * (len(self.shape) - 1))

    @property
    def _steps(self) -> np.ndarray:
        return np.array([self.depth_step_mm] + [self.angle_step] * (len(self.shape) - 1))

    def points(self) -> np.ndarray:
        """(d, M) world points of the samples, ravel order."""
        index = np.indices(self.shape, dtype=float).reshape(len(self.shape), -1)
        return self.probe.cartesian(self._first[:, None] + self._steps[:, None] * index)

    def sample(self, values: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Scan conversion: ``values`` on this grid, linearly interpolated at (d, N) world points (nearest sample outside)."""
        index = (self.probe.polar(points) - self._first[:, None]) / self._steps[:, None]
        return ndimage.map_coordinates(values, index, order=1, mode="nearest")

    def psf_sigma(self, psf: PointSpreadFunction, depth_mm: float) -> np.ndarray:
        """The PSF's standard deviations at ``depth_mm`` in samples along each axis, at least 0.6."""
        arc = (self.probe.skin_radius_mm + depth_mm) * self.angle_step
        sigma = psf.sigma_mm(depth_mm, len(self.shape)) / np.array([self.depth_step_mm] + [arc] * (len(self.shape) - 1))
        return np.maximum(sigma, _MIN_GRAIN_VOXELS)


def scatterers(amplitude: np.ndarray, density: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Complex scattering field: each sample holds a scatterer with probability ``density`` (0–1),
    of complex Gaussian strength scaled so that the mean power is ``amplitude²``.

    Dense tissue gives fully developed (Rayleigh) speckle after the point-spread function; sparse
    scatterers (low density, e.g. brain) give brighter isolated grains on a darker ground,
    the sub-Rayleigh statistics (Nakagami m < 1) of few scatterers per resolution cell.
    """
    density = np.clip(density, 1e-3, 1.0).astype(np.float32)
    present = rng.random(amplitude.shape, dtype=np.float32) < density
    strength = np.where(present, amplitude / np.sqrt(2.0 * density), 0.0).astype(np.float32)
    field = rng.standard_normal((2, *amplitude.shape), dtype=np.float32)
    return (strength * field[0]) + 1j * (strength * field[1])


def _gaussian_energy(sigma: float, truncate: float) -> float:
    """Sum of squares of SciPy's normalised discrete Gaussian kernel of ``sigma`` samples."""
    radius = int(truncate * sigma + 0.5)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return float(np.sum((kernel / kernel.sum()) ** 2))


def depth_dependent_blur(field: np.ndarray, band_sigmas: np.ndarray, truncate: float = 3.0) -> np.ndarray:
    """Convolve a field with a Gaussian point-spread function whose size changes along the first axis.

    The first axis is split into ``len(band_sigmas)`` bands with centres evenly spread over it; the
    field is filtered with each band's Gaussian (standard deviations in samples, one per axis) and the
    results are blended linearly between neighbouring centres. Each band is scaled to unit power gain
    for white noise, and the blend by the power of a sum of two correlated Gaussian fields, so
    white noise of unit power stays of unit power at every depth.

    Args:
        field: real or complex array.
        band_sigmas: (bands, field.ndim) standard deviations in samples.
        truncate: the Gaussians' reach, in standard deviations.

    Returns:
        the filtered field, of ``field``'s dtype.
    """
    rows = np.arange(field.shape[0])
    centres = np.linspace(0.0, field.shape[0] - 1.0, len(band_sigmas))
    weights = np.array([np.interp(rows, centres, np.eye(len(centres))[k]) for k in range(len(centres))])
    blurred = np.zeros_like(field)
    shape = (-1,) + (1,) * (field.ndim - 1)
    for weight, sigma in zip(weights, band_sigmas):
        used = np.flatnonzero(weight > 0.0)
        margin = int(truncate * sigma[0] + 1.5)
        start, stop = max(used[0] - margin, 0), min(used[-1] + margin + 1, field.shape[0])
        gain = math.sqrt(math.prod(_gaussian_energy(s, truncate) for s in sigma))
        band = ndimage.gaussian_filter(field[start:stop], sigma, truncate=truncate)[used - start]
        blurred[used] += (weight[used] / gain).reshape(shape) * band
    ratio = band_sigmas[1:] / band_sigmas[:-1]
    correlation = np.prod(np.sqrt(2.0 * ratio / (1.0 + ratio**2)), axis=1)  # of neighbouring bands' outputs
    power = (weights**2).sum(axis=0) + 2.0 * (weights[:-1] * weights[1:] * correlation[:, None]).sum(axis=0)
    return blurred / np.sqrt(power).astype(np.float32).reshape(shape)


def time_gain_compensated(attenuation_per_mm: np.ndarray, step_mm: float, error_db: np.ndarray) -> np.ndarray:
    """Amplitude factor of the echoes on a polar grid (first axis: depth) after attenuation and
    time-gain compensation (TGC).

    The pulse-echo attenuation ``attenuation_per_mm`` (nepers/mm, per sample) is integrated along
    each beam; the TGC cancels its mean across the beams at each depth, as a sonographer sets it for
    an even image, up to ``error_db`` (per depth, dB). What is left are the differences between
    beams: darker behind attenuating tissue, brighter behind fluid (posterior enhancement).
    """
    optical_depth = (np.cumsum(attenuation_per_mm, axis=0) - 0.5 * attenuation_per_mm) * step_mm
    lateral = tuple(range(1, optical_depth.ndim))
    shape = (-1,) + (1,) * len(lateral)
    compensation = optical_depth.mean(axis=lateral, keepdims=True) + np.log(10.0) / 20.0 * error_db.reshape(shape)
    return np.exp(compensation - optical_depth).astype(np.float32)


def reverberation(amplitude: np.ndarray, period: int, bounces: int = 2, loss_db: float = 12.0) -> np.ndarray:
    """Echo amplitudes (first axis: depth) with the reverberation of the near field added.

    The echoes of the first ``period`` samples (the wall between the probe and the first strong
    interface) bounce between that interface and the probe face and return again ``period``,
    ``2 period``, ... samples deeper, ``loss_db`` weaker per bounce; they add in power.
    """
    power = amplitude.astype(np.float32) ** 2
    near = power[:period]
    for bounce in range(1, bounces + 1):
        start = bounce * period
        stop = min(start + period, power.shape[0])
        if start >= stop:
            break
        power[start:stop] += 10.0 ** (-loss_db * bounce / 10.0) * near[: stop - start]
    return np.sqrt(power)


def polar_envelope(
    amplitude: np.ndarray,
    density: np.ndarray,
    attenuation_per_mm: np.ndarray,
    grid: PolarGrid,
    psf: PointSpreadFunction,
    rng: np.random.Generator,
    tgc_error_db: np.ndarray,
    reverberation_mm: float,
    looks: int = 2,
    bands: int = 4,
) -> np.ndarray:
    """Speckled echo envelope on a polar grid, mean about the echo amplitude (docs/phantoms.md).

    The echo amplitudes (after bone shadows) are compensated for depth (:func:`time_gain_compensated`),
    the near field reverberates (:func:`reverberation`), scatterers of the tissue's density carry them
    (:func:`scatterers`), the point-spread function blurs the field (:func:`depth_dependent_blur`,
    ``bands`` depth bands) and the envelope is detected (modulus). ``looks`` independent scatterer
    draws are averaged, as a scanner's spatial or frequency compounding averages looks whose speckle
    is uncorrelated: it fills the speckle nulls and lowers the contrast by about sqrt(looks).

    Args:
        amplitude: echo amplitude (0–1) of the tissues on ``grid``, shadows included.
        density: scatterer density (0–1) on ``grid``.
        attenuation_per_mm: pulse-echo attenuation of the tissues on ``grid``, nepers/mm.
        grid: the polar grid.
        psf: the point-spread function.
        rng: random generator of the scatterers.
        tgc_error_db: (depths,) error of the time-gain compensation, dB.
        reverberation_mm: depth of the first strong interface (the maternal wall), mm.
        looks: number of compounded looks.
        bands: number of depth bands of the point-spread function.

    Returns:
        float32 envelope on ``grid``.
    """
    compensated = amplitude * time_gain_compensated(attenuation_per_mm, grid.depth_step_mm, tgc_error_db)
    echoes = reverberation(compensated, max(1, round(reverberation_mm / grid.depth_step_mm)))
    depths = np.linspace(0.0, grid.depths_mm[-1], bands)
    sigmas = np.array([grid.psf_sigma(psf, depth) for depth in depths])
    envelope = np.zeros(grid.shape, np.float32)
    for _ in range(looks):
        envelope += np.abs(depth_dependent_blur(scatterers(echoes, density, rng), sigmas))
    return envelope / (looks * math.sqrt(math.pi) / 2.0)


def echo_amplitude(echo_level: np.ndarray, dynamic_range_db: float = 50.0) -> np.ndarray:
    """Echo amplitude (0–1) of a tissue's display level (0–255): the inverse of the scanner's log
    compression over ``dynamic_range_db``, 0 for anechoic fluid (level 0), 1 for bone (255)."""
    floor = 10.0 ** (-dynamic_range_db / 20.0)
    amplitude = np.power(10.0, (np.asarray(echo_level, np.float32) / 255.0 - 1.0) * dynamic_range_db / 20.0)
    return (amplitude - floor) / (1.0 - floor)


def log_compress(
    amplitude: np.ndarray,
    in_sector: np.ndarray,
    rng: np.random.Generator,
    dynamic_range_db: float = 50.0,
    gain_db: float = 0.0,
) -> np.ndarray:
    """Display intensities (0–255) of echo amplitudes: a little electronic noise is added and the
    result, amplified by the overall ``gain_db``, is log-compressed over ``dynamic_range_db``
    (amplitude 1 shows as 255, ``10^(-DR/20)`` as black), so shadows and speckle act in decibels,
    as on a scanner. Outside the sector is black.

    Returns:
        float32 array, 0–255.
    """
    floor = 10.0 ** (-dynamic_range_db / 20.0)
    noisy = amplitude + 0.5 * floor * np.abs(rng.standard_normal(amplitude.shape, dtype=np.float32))
    display = 255.0 * (1.0 + (20.0 * np.log10(np.maximum(noisy, 1e-6)) + gain_db) / dynamic_range_db)
    image = np.clip(display, 0.0, 255.0).astype(np.float32)
    image[~in_sector] = 0.0
    return image


def bmode(
    echo_level: np.ndarray,
    attenuation: np.ndarray,
    speckle: np.ndarray,
    in_sector: np.ndarray,
    rng: np.random.Generator,
    dynamic_range_db: float = 50.0,
) -> np.ndarray:
    """Display B-mode intensities (0–255) of the Cartesian model: the tissues' echo amplitudes
    (:func:`echo_amplitude`) times the attenuation (shadows, depth) and a speckle envelope
    (:func:`rayleigh_speckle`), log-compressed (:func:`log_compress`).

    Args:
        echo_level: display level of the tissue at each point, 0–255.
        attenuation: amplitude factor (0–1) from bone shadows and depth at each point.
        speckle: speckle envelope of the same shape, mean 1.
        in_sector: boolean array, the imaged sector.
        rng: random generator for the electronic noise.
        dynamic_range_db: displayed dynamic range.

    Returns:
        float32 array, 0–255.
    """
    amplitude = echo_amplitude(echo_level, dynamic_range_db) * attenuation * speckle
    return log_compress(amplitude, in_sector, rng, dynamic_range_db)
