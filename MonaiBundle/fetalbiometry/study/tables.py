"""The study's CSV tables: ``volumes.csv`` (one row per manifest row) and ``subjects.csv``.

Every table is written atomically (:func:`fetalbiometry.io.atomic_output`), so an interrupted
run leaves the previous complete file or the new complete file, never a partial one.
Floats are written with ``repr`` so that reading them back gives the same numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from fetalbiometry.errors import InputError
from fetalbiometry.io import atomic_output
from fetalbiometry.study.manifest import ManifestRow
from fetalbiometry.study.statistics import SubjectSpread

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_FLAGGED = "flagged"
"""A volume segmented but not counted: its head is empty or implausible (the reason is in ``error``)."""

#: Fields of :class:`fetalbiometry.metrics.SegmentationMetrics` kept per volume.
REFERENCE_METRICS = ("dice", "jaccard", "conformity", "adb_mm", "hdb_mm", "volume_ref_ml")


@dataclass(frozen=True)
class VolumeRecord:
    """The result of one manifest row (one line of ``volumes.csv``).

    Attributes:
        row: 0-based manifest row index.
        subject, image, reference, expert_volume_ml: copied from the manifest row (cells as written).
        status: ``"ok"``, ``"flagged"`` (segmented, no plausible head) or ``"failed"``.
        error: one-line reason of a failure ("" when ok).
        volume_ml: head volume of the segmentation, mL (None when it could not be computed).
        dice, jaccard, conformity, adb_mm, hdb_mm: against the reference label (fractions; mm).
        volume_ref_ml: volume of the reference label, mL.
        label: path of the written label relative to the output folder ("" when none).
    """

    row: int
    subject: str
    image: str
    reference: str = ""
    expert_volume_ml: float | None = None
    status: str = STATUS_FAILED
    error: str = ""
    volume_ml: float | None = None
    dice: float | None = None
    jaccard: float | None = None
    conformity: float | None = None
    adb_mm: float | None = None
    hdb_mm: float | None = None
    volume_ref_ml: float | None = None
    label: str = ""

    @classmethod
    def for_row(cls, row: ManifestRow, **results: object) -> "VolumeRecord":
        """Start a record from a manifest row and the given result fields."""
        return cls(
            row=row.row,
            subject=row.subject,
            image=row.image,
            reference=row.reference,
            expert_volume_ml=row.expert_volume_ml,
            **results,
        )

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def key(self) -> tuple[int, str]:
        """Identity of the manifest row: (row index, image cell); used to match rows on resume."""
        return self.row, self.image


VOLUME_COLUMNS = tuple(f.name for f in fields(VolumeRecord))
SUBJECT_COLUMNS = ("subject", "n", "mean_volume_ml", "sd_volume_ml")
_TEXT_COLUMNS = frozenset({"subject", "image", "reference", "status", "error", "label"})


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(float(value))  # float(): numpy scalars would print as np.float64(...)
    return str(value)


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    with atomic_output(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows([_format(value) for value in row] for row in rows)
    return path


def write_volumes_csv(path: Path, records: Iterable[VolumeRecord]) -> Path:
    """Write ``records`` sorted by manifest row to ``path`` (atomically).

    Args:
        path: destination, e.g. ``DIR/volumes.csv``.
        records: volume records.

    Returns:
        ``path``.
    """
    ordered = sorted(records, key=lambda record: record.row)
    return _write_csv(path, VOLUME_COLUMNS, ([asdict(r)[name] for name in VOLUME_COLUMNS] for r in ordered))


def _parse_cell(name: str, text: str) -> object:
    if name == "row":
        return int(text)
    if name in _TEXT_COLUMNS:
        return text
    return float(text) if text else None


def read_volumes_csv(path: Path) -> list[VolumeRecord]:
    """Read a ``volumes.csv`` written by :func:`write_volumes_csv`.

    Args:
        path: the table.

    Returns:
        Its records.

    Raises:
        InputError: the file is not a volumes table of this version.
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != VOLUME_COLUMNS:
                raise InputError(f"{path} is not a study volumes table (columns {reader.fieldnames})")
            return [
                VolumeRecord(**{name: _parse_cell(name, cells[name]) for name in VOLUME_COLUMNS}) for cells in reader
            ]
    except (OSError, ValueError, csv.Error) as err:
        raise InputError(f"cannot read {path}: {err}") from None


def write_subjects_csv(path: Path, spreads: Iterable[SubjectSpread]) -> Path:
    """Write the per-subject volume table (n, mean, sample SD with ddof=1) atomically.

    Args:
        path: destination, e.g. ``DIR/subjects.csv``.
        spreads: per-subject statistics.

    Returns:
        ``path``.
    """
    return _write_csv(path, SUBJECT_COLUMNS, ((s.subject, s.n, s.mean, s.sd) for s in spreads))

