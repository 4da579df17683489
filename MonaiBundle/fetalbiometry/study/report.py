"""The study report: PNG figures in ``DIR/figures/`` and one self-contained ``DIR/report.html``.

The HTML embeds the figures as base64 data URIs, so the file opens in any browser on its own;
every piece of text from the manifest or an error message is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fetalbiometry.io import array_spacing, atomic_output, read_image
from fetalbiometry.study.manifest import ManifestRow
from fetalbiometry.study.plots import (
    MontageCase,
    bland_altman_plot,
    correlation_plot,
    montage_plot,
    subject_box_plot,
)
from fetalbiometry.study.statistics import SubjectSpread
from fetalbiometry.study.summary import PAPER_RESULTS, StudySummary, expert_pairs
from fetalbiometry.study.tables import VOLUME_COLUMNS, VolumeRecord

logger = logging.getLogger(__name__)

FIGURES_FOLDER = "figures"
REPORT_FILE = "report.html"
MONTAGE_CASES = 4

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th { background: #eee; } td.text { text-align: left; }
tr.failed td { background: #fde2e2; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
img { max-width: 100%; }
"""


def _number(value: object, digits: int = 3) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], classes: Sequence[str] = ()) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    body = []
    for index, row in enumerate(rows):
        css = f' class="{classes[index]}"' if index < len(classes) and classes[index] else ""
        cells = "".join(
            f'<td class="text">{html.escape(value)}</td>' if isinstance(value, str) else f"<td>{_number(value)}</td>"
            for value in row
        )
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _summary_rows(summary: StudySummary) -> list[tuple[str, object, object]]:
    repro = summary.reproducibility
    agreement = summary.expert_bland_altman
    half_width = (agreement.upper - agreement.bias) if agreement else None
    rows: list[tuple[str, object, object]] = [
        ("volumes ok", summary.n_ok, PAPER_RESULTS["reproducibility_n_volumes"]),
        ("volumes failed", summary.n_failed, "–"),
        ("subjects", summary.n_subjects, PAPER_RESULTS["reproducibility_n_subjects"]),
        ("per-subject SD (mL): mean", repro.mean_sd, PAPER_RESULTS["reproducibility_mean_sd_ml"]),
        ("per-subject SD (mL): min", repro.min_sd, PAPER_RESULTS["reproducibility_min_sd_ml"]),
        ("per-subject SD (mL): max", repro.max_sd, PAPER_RESULTS["reproducibility_max_sd_ml"]),
        ("volumes with an expert volume", summary.n_expert_pairs, PAPER_RESULTS["expert_n_volumes"]),
        ("Pearson r vs expert", summary.expert_pearson_r, PAPER_RESULTS["expert_pearson_r"]),
        ("Bland-Altman bias (mL), ours - expert", agreement.bias if agreement else None,
         PAPER_RESULTS["expert_bias_ml"]),
        ("Bland-Altman 1.96 SD (mL)", half_width, PAPER_RESULTS["expert_loa_half_width_ml"]),
        ("95 % limits of agreement (mL)", f"{agreement.lower:.2f} to {agreement.upper:.2f}" if agreement else "–",
         "–"),
    ]
    for name, stats in summary.reference_metrics.items():
        mean, sd = stats["mean"], stats["sd"]
        text = "–" if mean is None else f"{mean:.4f} ± {sd:.4f}" if sd is not None else f"{mean:.4f}"
        rows.append((f"{name} vs reference label (mean ± SD, n = {stats['n']})", text, "–"))
    return rows


def _montage_cases(rows: Sequence[ManifestRow], records: Sequence[VolumeRecord], out_dir: Path) -> list[MontageCase]:
    """Up to :data:`MONTAGE_CASES` ok volumes, one per subject, read back from disk."""
    by_row = {row.row: row for row in rows}
    cases, subjects = [], set()
    for record in records:
        if len(cases) == MONTAGE_CASES:
            break
        if not record.ok or record.subject in subjects or record.row not in by_row:
            continue
        try:
            image = read_image(by_row[record.row].image_path)
            label = read_image(out_dir / record.label)
        except Exception as error:  # a figure must not cost the report
            logger.warning("montage skips row %d: %s", record.row, error)
            continue
        mask = sitk.GetArrayFromImage(label) > 0
        if image.GetDimension() != 3 or not mask.any():
            continue
        subjects.add(record.subject)
        title = f"row {record.row}, {record.subject}"
        cases.append(MontageCase(title, sitk.GetArrayFromImage(image).astype(np.float32), mask, array_spacing(image)))
    return cases


def make_figures(
    rows: Sequence[ManifestRow], records: Sequence[VolumeRecord], summary: StudySummary, out_dir: Path
) -> dict[str, bytes]:
    """Render the figures the data allow: ``{file name: PNG bytes}``.

    The expert plots need 2 or more volumes with an expert volume; the box plot needs ok
    volumes; the montage needs readable 3D volumes with a non-empty label.
    """
    figures: dict[str, bytes] = {}
    ours, expert = expert_pairs(records)
    if summary.expert_bland_altman is not None:
        figures["correlation.png"] = correlation_plot(ours, expert, summary.expert_pearson_r)
        figures["bland_altman.png"] = bland_altman_plot(ours, expert, summary.expert_bland_altman)
    volumes_by_subject: dict[str, list[float]] = {}
    for record in records:
        if record.ok and record.volume_ml is not None:
            volumes_by_subject.setdefault(record.subject, []).append(record.volume_ml)
    if volumes_by_subject:
        figures["subject_volumes.png"] = subject_box_plot(volumes_by_subject)
    cases = _montage_cases(rows, records, out_dir)
    if cases:
        figures["montage.png"] = montage_plot(cases)
    return figures


_CAPTIONS = {
    "correlation.png": "Segmentation volume against the expert's, with the identity line (paper, Fig. 8).",
    "bland_altman.png": "Bland-Altman agreement: ours - expert against the pair mean; bias and bias ± 1.96 SD.",
    "subject_volumes.png": "Head volumes of each subject's rescans (paper, Fig. 9).",
    "montage.png": "Segmentations (red outline) on three orthogonal slices through the head's centre.",
}


def render_html(
    summary: StudySummary, spreads: Sequence[SubjectSpread], records: Sequence[VolumeRecord], figures: dict[str, bytes]
) -> str:
    """The report as one HTML document with embedded figures.

    Args:
        summary: study summary.
        spreads: per-subject table.
        records: per-volume table.
        figures: ``{file name: PNG bytes}`` from :func:`make_figures`.

    Returns:
        The HTML text.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Fetal head volume study</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Fetal head volume study</h1>",
        "<p>Head volumes segmented per ultrasound volume; reproducibility over each subject's rescans "
        "and agreement with expert volumes and reference labels, as validated in the 3D whole-head paper "
        "(hybrid attention + auto-context). SDs are sample SDs (ddof = 1); differences are ours - expert.</p>",
        "<h2>Summary</h2>",
        _table(["quantity", "this study", "paper"], _summary_rows(summary)),
        "<h2>Figures</h2>",
    ]
    if not figures:
        parts.append("<p>No figure: no volume was segmented successfully.</p>")
    for name, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        caption = html.escape(_CAPTIONS.get(name, name))
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    parts += [
        "<h2>Per subject</h2>",
        _table(["subject", "n", "mean volume (mL)", "SD (mL)"], [(s.subject, s.n, s.mean, s.sd) for s in spreads]),
        "<h2>Per volume</h2>",
        _table(
            VOLUME_COLUMNS,
            [[getattr(record, name) for name in VOLUME_COLUMNS] for record in records],
            classes=["" if r.ok else "failed" for r in records],
        ),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(
    out_dir: Path,
    rows: Sequence[ManifestRow],
    records: Sequence[VolumeRecord],
    spreads: Sequence[SubjectSpread],
    summary: StudySummary,
) -> Path:
    """Write ``DIR/figures/*.png`` and ``DIR/report.html`` atomically.

    Args:
        out_dir: study output folder.
        rows: the manifest (to read volumes back for the montage).
        records: per-volume results.
        spreads: per-subject statistics.
        summary: study summary.

    Returns:
        Path of ``report.html``.
    """
    figures = make_figures(rows, records, summary, out_dir)
    (out_dir / FIGURES_FOLDER).mkdir(parents=True, exist_ok=True)
    for name, png in figures.items():
        with atomic_output(out_dir / FIGURES_FOLDER / name) as temporary:
            Path(temporary).write_bytes(png)
    report = out_dir / REPORT_FILE
    with atomic_output(report) as temporary:
        Path(temporary).write_text(render_html(summary, spreads, records, figures), encoding="utf-8")
    return report
