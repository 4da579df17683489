"""The ``fetalbiometry`` command line: JSON keys, refusals, one-line errors, no partial output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fetalbiometry import cli
from fetalbiometry.cli import main

EVALUATE_KEYS = {"dice", "jaccard", "conformity", "adb_mm", "hdb_mm", "volume_pred_ml", "volume_ref_ml"}


def _label(array: np.ndarray, spacing=(0.5, 0.8, 1.2), origin=(10.0, -5.0, 3.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _box_labels(tmp_path: Path) -> tuple[Path, Path]:
    """Reference: a 10x10x10 box; prediction: the same box shifted by 2 voxels along x (array axis 2)."""
    ref = np.zeros((20, 20, 20), np.uint8)
    ref[5:15, 5:15, 5:15] = 1
    pred = np.roll(ref, 2, axis=2)
    ref_path, pred_path = tmp_path / "ref.nii.gz", tmp_path / "pred.nii.gz"
    sitk.WriteImage(_label(ref), str(ref_path))
    sitk.WriteImage(_label(pred), str(pred_path))
    return pred_path, ref_path


def test_evaluate_json_keys_and_values(tmp_path, capsys):
    pred, ref = _box_labels(tmp_path)
    assert main(["evaluate", str(pred), str(ref), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == EVALUATE_KEYS
    # overlap 8 of 10 columns along x: DSC = Jaccard-derived by hand = 2*800/2000
    assert result["dice"] == pytest.approx(0.8)
    assert result["jaccard"] == pytest.approx(800 / 1200)
    assert result["conformity"] == pytest.approx((3 * 0.8 - 2) / 0.8)
    # a shift of 2 voxels along x with x spacing 0.5 mm: Hdb = 1.0 mm
    assert result["hdb_mm"] == pytest.approx(1.0)
    assert result["volume_ref_ml"] == pytest.approx(1000 * 0.5 * 0.8 * 1.2 / 1000)


def test_evaluate_refuses_different_grids_naming_both(tmp_path, capsys):
    pred, ref = _box_labels(tmp_path)
    moved = sitk.ReadImage(str(pred))
    moved.SetOrigin((0.0, 0.0, 0.0))
    moved_path = tmp_path / "moved.nii.gz"
    sitk.WriteImage(moved, str(moved_path))
    assert main(["evaluate", str(moved_path), str(ref)]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "moved.nii.gz" in error and "ref.nii.gz" in error and "origin" in error


def test_volume_in_ml(tmp_path, capsys):
    _, ref = _box_labels(tmp_path)
    assert main(["volume", str(ref), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["volume_ml"] == pytest.approx(0.48)


def test_ga_json_keys(capsys):
    assert main(["ga", "--hc", "175", "--ac", "150", "--fl", "32", "--ga-weeks", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"ga_weeks_hadlock_hc", "ga_weeks_intergrowth_hc", "efw_g_hadlock", "centile_hc"} <= set(report)
    # Hadlock 1984 by hand: 8.96 + 0.540*17.5 + 0.0003*17.5**3 = 20.018 weeks
    assert report["ga_weeks_hadlock_hc"] == pytest.approx(20.018, abs=1e-3)
    assert 0.0 < report["centile_hc"] < 100.0


def test_ga_without_ac_fl_has_no_efw(capsys):
    assert main(["ga", "--hc", "250", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "efw_g_hadlock" not in report and "centile_hc" not in report


def test_synth_writes_readable_cohort(tmp_path, capsys):
    out = tmp_path / "cohort"
    assert main(["synth", "3d", str(out), "-n", "1", "--seed", "3", "--rescans", "2"]) == 0
    labels = sorted((out / "labelsTr").glob("*.nii.gz"))
    assert len(labels) == 2
    assert (out / "manifest.csv").is_file()
    capsys.readouterr()
    assert main(["volume", str(labels[0]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["volume_ml"] > 10.0


def test_synth_writes_planes_with_either_image_model_and_the_same_truth(tmp_path):
    for model in ("polar", "cartesian"):
        assert main(["synth", "2d", str(tmp_path / model), "-n", "1", "--image-model", model]) == 0
    images = [sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / m / "imagesTr" / "head-0000.nii.gz"))) for m in ("polar", "cartesian")]
    labels = [sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / m / "labelsTr" / "head-0000.nii.gz"))) for m in ("polar", "cartesian")]
    np.testing.assert_array_equal(labels[0], labels[1])  # the image model changes the look, not the truth
    assert not np.array_equal(images[0], images[1])


@pytest.mark.parametrize(
    "make_input, expected",
    [
        (lambda d: d / "missing.nii.gz", "not found"),
        (lambda d: _write_bytes(d / "corrupt.nii.gz", b"not an image at all"), "corrupt.nii.gz"),
        (lambda d: _write_image(d / "nan.nii.gz", np.pad(np.full((1, 1, 1), np.nan, np.float32), 2)), "NaN"),
    ],
)
def test_bad_input_gives_one_line_and_exit_1(tmp_path, make_input, expected):
    """Run as a real process: exit status 1, one line on stderr, no traceback."""
    _, ref = _box_labels(tmp_path)
    bad = make_input(tmp_path)
    process = subprocess.run(
        [sys.executable, "-m", "fetalbiometry.cli", "evaluate", str(bad), str(ref)],
        capture_output=True,
        encoding="utf-8",
        timeout=120,
    )
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in process.stderr
    assert expected.lower() in lines[0].lower()


def test_volume_refuses_4d(tmp_path, capsys):
    path = _write_image(tmp_path / "four.nii.gz", np.ones((2, 3, 4, 5), np.uint8))
    assert main(["volume", str(path)]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _write_image(path: Path, array: np.ndarray) -> Path:
    if array.ndim == 4:
        image = sitk.JoinSeries([sitk.GetImageFromArray(volume) for volume in array])
    else:
        image = sitk.GetImageFromArray(array)
    sitk.WriteImage(image, str(path))
    return path


def test_study_subcommand_reports_a_missing_manifest(tmp_path, capsys):
    assert main(["study", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "study")]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "absent.csv" in error


def test_each_command_has_one_documented_parser_function() -> None:
    commands = next(a for a in cli.build_parser()._actions if a.dest == "command").choices
    assert len(cli.COMMAND_PARSERS) == len(commands)
    for add_parser in cli.COMMAND_PARSERS:
        assert add_parser.__doc__ and add_parser.__doc__.startswith("``")
        assert add_parser.__name__ == f"add_{add_parser.__doc__[2:].split()[0]}_parser"


def test_help_summarises_commands_exit_status_and_examples(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    commands = next(a for a in cli.build_parser()._actions if a.dest == "command").choices
    assert all(f"    {name} " in text for name in commands)
    assert "exit status:" in text and "examples:" in text
    assert all(f"fetalbiometry {line.split()[1]}" in text for line in cli.EXAMPLES.splitlines()[1:])
