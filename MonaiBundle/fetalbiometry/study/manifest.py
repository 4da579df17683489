"""Read and validate a study manifest: one CSV row per ultrasound volume.

Columns: ``subject`` and ``image`` (required), ``reference`` (a label path) and
``expert_volume_ml`` (optional). Relative paths are resolved from the manifest's folder.
Validation errors are one-line :class:`~fetalbiometry.errors.InputError` messages.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

from fetalbiometry.errors import InputError

REQUIRED_COLUMNS = ("subject", "image")
OPTIONAL_COLUMNS = ("reference", "expert_volume_ml")


@dataclass(frozen=True)
class ManifestRow:
    """One volume of the study.

    Attributes:
        row: 0-based index of the data row in the manifest (the header is not counted).
        subject: subject (volunteer) identifier; rescans of one fetus share it.
        image: the ``image`` cell as written in the manifest (identifies the row on resume).
        image_path: ``image`` resolved against the manifest's folder.
        reference: the ``reference`` cell as written, or "" when absent.
        reference_path: ``reference`` resolved, or None.
        expert_volume_ml: the expert's head volume in mL, or None.
    """

    row: int
    subject: str
    image: str
    image_path: Path
    reference: str = ""
    reference_path: Path | None = None
    expert_volume_ml: float | None = None

    @property
    def key(self) -> tuple[int, str]:
        """Identity of the row across runs: (row index, image cell); see ``VolumeRecord.key``."""
        return self.row, self.image


def _parse_volume(text: str, where: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: expert_volume_ml {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise InputError(f"{where}: expert_volume_ml {text!r} must be a finite volume >= 0 mL")
    return value


def _portable(cell: str, folder: Path) -> str:
    """A path cell as the study's tables record it: an absolute path becomes relative to the
    manifest's folder, so ``volumes.csv`` holds no absolute paths (the row still reads the same file)."""
    if not cell or not Path(cell).is_absolute():
        return cell
    return Path(os.path.relpath(cell, folder.resolve())).as_posix()


def _refuse_duplicates(rows: list[ManifestRow], path: Path) -> None:
    """Refuse a manifest listing one subject's volume twice: it would count twice in every statistic
    (a subject with two scans would have n = 3)."""
    seen: dict[tuple[str, Path], ManifestRow] = {}
    for row in rows:
        key = (row.subject, row.image_path.resolve())
        if key in seen:
            first = seen[key]
            raise InputError(
                f"manifest {path.name} row {row.row} repeats row {first.row} (subject {row.subject}, "
                f"{row.image}); each volume of a subject may be listed once"
            )
        seen[key] = row


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a study manifest and check its columns and values.

    Args:
        path: CSV file with a header row ``subject,image[,reference][,expert_volume_ml]``.

    Returns:
        The rows in file order, paths resolved against the manifest's folder.

    Raises:
        InputError: the file is missing or empty, lacks a required column, a row has an
            empty subject/image or a non-numeric expert volume, or a volume is listed twice.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            table = [line for line in csv.reader(handle) if any(cell.strip() for cell in line)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"cannot read manifest {path}: {err}") from None
    header = [name.strip() for name in table[0]] if table else []
    cells = table[1:]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise InputError(
            f"manifest {path} lacks column(s) {', '.join(missing)}; expected "
            f"{','.join(REQUIRED_COLUMNS)} plus optional {','.join(OPTIONAL_COLUMNS)}, "
            f"found {','.join(header) or 'no header'}"
        )
    if not cells:
        raise InputError(f"manifest {path} has no data rows")
    folder = path.parent
    rows = []
    for index, values in enumerate(cells):
        record = {name: value.strip() for name, value in zip(header, values)}
        where = f"manifest {path.name} row {index}"
        for name in REQUIRED_COLUMNS:
            if not record.get(name):
                raise InputError(f"{where}: empty {name}")
        reference = record.get("reference", "")
        rows.append(
            ManifestRow(
                row=index,
                subject=record["subject"],
                image=_portable(record["image"], folder),
                image_path=folder / record["image"],
                reference=_portable(reference, folder),
                reference_path=folder / reference if reference else None,
                expert_volume_ml=_parse_volume(record.get("expert_volume_ml", ""), where),
            )
        )
    _refuse_duplicates(rows, path)
    return rows
