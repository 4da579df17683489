"""How much the synthetic head planes look like HC18 frames, measured without training.

Three families of image statistics are computed the same way on HC18 frames (van den Heuvel et al.,
PLoS ONE 2018) and on synthetic head planes (:func:`fetalbiometry.data.synthetic.make_plane`), on the
displayed (log-compressed) 8-bit intensities, in millimetres through each frame's pixel size:

- speckle statistics in homogeneous patches: envelope SNR (mean / standard deviation; 1.91 for
  Rayleigh speckle before log compression) and the Nakagami shape m, ``E[v²]² / Var(v²)`` (1 for
  Rayleigh, below 1 for few scatterers per resolution cell; Shankar, IEEE TUFFC 47(3), 2000);
- the speckle grain: the half-width in mm where the normalised autocovariance of the patches falls
  to 0.5, axially (down the rows) and laterally (along the columns), in the near, middle and far
  third of the sector's depth (HC18's probe is at the top of the image, as the phantoms');
- intensity histograms of the skull, brain and outside, as bands of signed distance to the head
  ellipse (HC18's annotation, the phantom's truth), in mm: :data:`REGIONS_MM`. The skull band is
  where the mean HC18 profile across the annotated ellipse stays above half its peak (the
  annotation follows the skull's outer edge, the echo peaks 1 mm inside it);
- where the skull echo lies against the outline: the mean intensity by signed distance to the
  head ellipse (bins of 0.25 mm over ±5 mm, pooled over the frames), its peak and its fall, where
  it drops halfway from the peak to the level outside the head. A network learns the outline where
  its training labels put it against the echo, so an offset between phantoms and HC18 here becomes
  a bias of the radius, 2π times that in HC.

A patch is homogeneous when it lies inside the sector away from the skull, is neither black nor
saturated, and its four quadrants' means agree within 25 %.

    python -m fetalbiometry.data.realism OUT_DIR [--hc18 DIR] [--frames 100] [--phantoms 30]

writes ``OUT_DIR/realism.csv``, ``OUT_DIR/realism.md`` (the table) and ``OUT_DIR/realism.png`` (the
figure) comparing HC18 with the phantoms of each B-mode model (:data:`~fetalbiometry.data.synthetic.IMAGE_MODELS`).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.stats import wasserstein_distance

from fetalbiometry.biometry.ellipse import Ellipse
from fetalbiometry.data.anatomy import ellipse_signed_distance
from fetalbiometry.data.hc18 import read_annotation, read_frame, training_records
from fetalbiometry.data.synthetic import IMAGE_MODELS, make_plane

__all__ = [
    "DEPTH_BANDS",
    "HEAD_PARTS",
    "PROFILE_EDGES_MM",
    "REGIONS_MM",
    "Frame",
    "SourceStatistics",
    "correlation_length",
    "hc18_frames",
    "head_part",
    "homogeneous_patches",
    "measure",
    "phantom_frames",
    "region_values",
    "skull_echo_position",
    "skull_profile",
    "speckle_statistics",
]

REGIONS_MM: dict[str, tuple[float, float]] = {"skull": (-2.5, 0.5), "brain": (-math.inf, -5.0), "outside": (3.0, 10.0)}
"""Signed distance to the head ellipse (mm, negative inside) of each region."""

DEPTH_BANDS = ("near", "middle", "far")
"""Thirds of the sector's depth."""

HEAD_PARTS = ("top and bottom", "sides")
"""Parts of the head seen from its centre within 45° of the image's vertical (the beam meets the skull
square on) or of its horizontal (the beam grazes it): :func:`head_part`."""

HC18_FRAME_SHAPE = (540, 800)
_PATCH = 32  # homogeneous patch side, pixels
_SECTOR_MARGIN = 6  # pixels eroded from the sector's edge
_SKULL_CLEARANCE_MM = (-5.0, 3.0)  # patches avoid this band around the ellipse
_HISTOGRAM_BINS = np.arange(0, 257, 4)
PROFILE_EDGES_MM = np.linspace(-5.0, 5.0, 41)
"""Signed distance to the head ellipse (mm, negative inside) of the bins of :func:`skull_profile`."""
_OUTSIDE_LEVEL_MM = (2.5, 3.5)  # where the profile gives the level outside the head


@dataclass(frozen=True)
class Frame:
    """A head plane: 8-bit image, pixel size (mm) and the head ellipse in pixels."""

    image: np.ndarray
    pixel_mm: float
    ellipse: Ellipse


def hc18_frames(root: str | Path, count: int) -> list[Frame]:
    """``count`` HC18 training frames evenly spread over the list, with their annotated ellipses."""
    records = training_records(root)
    chosen = records[:: max(1, len(records) // count)][:count]
    return [Frame(read_frame(r), r.pixel_size_mm, read_annotation(r).ellipse_px) for r in chosen]


def phantom_frames(count: int, image_model: str, shape: Sequence[int] = HC18_FRAME_SHAPE) -> list[Frame]:
    """Synthetic head planes of seeds 0 .. count-1 at an HC18 frame's size."""
    planes = (make_plane("head", seed, shape, image_model=image_model) for seed in range(count))
    return [
        Frame(sitk.GetArrayFromImage(p.image), float(p.truth["pixel_size_mm"]), p.structure) for p in planes
    ]


def _signed_distance_mm(frame: Frame) -> np.ndarray:
    """Signed distance (mm, negative inside) of every pixel to the frame's head ellipse."""
    return ellipse_signed_distance(frame.ellipse, frame.image.shape, frame.pixel_mm)


def _sector(image: np.ndarray) -> np.ndarray:
    """The imaged sector without its edges, annotations and black boxes: non-black pixels, opened
    to drop text and thin marks, then eroded."""
    opened = ndimage.binary_opening(image > 2, np.ones((5, 5), bool))
    return ndimage.binary_erosion(ndimage.binary_fill_holes(opened), iterations=_SECTOR_MARGIN)


def region_values(frame: Frame) -> dict[str, np.ndarray]:
    """Intensities of each region of :data:`REGIONS_MM` inside the sector."""
    distance, sector = _signed_distance_mm(frame), _sector(frame.image)
    return {
        name: frame.image[sector & (distance >= low) & (distance <= high)] for name, (low, high) in REGIONS_MM.items()
    }


def homogeneous_patches(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """The frame's homogeneous ``_PATCH``-pixel patches on a half-patch lattice, (P, h, w), and the
    index of each one's depth band in :data:`DEPTH_BANDS` (P,)."""
    image = frame.image.astype(np.float32)
    distance = _signed_distance_mm(frame)
    usable = _sector(frame.image) & ~((distance > _SKULL_CLEARANCE_MM[0]) & (distance < _SKULL_CLEARANCE_MM[1]))
    rows = np.flatnonzero(usable.any(axis=1))
    if rows.size == 0:
        return np.empty((0, _PATCH, _PATCH), np.float32), np.empty(0, int)
    half = _PATCH // 2
    windows = np.lib.stride_tricks.sliding_window_view(image, (_PATCH, _PATCH))[::half, ::half]
    inside = np.lib.stride_tricks.sliding_window_view(usable, (_PATCH, _PATCH))[::half, ::half].all(axis=(2, 3))
    means = windows.mean(axis=(2, 3))
    quadrants = windows.reshape(*windows.shape[:2], 2, half, 2, half).mean(axis=(3, 5))
    spread = quadrants.max(axis=(2, 3)) - quadrants.min(axis=(2, 3))
    chosen = inside & (means >= 20.0) & (means <= 200.0) & (spread < 0.25 * means)
    centre_rows = np.arange(windows.shape[0]) * half + half
    depth = (centre_rows[:, None] - rows[0]) / (rows[-1] - rows[0] + 1) * np.ones(windows.shape[1])
    bands = np.clip((len(DEPTH_BANDS) * depth).astype(int), 0, len(DEPTH_BANDS) - 1)
    return windows[chosen], bands[chosen]


def speckle_statistics(patch: np.ndarray) -> tuple[float, float]:
    """(SNR = mean / SD, Nakagami m = E[v²]² / Var(v²)) of a patch's intensities v."""
    power = patch.astype(np.float64) ** 2
    return float(patch.mean() / patch.std()), float(power.mean() ** 2 / power.var())


def _autocovariance(patches: np.ndarray, axis: int) -> np.ndarray:
    """Mean normalised autocovariance of (P, h, w) patches along ``axis`` (1: rows, 2: columns), lags 0 ..
    half the patch, computed by FFT with zero padding (no wrap-around)."""
    centred = patches - patches.mean(axis=(1, 2), keepdims=True)
    n = centred.shape[axis]
    spectrum = np.fft.rfft(centred, n=2 * n, axis=axis)
    covariance = np.fft.irfft(np.abs(spectrum) ** 2, n=2 * n, axis=axis).sum(axis=(0, 3 - axis))
    return covariance[: n // 2] / covariance[0]


def correlation_length(patches: np.ndarray, axis: int) -> float:
    """Lag in pixels (interpolated) where the patches' autocovariance along ``axis`` falls to 0.5."""
    covariance = _autocovariance(patches, axis)
    below = np.flatnonzero(covariance < 0.5)
    if below.size == 0:
        return float(len(covariance))
    k = below[0]
    return float(k - 1 + (covariance[k - 1] - 0.5) / (covariance[k - 1] - covariance[k]))


@dataclass
class SourceStatistics:
    """The measures of one source (HC18, or phantoms of one model): per-patch speckle statistics,
    per-frame grain lengths (mm) by depth band and axis, and the region intensities pooled."""

    name: str
    snr: list[float]
    nakagami_m: list[float]
    grain_mm: dict[tuple[str, str], list[float]]
    regions: dict[str, list[np.ndarray]]
    profile_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(PROFILE_EDGES_MM) - 1))
    profile_count: np.ndarray = field(default_factory=lambda: np.zeros(len(PROFILE_EDGES_MM) - 1))

    def row(self, reference: SourceStatistics | None) -> dict[str, float | str]:
        """Medians of the measures, the regions' median intensity and (against ``reference``) the
        Wasserstein distance between the region histograms, in grey levels."""
        row: dict[str, float | str] = {"source": self.name}
        row.update({"snr": np.median(self.snr), "nakagami_m": np.median(self.nakagami_m)})
        for (band, axis), lengths in self.grain_mm.items():
            row[f"{axis}_{band}_mm"] = np.median(lengths) if lengths else math.nan
        for region, parts in self.regions.items():
            values = np.concatenate(parts)
            row[f"{region}_median"] = float(np.median(values))
            if reference is not None:
                row[f"{region}_w1"] = wasserstein_distance(values, np.concatenate(reference.regions[region]))
        row["skull_peak_mm"], row["skull_fall_mm"] = skull_echo_position(self.profile_sum, self.profile_count)
        return row


def head_part(frame: Frame, part: str) -> Frame:
    """``frame`` with one of :data:`HEAD_PARTS` kept and the rest black, as outside the sector, so
    that :func:`skull_profile` reads that part of the skull echo only."""
    if part not in HEAD_PARTS:
        raise ValueError(f"part must be one of {HEAD_PARTS}, got {part!r}")
    rows, columns = np.indices(frame.image.shape)
    steep = np.abs(rows - frame.ellipse.cy) >= np.abs(columns - frame.ellipse.cx)
    kept = steep if part == HEAD_PARTS[0] else ~steep
    return Frame(np.where(kept, frame.image, 0).astype(frame.image.dtype), frame.pixel_mm, frame.ellipse)


def skull_profile(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the sector's intensities in each signed-distance bin across the head ellipse."""
    distance, sector = _signed_distance_mm(frame), _sector(frame.image)
    n_bins = len(PROFILE_EDGES_MM) - 1
    bins = np.digitize(distance[sector], PROFILE_EDGES_MM) - 1
    inside = (bins >= 0) & (bins < n_bins)
    values = frame.image[sector][inside].astype(np.float64)
    return np.bincount(bins[inside], values, n_bins), np.bincount(bins[inside], minlength=n_bins).astype(np.float64)


def skull_echo_position(profile_sum: np.ndarray, profile_count: np.ndarray) -> tuple[float, float]:
    """(peak, fall) in mm of signed distance to the outline, of the mean profile over the bins of
    ``PROFILE_EDGES_MM`` (sums and counts of :func:`skull_profile`; empty bins are skipped).

    The fall is where the profile, going outwards from its peak, first drops below halfway between
    the peak and the level outside the head (the mean of :data:`_OUTSIDE_LEVEL_MM`), interpolated
    linearly between bins; NaN if it never does.
    """
    profile = np.divide(profile_sum, profile_count, out=np.full(len(profile_sum), np.nan), where=profile_count > 0)
    centres = (PROFILE_EDGES_MM[:-1] + PROFILE_EDGES_MM[1:]) / 2.0
    peak = int(np.nanargmax(profile))
    outside = np.nanmean(profile[(centres > _OUTSIDE_LEVEL_MM[0]) & (centres < _OUTSIDE_LEVEL_MM[1])])
    half = (profile[peak] + outside) / 2.0
    valid = [i for i in range(peak, len(profile)) if not np.isnan(profile[i])]
    for inner, outer in zip(valid, valid[1:]):
        if profile[outer] < half:
            step = (profile[inner] - half) / (profile[inner] - profile[outer])
            return float(centres[peak]), float(centres[inner] + step * (centres[outer] - centres[inner]))
    return float(centres[peak]), math.nan


def measure(name: str, frames: Sequence[Frame]) -> SourceStatistics:
    """All measures of a set of frames."""
    stats = SourceStatistics(name, [], [], {(b, a): [] for b in DEPTH_BANDS for a in ("axial", "lateral")}, {})
    stats.regions = {region: [] for region in REGIONS_MM}
    for frame in frames:
        patches, bands = homogeneous_patches(frame)
        for patch in patches:
            snr, m = speckle_statistics(patch)
            stats.snr.append(snr)
            stats.nakagami_m.append(m)
        for index, band in enumerate(DEPTH_BANDS):
            in_band = patches[bands == index]
            for axis, axis_name in ((1, "axial"), (2, "lateral")):
                if len(in_band) >= 2:
                    stats.grain_mm[(band, axis_name)].append(correlation_length(in_band, axis) * frame.pixel_mm)
        for region, values in region_values(frame).items():
            stats.regions[region].append(values)
        profile_sum, profile_count = skull_profile(frame)
        stats.profile_sum += profile_sum
        stats.profile_count += profile_count
    return stats


def _write_table(rows: list[dict[str, float | str]], out_dir: Path) -> None:
    """``realism.csv`` and ``realism.md`` of the rows."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(out_dir / "realism.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)

    def cell(value: float | str) -> str:
        return value if isinstance(value, str) else f"{value:.2f}"

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    (out_dir / "realism.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _plot(sources: list[SourceStatistics], examples: list[Frame], out_path: Path) -> None:
    """The figure: an example frame of each source, grain by depth, region histograms, speckle statistics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(sources), figsize=(4.2 * len(sources), 7.0))
    for ax, source, frame in zip(axes[0], sources, examples):
        ax.imshow(frame.image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{source.name} ({frame.pixel_mm:.2f} mm/px)")
        ax.axis("off")
    colours = dict(zip([s.name for s in sources], ("k", "tab:orange", "tab:blue", "tab:green")))
    grain_ax, histogram_ax, speckle_ax = axes[1][:3]
    x = np.arange(len(DEPTH_BANDS))
    for source in sources:
        for axis, style in (("axial", "o-"), ("lateral", "s--")):
            medians = [np.median(source.grain_mm[(band, axis)] or [math.nan]) for band in DEPTH_BANDS]
            grain_ax.plot(x, medians, style, color=colours[source.name], label=f"{source.name} {axis}")
        for region, style in zip(REGIONS_MM, ("-", "--", ":")):
            values = np.concatenate(source.regions[region])
            histogram, edges = np.histogram(values, _HISTOGRAM_BINS, density=True)
            histogram_ax.plot(edges[:-1], histogram, style, color=colours[source.name], label=f"{source.name} {region}")
    grain_ax.set(xticks=x, xticklabels=DEPTH_BANDS, ylabel="autocorrelation half-width (mm)", title="speckle grain")
    grain_ax.legend(fontsize=7)
    histogram_ax.set(xlabel="grey level", ylabel="density", title="skull (-), brain (--), outside (:)")
    histogram_ax.legend(fontsize=6)
    speckle_ax.boxplot([s.snr for s in sources], tick_labels=[s.name for s in sources], showfliers=False)
    speckle_ax.set(title="speckle SNR in homogeneous patches", ylabel="mean / SD")
    for ax in axes[1][3:]:
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(out_path, dpi=90)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: measure HC18 and the phantoms of every B-mode model, write table and figure."""
    parser = argparse.ArgumentParser(prog="python -m fetalbiometry.data.realism", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--hc18", type=Path, default=Path("../shared/data/hc18"), help="HC18 folder (training_set/)")
    parser.add_argument("--frames", type=int, default=100, help="HC18 frames measured")
    parser.add_argument("--phantoms", type=int, default=30, help="head planes per B-mode model")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    frame_sets = {"HC18": hc18_frames(args.hc18, args.frames)}
    frame_sets.update({f"phantom {model}": phantom_frames(args.phantoms, model) for model in IMAGE_MODELS})
    sources = [measure(name, frames) for name, frames in frame_sets.items()]
    _write_table([s.row(sources[0] if s is not sources[0] else None) for s in sources], args.out_dir)
    _plot(sources, [frames[1] for frames in frame_sets.values()], args.out_dir / "realism.png")
    print((args.out_dir / "realism.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
