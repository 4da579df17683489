"""Figures of a volumetric study as PNG bytes (matplotlib's object API with the Agg canvas).

The figures follow the 3D whole-head paper: correlation and Bland-Altman plots of head volume
against an expert (Fig. 8), a box plot of each subject's rescan volumes (Fig. 9), and a montage
of segmentations outlined on three orthogonal slices (as in Fig. 7).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fetalbiometry.study.statistics import BlandAltman

_DPI = 110


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def bland_altman_plot(ours: Sequence[float], expert: Sequence[float], agreement: BlandAltman) -> bytes:
    """Bland-Altman plot: difference (ours - expert) against the pair mean, with bias and 95 % limits.

    Args:
        ours: our volumes (mL).
        expert: the expert's volumes (mL), same order.
        agreement: output of :func:`~fetalbiometry.study.statistics.bland_altman` on them.

    Returns:
        PNG bytes.
    """
    x, y = np.asarray(ours, dtype=float), np.asarray(expert, dtype=float)
    figure = Figure(figsize=(5.5, 4.2))
    axes = figure.add_subplot()
    axes.scatter((x + y) / 2, x - y, s=18, color="tab:blue", alpha=0.8)
    for value, style, text in (
        (agreement.bias, "-", f"bias {agreement.bias:+.2f}"),
        (agreement.upper, "--", f"+1.96 SD {agreement.upper:+.2f}"),
        (agreement.lower, "--", f"-1.96 SD {agreement.lower:+.2f}"),
    ):
        axes.axhline(value, linestyle=style, color="tab:red")
        axes.annotate(text, xy=(1, value), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8)
    axes.set_xlabel("mean of ours and expert (mL)")
    axes.set_ylabel("ours - expert (mL)")
    axes.set_title(f"Bland-Altman, n = {agreement.n}")
    return _png(figure)


def correlation_plot(ours: Sequence[float], expert: Sequence[float], r: float | None) -> bytes:
    """Scatter of our volumes against the expert's with the identity line y = x.

    Args:
        ours: our volumes (mL).
        expert: the expert's volumes (mL), same order.
        r: Pearson correlation, shown in the title when known.

    Returns:
        PNG bytes.
    """
    x, y = np.asarray(expert, dtype=float), np.asarray(ours, dtype=float)
    figure = Figure(figsize=(4.8, 4.6))
    axes = figure.add_subplot()
    low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    margin = 0.05 * (high - low or 1.0)
    axes.plot([low - margin, high + margin], [low - margin, high + margin], color="grey", linewidth=1, label="identity")
    axes.scatter(x, y, s=18, color="tab:blue", alpha=0.8)
    axes.set_xlim(low - margin, high + margin)
    axes.set_ylim(low - margin, high + margin)
    axes.set_aspect("equal")
    axes.set_xlabel("expert volume (mL)")
    axes.set_ylabel("segmentation volume (mL)")
    axes.set_title(f"Correlation, r = {r:.3f}" if r is not None else "Correlation")
    axes.legend(loc="upper left", fontsize=8)
    return _png(figure)


def subject_box_plot(volumes_by_subject: Mapping[str, Sequence[float]]) -> bytes:
    """Box plot of each subject's rescan volumes, points overlaid (paper, Fig. 9).

    Args:
        volumes_by_subject: ``{subject: volumes (mL)}`` in display order.

    Returns:
        PNG bytes.
    """
    names = list(volumes_by_subject)
    figure = Figure(figsize=(max(4.5, 0.32 * len(names) + 1.5), 4.2))
    axes = figure.add_subplot()
    positions = np.arange(1, len(names) + 1)
    axes.boxplot([list(volumes_by_subject[name]) for name in names], positions=positions, widths=0.6)
    for position, name in zip(positions, names):
        values = volumes_by_subject[name]
        axes.scatter(np.full(len(values), position), values, s=10, color="tab:blue", zorder=3)
    axes.set_xticks(positions, names, rotation=90, fontsize=7)
    axes.set_xlabel("subject")
    axes.set_ylabel("head volume (mL)")
    axes.set_title("Volume reproducibility per subject")
    return _png(figure)


@dataclass(frozen=True)
class MontageCase:
    """One volume of the montage.

    Attributes:
        title: caption (e.g. row and subject).
        image: intensity volume, array order (z, y, x).
        mask: head label on the same grid.
        spacing: voxel size (mm) in array order, for the display aspect.
    """

    title: str
    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]


def _orthogonal_slices(case: MontageCase) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """(view name, image slice, mask slice, pixel aspect) through the centre of the head label."""
    z, y, x = (int(round(float(np.mean(axis)))) for axis in np.nonzero(case.mask))
    dz, dy, dx = case.spacing
    return [
        ("axial (z)", case.image[z], case.mask[z], dy / dx),
        ("coronal (y)", case.image[:, y], case.mask[:, y], dz / dx),
        ("sagittal (x)", case.image[:, :, x], case.mask[:, :, x], dz / dy),
    ]


def montage_plot(cases: Sequence[MontageCase]) -> bytes:
    """Each case on one row: three orthogonal slices with the label outlined in red.

    Args:
        cases: volumes with a non-empty label.

    Returns:
        PNG bytes.
    """
    figure = Figure(figsize=(7.5, 2.6 * len(cases)))
    grid = figure.subplots(len(cases), 3, squeeze=False)
    for axes_row, case in zip(grid, cases):
        low, high = np.percentile(case.image, [1, 99])
        for axes, (view, picture, outline, aspect) in zip(axes_row, _orthogonal_slices(case)):
            axes.imshow(picture, cmap="gray", vmin=low, vmax=high if high > low else low + 1, aspect=aspect)
            if outline.any():
                axes.contour(outline.astype(float), levels=[0.5], colors="red", linewidths=1.0)
            axes.set_title(f"{case.title}: {view}", fontsize=8)
            axes.set_axis_off()
    return _png(figure)
