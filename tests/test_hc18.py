"""HC18 data: records, outlines, submission CSV and subject-wise splits."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_fill_holes, distance_transform_edt

from fetalbiometry.biometry import Ellipse, fit_ellipse_to_outline
from fetalbiometry.data import hc18
from fetalbiometry.errors import InputError

HC18_DIR = Path(os.environ.get("HC18_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hc18"))


@pytest.fixture(scope="module")
def training():
    if not (HC18_DIR / hc18.TRAINING_CSV).is_file():
        pytest.skip(f"HC18 not found at {HC18_DIR} (set HC18_DIR)")
    return hc18.training_records(HC18_DIR)


def synthetic_records(n_subjects: int = 40) -> list[hc18.HC18Record]:
    """Records without files: subject i has 1 + i % 3 images (NNN_HC, NNN_2HC, NNN_3HC)."""
    records = []
    for subject in range(n_subjects):
        for index in range(1 + subject % 3):
            filename = f"{subject:03d}_{'' if index == 0 else index + 1}HC.png"
            records.append(
                hc18.HC18Record(filename, Path(filename), None, 0.1, 150.0, hc18.subject_id(filename))
            )
    return records


def test_subject_id():
    assert hc18.subject_id("010_HC.png") == "010"
    assert hc18.subject_id("010_2HC.png") == "010"
    assert hc18.subject_id("/data/training_set/014_3HC_Annotation.png") == "014"
    with pytest.raises(InputError):
        hc18.subject_id("image_010.png")


def test_training_records(training):
    assert len(training) == 799
    assert len({record.subject_id for record in training}) == 645
    assert all(record.annotation_path is not None and record.hc_mm is not None for record in training)
    first = training[0]
    assert first.filename == "000_HC.png" and first.pixel_size_mm == pytest.approx(0.0691358041432)


def test_every_outline_reproduces_the_reference_circumference(training):
    errors = []
    for record in training:
        ellipse = fit_ellipse_to_outline(hc18.read_outline(record.annotation_path))
        errors.append(abs(ellipse.to_mm(record.pixel_size_mm).circumference - record.hc_mm))
    errors = np.array(errors)
    print(f"HC18 circumference error: max {errors.max():.4f} mm, mean {errors.mean():.4f} mm")
    assert errors.max() < 0.1
    assert errors.mean() < 0.01


def test_filled_mask_overlays_the_outline(training):
    for record in training[::80]:
        annotation = hc18.read_annotation(record)
        outline = hc18.read_outline(record.annotation_path) > 0
        mask = annotation.mask
        assert mask.shape == outline.shape
        # The drawn outline is 2-3 pixels thick and centred on the ellipse: from every outline
        # pixel, the nearest pixel across the mask's edge is at most a knight's move (√5) away,
        # and half of the outline pixels are inside the mask.
        across_edge = np.where(mask, distance_transform_edt(mask), distance_transform_edt(~mask))
        assert across_edge[outline].max() <= math.sqrt(5) + 1e-9
        assert 0.45 < mask[outline].mean() < 0.55
        filled = binary_fill_holes(outline)
        if filled.sum() > 2 * outline.sum():  # the outline is closed inside the image
            dice = 2 * (filled & mask).sum() / (filled.sum() + mask.sum())
            assert dice > 0.97
        ellipse_px, ellipse_mm = annotation.ellipse_px, annotation.ellipse_mm
        assert ellipse_mm.cx == pytest.approx(ellipse_px.cx * record.pixel_size_mm)
        assert ellipse_mm.circumference == pytest.approx(record.hc_mm, abs=0.1)


def test_read_records_of_a_test_set(tmp_path):
    (tmp_path / "100_HC.png").write_bytes(b"")
    (tmp_path / "100_2HC.png").write_bytes(b"")
    csv_path = tmp_path / "test_set_pixel_size.csv"
    csv_path.write_text("filename,pixel size(mm)\n100_HC.png,0.1\n100_2HC.png,0.125\n")
    records = hc18.read_records(csv_path)
    assert [record.filename for record in records] == ["100_HC.png", "100_2HC.png"]
    assert all(record.hc_mm is None and record.annotation_path is None for record in records)
    assert {record.subject_id for record in records} == {"100"}
    assert records[1].pixel_size_mm == 0.125

    csv_path.write_text("filename,pixel size(mm)\n101_HC.png,0.1\n")
    with pytest.raises(InputError, match="image not found"):
        hc18.read_records(csv_path)
    csv_path.write_text("name,pixel\n100_HC.png,0.1\n")
    with pytest.raises(InputError, match="header"):
        hc18.read_records(csv_path)


def test_read_pixel_sizes_needs_no_images_and_refuses_repeats(tmp_path):
    csv_path = tmp_path / "pixel_sizes.csv"
    csv_path.write_text("filename,pixel size(mm)\nscan b.png,0.2\n100_HC.png,0.125\n")
    assert list(hc18.read_pixel_sizes(csv_path).items()) == [("scan b.png", 0.2), ("100_HC.png", 0.125)]
    csv_path.write_text("filename,pixel size(mm),head circumference (mm)\n100_HC.png,0.1,150\n100_HC.png,0.1,150\n")
    with pytest.raises(InputError, match="twice"):
        hc18.read_pixel_sizes(csv_path)
    csv_path.write_text("filename,pixel size(mm)\n100_HC.png,-1\n")
    with pytest.raises(InputError, match="positive"):
        hc18.read_pixel_sizes(csv_path)


def test_submission_round_trip(tmp_path):
    ellipses = {
        "000_HC.png": Ellipse(28.3, 26.1, 7.66, 6.41, 1.986),
        "001_HC.png": None,
        "001_2HC.png": Ellipse(1 / 3, 2 / 7, math.pi, math.e, 0.0),
    }
    path = hc18.write_submission(tmp_path / "submission.csv", ellipses)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "filename,center_x_mm,center_y_mm,semi_axes_a_mm,semi_axes_b_mm,angle_rad"
    assert lines[2] == "001_HC.png,,,,,"
    assert hc18.read_submission(path) == ellipses
    assert list(tmp_path.iterdir()) == [path]  # nothing temporary left behind


def test_submission_errors(tmp_path):
    path = tmp_path / "submission.csv"
    path.write_text("filename,hc\n000_HC.png,150\n")
    with pytest.raises(InputError, match="header"):
        hc18.read_submission(path)
    path.write_text(",".join(hc18.SUBMISSION_COLUMNS) + "\n000_HC.png,1,2,,,\n")
    with pytest.raises(InputError, match=":2:"):
        hc18.read_submission(path)
    with pytest.raises(InputError):
        hc18.read_submission(tmp_path / "missing.csv")


def test_split_by_subject_has_no_leakage_and_is_deterministic():
    records = synthetic_records()
    train, test = hc18.split_by_subject(records, test_fraction=0.25, seed=3)
    train_subjects = {record.subject_id for record in train}
    test_subjects = {record.subject_id for record in test}
    assert not train_subjects & test_subjects
    assert len(train) + len(test) == len(records)
    assert len(test_subjects) == 10
    assert hc18.split_by_subject(records, 0.25, seed=3) == (train, test)
    assert hc18.split_by_subject(records, 0.25, seed=4)[1] != test
    with pytest.raises(InputError):
        hc18.split_by_subject(records, test_fraction=1.0)


def test_subject_kfold_validates_every_record_once():
    records = synthetic_records()
    folds = hc18.subject_kfold(records, k=5, seed=1)
    assert len(folds) == 5
    validated = [record.filename for _, validation in folds for record in validation]
    assert sorted(validated) == sorted(record.filename for record in records)
    for train, validation in folds:
        assert not {r.subject_id for r in train} & {r.subject_id for r in validation}
        assert len({r.subject_id for r in validation}) == 8
    assert hc18.subject_kfold(records, k=5, seed=1) == folds
    with pytest.raises(InputError):
        hc18.subject_kfold(records, k=1)


def test_real_split_keeps_images_of_a_subject_together(training):
    train, test = hc18.split_by_subject(training, test_fraction=0.2, seed=0)
    side = {record.filename: "train" for record in train} | {record.filename: "test" for record in test}
    assert side["010_HC.png"] == side["010_2HC.png"]
    assert side["014_HC.png"] == side["014_2HC.png"] == side["014_3HC.png"]
    assert not {r.subject_id for r in train} & {r.subject_id for r in test}
    assert len({r.subject_id for r in test}) == round(0.2 * 645)
