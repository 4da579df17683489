"""``run_study``: a whole volumetric study from a manifest, on one process or sharded by torchrun."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from fetalbiometry.errors import FetalBiometryError, InputError
from fetalbiometry.io import refuse_overwriting
from fetalbiometry.study.distributed import Shard, all_gather, barrier, process_group
from fetalbiometry.study.manifest import ManifestRow, read_manifest
from fetalbiometry.study.report import FIGURES_FOLDER, REPORT_FILE, write_report
from fetalbiometry.study.runner import (
    LABELS_FOLDER,
    VOLUMES_TABLE,
    Segmenter,
    SegmenterFactory,
    checkpoint_path,
    finished_records,
    label_filename,
    previous_tables,
    run_rows,
)
from fetalbiometry.study.summary import StudySummary, per_subject, summarize, write_summary_json
from fetalbiometry.study.tables import VolumeRecord, write_subjects_csv, write_volumes_csv

logger = logging.getLogger(__name__)

SUBJECTS_TABLE = "subjects.csv"
SUMMARY_FILE = "summary.json"
#: The figures a report may draw (study.report.make_figures).
FIGURE_FILES = ("correlation.png", "bland_altman.png", "subject_volumes.png", "montage.png")


def _segmenter_factory(segmenter: Segmenter | None, model_path: Path | None, device: str) -> SegmenterFactory:
    """Use the given segmenter, or load the bundle's model only when a volume needs it."""
    if segmenter is not None:
        return lambda: segmenter

    def load() -> Segmenter:
        from fetalbiometry.segment3d.segmenter import Segmenter as BundleSegmenter

        return BundleSegmenter.from_bundle(model_path, device)

    return load


def _run_shard(
    shard: Shard,
    rows: Sequence[ManifestRow],
    make_segmenter: SegmenterFactory,
    out_dir: Path,
    finished: dict[tuple[int, str], VolumeRecord],
) -> list[VolumeRecord]:
    return run_rows(
        shard.take(rows),
        make_segmenter,
        out_dir,
        checkpoint=checkpoint_path(out_dir, shard.rank, shard.world_size),
        finished=finished,
        progress_label=f"study rank {shard.rank}" if shard.is_distributed else "study",
        progress_position=shard.rank,
    )


def run_study(
    manifest: Path,
    out_dir: Path,
    model_path: Path | None = None,
    device: str = "auto",
    resume: bool = False,
    segmenter: Segmenter | None = None,
) -> StudySummary:
    """Segment every volume of a manifest and write the study's tables, summary and report.

    Implements the volumetric validation of the 3D whole-head paper (Sec. 3.2, Figs. 8-9):
    per-volume head volume (and DSC, Conf, Jacc, Adb, Hdb against a reference label),
    per-subject reproducibility over rescans, and agreement with expert volumes.

    Outputs in ``out_dir``: ``volumes.csv`` (one row per manifest row, status ok/failed),
    ``labels/``, ``subjects.csv``, ``summary.json``, ``figures/*.png`` and ``report.html``.
    Under ``torchrun`` every rank segments its shard (rows r, r + N, ...) and rank 0 writes the
    tables and the report; the outputs equal those of a single-process run.

    Args:
        manifest: CSV with ``subject,image`` and optional ``reference,expert_volume_ml``.
        out_dir: output folder (created).
        model_path: model for :meth:`fetalbiometry.segment3d.segmenter.Segmenter.from_bundle`; None: the shipped one.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (``cuda:LOCAL_RANK`` per rank under torchrun).
        resume: keep the ok volumes of an earlier run in ``out_dir`` whose labels exist.
        segmenter: object with ``segment(sitk.Image) -> sitk.Image`` to use instead of the bundle.

    Returns:
        The summary (on every rank).

    Raises:
        FetalBiometryError: bad manifest or output folder, or the segmenter could not be built
            (on any rank).
    """
    manifest, out_dir = Path(manifest), Path(out_dir)
    rows = read_manifest(manifest)
    refuse_overwriting_inputs(manifest, rows, out_dir, model_path)
    shard = Shard.from_environment()
    try:
        (out_dir / LABELS_FOLDER).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the output folder {out_dir}: {error.strerror or error}") from None
    with process_group(shard):
        finished = finished_records(out_dir, rows) if resume else {}
        barrier(shard)  # every rank has read the earlier tables before any rank rewrites its own
        make_segmenter = _segmenter_factory(segmenter, model_path, shard.device(device))
        failure = None
        try:
            records = _run_shard(shard, rows, make_segmenter, out_dir, finished)
        except Exception as error:
            if not shard.is_distributed:
                raise
            # tell the other ranks instead of leaving them waiting in the gather below
            logger.exception("rank %d stopped", shard.rank)
            records, failure = [], f"rank {shard.rank}: {' '.join(str(error).split()) or type(error).__name__}"
        gathered = all_gather(shard, (records, failure))
    failures = [failure for _, failure in gathered if failure]
    if failures:
        raise FetalBiometryError("; ".join(failures))
    records = sorted((record for part, _ in gathered for record in part), key=lambda record: record.row)
    summary = summarize(records)
    if shard.is_main:
        _write_outputs(out_dir, rows, records, summary)
    return summary


def refuse_overwriting_inputs(manifest: Path, rows: Sequence[ManifestRow], out_dir: Path, model: Path | None) -> None:
    """Refuse a study whose outputs (tables, summary, report, figures, labels) would land on any
    of its inputs: the manifest, a volume (with its data files or series), a reference or the model."""
    outputs = [out_dir / name for name in (VOLUMES_TABLE, SUBJECTS_TABLE, SUMMARY_FILE, REPORT_FILE)]
    outputs += [out_dir / FIGURES_FOLDER / name for name in FIGURE_FILES]
    outputs += [out_dir / LABELS_FOLDER / label_filename(row) for row in rows]
    inputs = [manifest, *(row.image_path for row in rows), *(row.reference_path for row in rows if row.reference_path)]
    refuse_overwriting(outputs, [*inputs, *([model] if model is not None else [])])


def _write_outputs(
    out_dir: Path, rows: Sequence[ManifestRow], records: list[VolumeRecord], summary: StudySummary
) -> None:
    """Rank 0: final tables, summary and report; then drop the per-rank checkpoints."""
    write_volumes_csv(out_dir / VOLUMES_TABLE, records)
    spreads = per_subject(records)
    write_subjects_csv(out_dir / SUBJECTS_TABLE, spreads)
    write_summary_json(out_dir / SUMMARY_FILE, summary)
    report = write_report(out_dir, rows, records, spreads, summary)
    for table in previous_tables(out_dir):
        if table.name != VOLUMES_TABLE:
            table.unlink()
    logger.info("study report: %s", report)
