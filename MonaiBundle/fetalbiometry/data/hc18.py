"""The HC18 fetal head circumference data set, in its official layout.

van den Heuvel TLA, de Bruijn D, de Korte CL, van Ginneken B. Automated measurement of
fetal head circumference using 2D ultrasound images. PLoS ONE 13(8): e0200412, 2018;
doi:10.5281/zenodo.1322001 (CC BY 4.0).

Layout::

    training_set/NNN_HC.png, NNN_kHC.png          800×540 8-bit images (k-th image of subject NNN)
    training_set/NNN_HC_Annotation.png            thin (2-3 pixel) ellipse outline on black
    training_set/training_set_pixel_size_and_HC.csv   filename,pixel size(mm),head circumference (mm)
    test_set/test_set_pixel_size.csv              filename,pixel size(mm)

Ellipses follow the convention of :mod:`fetalbiometry.biometry.ellipse` (x = column,
y = row); in millimetres x = column × pixel size and y = row × pixel size, as in the
challenge's submission file.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fetalbiometry.biometry.ellipse import Ellipse, ellipse_to_mask, fit_ellipse_to_outline
from fetalbiometry.errors import InputError
from fetalbiometry.io import atomic_output

__all__ = [
    "SUBMISSION_COLUMNS",
    "TEST_CSV",
    "TRAINING_CSV",
    "HC18Annotation",
    "HC18Record",
    "is_hc18_name",
    "outline_to_mask",
    "read_annotation",
    "read_frame",
    "read_outline",
    "read_pixel_sizes",
    "read_records",
    "read_submission",
    "split_by_subject",
    "subject_id",
    "subject_kfold",
    "test_records",
    "training_records",
    "write_submission",
]

TRAINING_CSV = Path("training_set") / "training_set_pixel_size_and_HC.csv"
TEST_CSV = Path("test_set") / "test_set_pixel_size.csv"
SUBMISSION_COLUMNS = (
    "filename",
    "center_x_mm",
    "center_y_mm",
    "semi_axes_a_mm",
    "semi_axes_b_mm",
    "angle_rad",
)
_PIXEL_SIZE_COLUMN = "pixel size(mm)"
_HC_COLUMN = "head circumference (mm)"
_FILENAME = re.compile(r"^(?P<subject>\d+)_(?P<index>\d*)HC(?:_Annotation)?\.png$")


@dataclass(frozen=True)
class HC18Record:
    """One HC18 image and what is known about it.

    Args:
        filename: name as in the CSV, e.g. ``"010_2HC.png"``.
        image_path: path of the image.
        annotation_path: path of the ``*_Annotation.png`` outline, or None (test set).
        pixel_size_mm: side of a square pixel, in mm.
        hc_mm: reference head circumference in mm, or None (test set).
        subject_id: the subject the image belongs to (see :func:`subject_id`).
    """

    filename: str
    image_path: Path
    annotation_path: Path | None
    pixel_size_mm: float
    hc_mm: float | None
    subject_id: str


@dataclass(frozen=True)
class HC18Annotation:
    """The reference of one image, from its outline.

    Args:
        ellipse_px: ellipse fitted to the outline, in pixels.
        ellipse_mm: the same ellipse in mm.
        mask: the filled ellipse (pixel centres inside it), boolean, image shape.
    """

    ellipse_px: Ellipse
    ellipse_mm: Ellipse
    mask: np.ndarray


def is_hc18_name(filename: str) -> bool:
    """Whether ``filename`` follows HC18's naming (``NNN_HC.png``, ``NNN_kHC.png`` or their ``_Annotation``)."""
    return _FILENAME.match(Path(filename).name) is not None


def subject_id(filename: str) -> str:
    """The subject of an HC18 file: ``NNN_HC.png`` and ``NNN_kHC.png`` both give ``"NNN"``.

    Raises:
        InputError: the name does not follow the HC18 pattern.
    """
    match = _FILENAME.match(Path(filename).name)
    if match is None:
        raise InputError(f"not an HC18 file name (NNN_HC.png or NNN_kHC.png): {filename}")
    return match["subject"]


def _positive_float(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: {what} is not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{where}: {what} must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class _CSVRow:
    where: str
    filename: str
    pixel_size_mm: float
    hc_mm: float | None


def _read_csv_rows(csv_path: Path) -> list[_CSVRow]:
    """The checked rows of an HC18 CSV (training or test layout), in file order."""
    if not csv_path.is_file():
        raise InputError(f"HC18 CSV not found: {csv_path}")
    try:  # utf-8-sig: Excel starts its UTF-8 CSVs with a byte order mark
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read {csv_path}: {getattr(error, 'strerror', None) or error}") from None
    header = [column.strip() for column in rows[0]] if rows else []
    if header[:2] != ["filename", _PIXEL_SIZE_COLUMN]:
        raise InputError(
            f"{csv_path}: unexpected header {header}; expected 'filename,{_PIXEL_SIZE_COLUMN}' first"
        )
    hc_column = header.index(_HC_COLUMN) if _HC_COLUMN in header else None  # other columns are ignored
    needed = 2 if hc_column is None else hc_column + 1
    checked = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines, and Excel's rows of empty cells
        if len(row) < needed:
            raise InputError(f"{csv_path}:{line}: expected at least {needed} columns, got {len(row)}")
        where = f"{csv_path}:{line}"
        checked.append(
            _CSVRow(
                where=where,
                filename=row[0].strip(),
                pixel_size_mm=_positive_float(row[1], "pixel size", where),
                hc_mm=_positive_float(row[hc_column], "head circumference", where) if hc_column is not None else None,
            )
        )
    return checked


def read_records(csv_path: str | Path, image_dir: str | Path | None = None) -> list[HC18Record]:
    """Read an HC18 CSV: the training one (with HC) or the test one (without).

    Args:
        csv_path: ``training_set_pixel_size_and_HC.csv`` or ``test_set_pixel_size.csv``.
        image_dir: folder of the images; defaults to the CSV's folder.

    Returns:
        One record per row, in file order; ``annotation_path`` is set where the outline
        file exists.

    Raises:
        InputError: missing file, unexpected header, bad value or missing image.
    """
    csv_path = Path(csv_path)
    image_dir = csv_path.parent if image_dir is None else Path(image_dir)
    records = []
    for row in _read_csv_rows(csv_path):
        image_path = image_dir / row.filename
        if not image_path.is_file():
            raise InputError(f"{row.where}: image not found: {image_path}")
        annotation_path = image_path.with_name(image_path.stem + "_Annotation.png")
        records.append(
            HC18Record(
                filename=row.filename,
                image_path=image_path,
                annotation_path=annotation_path if annotation_path.is_file() else None,
                pixel_size_mm=row.pixel_size_mm,
                hc_mm=row.hc_mm,
                subject_id=subject_id(row.filename),
            )
        )
    return records


def read_pixel_sizes(csv_path: str | Path) -> dict[str, float]:
    """The pixel size of every image an HC18 CSV lists (training or test layout).

    Unlike :func:`read_records`, the images need not exist nor follow the HC18 naming: a batch
    command reports a missing image as its own row's failure.

    Args:
        csv_path: a CSV with the header ``filename,pixel size(mm)`` (optionally
            ``,head circumference (mm)``).

    Returns:
        filename → pixel size in mm, in file order.

    Raises:
        InputError: missing file, unexpected header, bad value or a filename listed twice.
    """
    pixel_sizes: dict[str, float] = {}
    for row in _read_csv_rows(Path(csv_path)):
        if row.filename in pixel_sizes:
            raise InputError(f"{row.where}: {row.filename} is listed twice")
        pixel_sizes[row.filename] = row.pixel_size_mm
    return pixel_sizes


def training_records(root: str | Path) -> list[HC18Record]:
    """Records of ``root/training_set`` (with annotations and reference HC)."""
    return read_records(Path(root) / TRAINING_CSV)


def test_records(root: str | Path) -> list[HC18Record]:
    """Records of ``root/test_set`` (pixel sizes only)."""
    return read_records(Path(root) / TEST_CSV)


def read_outline(path: str | Path) -> np.ndarray:
    """Read an 8-bit grayscale PNG (an ``*_Annotation.png`` outline) as a 2D array.

    Raises:
        InputError: the file is missing or not a readable image.
    """
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise InputError(f"cannot read image: {path}")
    return image


def outline_to_mask(outline: np.ndarray) -> np.ndarray:
    """Fill a thin ellipse outline: the mask of the ellipse fitted to its pixels.

    Fitting is used rather than flood filling because it also closes outlines cut by the
    image border or with gaps. The outline pixels straddle the boundary of the mask.

    Args:
        outline: 2D array; non-zero pixels are the outline.

    Returns:
        Boolean mask of the outline's shape.
    """
    return ellipse_to_mask(fit_ellipse_to_outline(outline), outline.shape)


def read_frame(record: HC18Record) -> np.ndarray:
    """The record's image as a 2D uint8 array (rows, columns).

    Raises:
        InputError: the image cannot be read.
    """
    frame = cv2.imread(str(record.image_path), cv2.IMREAD_GRAYSCALE)
    if frame is None:
        raise InputError(f"cannot read image: {record.image_path}")
    return frame


def read_annotation(record: HC18Record) -> HC18Annotation:
    """Ellipse (pixels and mm) and filled mask of a record's outline.

    Raises:
        InputError: the record has no annotation or it cannot be read.
        EmptyMaskError: the outline is empty.
    """
    if record.annotation_path is None:
        raise InputError(f"{record.filename} has no annotation")
    outline = read_outline(record.annotation_path)
    ellipse = fit_ellipse_to_outline(outline)
    return HC18Annotation(
        ellipse_px=ellipse,
        ellipse_mm=ellipse.to_mm(record.pixel_size_mm),
        mask=ellipse_to_mask(ellipse, outline.shape),
    )


def write_submission(path: str | Path, ellipses_mm: Mapping[str, Ellipse | None]) -> Path:
    """Write the challenge's submission CSV, atomically.

    Args:
        path: output CSV.
        ellipses_mm: filename → ellipse in mm (:meth:`Ellipse.to_mm`), or None where there is
            no measurement; such rows are written with empty values. Rows keep the mapping's
            order.

    Returns:
        The path written.
    """
    path = Path(path)
    with atomic_output(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUBMISSION_COLUMNS)
        for filename, ellipse in ellipses_mm.items():
            if ellipse is None:
                values = [""] * 5
            else:
                values = [repr(float(v)) for v in (ellipse.cx, ellipse.cy, ellipse.a, ellipse.b, ellipse.theta)]
            writer.writerow([filename, *values])
    return path


def read_submission(path: str | Path) -> dict[str, Ellipse | None]:
    """Read a submission CSV written by :func:`write_submission` or by hand.

    Returns:
        filename → ellipse in mm, or None for a row with empty values; file order.

    Raises:
        InputError: missing file, wrong header, partly empty or bad row, repeated filename.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"submission CSV not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = tuple(column.strip() for column in rows[0]) if rows else ()
    if header != SUBMISSION_COLUMNS:
        raise InputError(f"{path}: expected header {','.join(SUBMISSION_COLUMNS)}, got {','.join(header)}")
    ellipses: dict[str, Ellipse | None] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        where = f"{path}:{line}"
        if len(row) != len(SUBMISSION_COLUMNS):
            raise InputError(f"{where}: expected {len(SUBMISSION_COLUMNS)} columns, got {len(row)}")
        filename, values = row[0].strip(), [value.strip() for value in row[1:]]
        if filename in ellipses:
            raise InputError(f"{where}: {filename} appears twice")
        if not any(values):
            ellipses[filename] = None
            continue
        try:
            ellipses[filename] = Ellipse(*(float(value) for value in values))
        except (ValueError, InputError) as error:
            raise InputError(f"{where}: not a valid ellipse {values}: {error}") from None
    return ellipses


def _subjects_in_random_order(records: Sequence[HC18Record], seed: int) -> list[str]:
    subjects = sorted({record.subject_id for record in records})
    order = np.random.default_rng(seed).permutation(len(subjects))
    return [subjects[i] for i in order]


def split_by_subject(
    records: Sequence[HC18Record], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[HC18Record], list[HC18Record]]:
    """Split records in two with no subject on both sides.

    A fraction of the subjects (not of the images) goes to the second part, drawn by
    ``seed``; the same records and seed always give the same split.

    Args:
        records: records to split.
        test_fraction: fraction of subjects in the second part, in (0, 1).
        seed: random seed.

    Returns:
        (train, test) records, each in input order.

    Raises:
        InputError: the fraction is out of range or leaves one side empty.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test fraction must be in (0, 1), got {test_fraction}")
    subjects = _subjects_in_random_order(records, seed)
    n_test = round(test_fraction * len(subjects))
    if not 0 < n_test < len(subjects):
        raise InputError(f"cannot split {len(subjects)} subjects with test fraction {test_fraction}")
    test_subjects = set(subjects[:n_test])
    train = [record for record in records if record.subject_id not in test_subjects]
    test = [record for record in records if record.subject_id in test_subjects]
    return train, test


def subject_kfold(
    records: Sequence[HC18Record], k: int = 5, seed: int = 0
) -> list[tuple[list[HC18Record], list[HC18Record]]]:
    """K-fold cross-validation by subject.

    Subjects are shuffled by ``seed`` and dealt into ``k`` folds of near-equal subject
    counts (scikit-learn's ``GroupKFold`` does not shuffle by seed, and is not a
    dependency). Every record is validated exactly once.

    Args:
        records: records to split.
        k: number of folds, at least 2 and at most the number of subjects.
        seed: random seed.

    Returns:
        ``k`` pairs (train, validation), each list in input order.

    Raises:
        InputError: ``k`` is out of range.
    """
    subjects = _subjects_in_random_order(records, seed)
    if not 2 <= k <= len(subjects):
        raise InputError(f"k must be between 2 and the number of subjects ({len(subjects)}), got {k}")
    folds = []
    for fold_subjects in np.array_split(np.array(subjects, dtype=object), k):
        held_out = set(fold_subjects)
        train = [record for record in records if record.subject_id not in held_out]
        validation = [record for record in records if record.subject_id in held_out]
        folds.append((train, validation))
    return folds
