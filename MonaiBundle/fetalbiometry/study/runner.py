"""Per-volume processing of a study: segment, measure, write the label; resume after a stop.

Each volume is independent: a volume that cannot be read, segmented or compared is recorded
as ``failed`` with a one-line reason and the others go on. After every volume the table of
results so far is rewritten atomically (the *checkpoint*), so an interrupted run can resume
from it without redoing finished volumes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import SimpleITK as sitk
from tqdm import tqdm

from fetalbiometry.errors import FetalBiometryError
from fetalbiometry.io import check_dimension, check_same_grid, read_image, write_image
from fetalbiometry.metrics import check_label_image, evaluate_images, head_volume_flag, label_volume_ml
from fetalbiometry.study.manifest import ManifestRow
from fetalbiometry.study.tables import (
    REFERENCE_METRICS,
    STATUS_FAILED,
    STATUS_FLAGGED,
    STATUS_OK,
    VolumeRecord,
    read_volumes_csv,
    write_volumes_csv,
)

logger = logging.getLogger(__name__)

LABELS_FOLDER = "labels"
VOLUMES_TABLE = "volumes.csv"
#: Checkpoint of one rank of a multi-process run; rank 0 merges them into ``volumes.csv``.
RANK_TABLE_PATTERN = "volumes.rank{rank}.csv"
_IMAGE_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png")


class Segmenter(Protocol):
    """Anything that turns an ultrasound volume into a head label on the same grid."""

    def segment(self, image: sitk.Image) -> sitk.Image: ...


SegmenterFactory = Callable[[], Segmenter]


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def label_filename(row: ManifestRow) -> str:
    """File name of a row's label, unique per manifest row: ``{row:04d}_{subject}_{stem}.nii.gz``.

    Args:
        row: the manifest row.

    Returns:
        The name; characters other than letters, digits, ``.``, ``_``, ``-`` become ``_``.
    """
    name = Path(row.image.rstrip("/\\")).name
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return f"{row.row:04d}_{_safe_name(row.subject)}_{_safe_name(name)}.nii.gz"


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def _without_absolute_paths(message: str, row: ManifestRow) -> str:
    """``message`` with the row's resolved paths written as in the manifest (tables hold no absolute paths)."""
    for path, cell in ((row.image_path, row.image), (row.reference_path, row.reference)):
        if path is not None and cell:
            message = message.replace(str(path), cell)
    return message


def segment_row(row: ManifestRow, segmenter: Segmenter, out_dir: Path) -> VolumeRecord:
    """Segment one volume, write its label, measure its volume and compare it to its reference.

    Args:
        row: the manifest row.
        segmenter: object whose ``segment(image)`` returns a 0/1 label on the image's grid.
        out_dir: study output folder; the label goes to ``out_dir/labels/``.

    Returns:
        An ``ok`` record; a ``flagged`` one, with its label but no volume, when the head is empty or
        implausible (:func:`~fetalbiometry.metrics.head_volume_flag`, the reason in ``error``); or a
        ``failed`` one holding the reason and whatever was measured before the failure (e.g. the
        volume when the reference lies on another grid).
    """
    results: dict[str, object] = {}
    try:
        image = read_image(row.image_path)
        check_dimension(image, (3,), name=row.image)
        label = segmenter.segment(image)
        check_same_grid(label, image, names=("label", "image"))
        relative = Path(LABELS_FOLDER) / label_filename(row)
        write_image(label, out_dir / relative)
        results["label"] = relative.as_posix()
        volume = label_volume_ml(label)
        flag = head_volume_flag(volume)
        if flag is not None:  # an empty or implausible head is no number for the statistics
            logger.warning("row %d (%s) flagged: %s", row.row, row.image, flag)
            return VolumeRecord.for_row(row, status=STATUS_FLAGGED, error=flag, **results)
        results["volume_ml"] = volume
        if row.reference_path is not None:
            reference = read_image(row.reference_path)
            check_label_image(reference, name=row.reference)
            metrics = evaluate_images(label, reference)
            results.update({name: getattr(metrics, name) for name in REFERENCE_METRICS})
    except Exception as error:  # one volume must not stop the study: record it and go on
        message = _without_absolute_paths(_one_line(error), row)
        log = logger.warning if isinstance(error, FetalBiometryError) else logger.exception
        log("row %d (%s) failed: %s", row.row, row.image, message)
        return VolumeRecord.for_row(row, status=STATUS_FAILED, error=message, **results)
    return VolumeRecord.for_row(row, status=STATUS_OK, **results)


def checkpoint_path(out_dir: Path, rank: int, world_size: int) -> Path:
    """Table rewritten after each volume: ``volumes.csv``, or one per rank when sharded."""
    name = VOLUMES_TABLE if world_size == 1 else RANK_TABLE_PATTERN.format(rank=rank)
    return out_dir / name


def previous_tables(out_dir: Path) -> list[Path]:
    """Tables an earlier (possibly interrupted, possibly sharded) run left in ``out_dir``."""
    rank_tables = sorted(out_dir.glob(RANK_TABLE_PATTERN.format(rank="*")))
    return [path for path in [out_dir / VOLUMES_TABLE, *rank_tables] if path.is_file()]


def finished_records(out_dir: Path, rows: Sequence[ManifestRow]) -> dict[tuple[int, str], VolumeRecord]:
    """Results of an earlier run that ``--resume`` keeps.

    A record is kept when its status is ok, its label file still exists and its (row index,
    image) matches a row of the current manifest. Failed rows are redone. A table that cannot
    be read is ignored with a warning (its volumes are redone).

    Args:
        out_dir: study output folder.
        rows: the current manifest.

    Returns:
        Kept records by row key.
    """
    wanted = {row.key for row in rows}
    kept: dict[tuple[int, str], VolumeRecord] = {}
    for table in previous_tables(out_dir):
        try:
            records = read_volumes_csv(table)
        except FetalBiometryError as error:
            logger.warning("ignoring %s on resume: %s", table, error)
            continue
        for record in records:
            if record.ok and record.key in wanted and record.label and (out_dir / record.label).is_file():
                kept[record.key] = record
    return kept


def run_rows(
    rows: Iterable[ManifestRow],
    make_segmenter: SegmenterFactory,
    out_dir: Path,
    checkpoint: Path,
    finished: dict[tuple[int, str], VolumeRecord],
    progress_label: str = "study",
    progress_position: int = 0,
) -> list[VolumeRecord]:
    """Process the rows not yet finished, rewriting ``checkpoint`` after each one.

    Args:
        rows: the rows to cover (all of them, or this rank's shard).
        make_segmenter: builds the segmenter; called once, only if some row needs work.
        out_dir: study output folder.
        checkpoint: table rewritten atomically after every volume with all records so far.
        finished: records kept from an earlier run (see :func:`finished_records`).
        progress_label: prefix of the progress bar.
        progress_position: line of the progress bar (the rank, so that bars do not overlap).

    Returns:
        One record per row, sorted by row index.
    """
    rows = list(rows)
    records = [finished[row.key] for row in rows if row.key in finished]
    todo = [row for row in rows if row.key not in finished]
    if records:
        logger.info("%s: %d volume(s) already done, %d to go", progress_label, len(records), len(todo))
    segmenter = None
    with tqdm(total=len(todo), desc=progress_label, unit="vol", position=progress_position, dynamic_ncols=True) as bar:
        for row in todo:
            if segmenter is None:
                segmenter = make_segmenter()
            records.append(segment_row(row, segmenter, out_dir))
            write_volumes_csv(checkpoint, records)
            bar.update()
    return sorted(records, key=lambda record: record.row)
