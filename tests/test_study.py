"""Tests of the volumetric study (fetalbiometry.study): statistics, failures, resume, torchrun."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fetalbiometry.errors import InputError
from fetalbiometry.io import label_like, write_image
from fetalbiometry.study import main, run_study
from fetalbiometry.study.distributed import Shard
from fetalbiometry.study.manifest import read_manifest
from fetalbiometry.study.statistics import bland_altman, mean_and_sd, pearson_r, spread_summary, subject_spread

SPACING_MM = (10.0, 10.0, 10.0)  # 1 mL voxels: a cube of k voxels a side holds k^3 mL, a plausible head
GRID = (12, 12, 12)


# --- helpers --------------------------------------------------------------------------------


class ThresholdSegmenter:
    """Labels voxels brighter than 0.5; counts its calls; optionally stops at call ``interrupt_at``."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls = 0
        self.interrupt_at = interrupt_at

    def segment(self, image: sitk.Image) -> sitk.Image:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return label_like((sitk.GetArrayFromImage(image) > 0.5).astype(np.uint8), image)


def _cube_volume(path: Path, side: int, spacing=SPACING_MM) -> Path:
    """A GRID volume of zeros with a bright cube of ``side`` voxels; returns ``path``."""
    array = np.zeros(GRID, dtype=np.float32)
    start = (GRID[0] - side) // 2
    array[start : start + side, start : start + side, start : start + side] = 1.0
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    write_image(image, path)
    return path


def _cube_label(path: Path, side: int, spacing=SPACING_MM) -> Path:
    image = sitk.ReadImage(str(_cube_volume(path, side, spacing)))
    write_image(sitk.Cast(image > 0.5, sitk.sitkUInt8), path)
    return path


def _write_manifest(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """Two subjects x 3 rescans (cubes of 4, 5, 6 and 3, 3, 4 voxels), expert volumes, one reference."""
    data = tmp_path / "data"
    data.mkdir()
    sides = {"s1": (4, 5, 6), "s2": (3, 3, 4)}
    rows = []
    for subject, subject_sides in sides.items():
        for scan, side in enumerate(subject_sides):
            name = f"{subject}_scan{scan}.nii.gz"
            _cube_volume(data / name, side)
            rows.append([subject, f"data/{name}", "", round(side**3 + 12.5 * (scan - 1), 6)])
    _cube_label(data / "s1_ref.nii.gz", 4)
    rows[0][2] = "data/s1_ref.nii.gz"
    return _write_manifest(tmp_path / "manifest.csv", ["subject", "image", "reference", "expert_volume_ml"], rows)


# --- statistics against hand-computed values -----------------------------------------------


def test_bland_altman_and_pearson_hand_computed():
    ours, expert = [10.0, 20.0, 30.0, 40.0], [12.0, 18.0, 33.0, 41.0]
    # differences ours - expert: -2, 2, -3, -1 -> mean -1, SS about the mean 14, sd = sqrt(14/3)
    agreement = bland_altman(ours, expert)
    assert agreement.n == 4
    assert agreement.bias == pytest.approx(-1.0)
    assert agreement.sd == pytest.approx(2.160246899469287)
    assert agreement.lower == pytest.approx(-5.234083922959802)
    assert agreement.upper == pytest.approx(3.234083922959802)
    # Sxy = 510, Sxx = 500, Syy = 534 -> r = 510 / sqrt(500 * 534)
    assert pearson_r(ours, expert) == pytest.approx(0.986994074638134)
    assert pearson_r([1.0, 2.0], [3.0, 3.0]) is None  # constant side: undefined
    assert bland_altman([1.0], [2.0]) is None


def test_per_subject_sd_hand_computed():
    subjects = ["A", "B", "A", "C", "B", "A", "C", "B", "C", "D"]
    volumes = [100.0, 50.0, 110.0, 200.0, 52.0, 120.0, 230.0, 54.0, 260.0, 70.0]
    spreads = {s.subject: s for s in subject_spread(subjects, volumes)}
    assert [s for s in spreads] == ["A", "B", "C", "D"]
    assert (spreads["A"].n, spreads["A"].mean, spreads["A"].sd) == (3, 110.0, pytest.approx(10.0))
    assert spreads["B"].sd == pytest.approx(2.0)  # ddof=1: sqrt((4 + 0 + 4) / 2)
    assert spreads["C"].sd == pytest.approx(30.0)
    assert spreads["D"].sd is None  # one scan: no SD, left out of the summary
    summary = spread_summary(list(spreads.values()))
    assert summary.n_subjects == 3
    assert summary.mean_sd == pytest.approx(14.0)
    assert (summary.min_sd, summary.max_sd) == (pytest.approx(2.0), pytest.approx(30.0))
    assert mean_and_sd([0.9, 0.95, 1.0]) == {"n": 3, "mean": pytest.approx(0.95), "sd": pytest.approx(0.05)}


def test_shard_takes_every_nth_row():
    rows = list(range(7))
    assert Shard(rank=0, world_size=2).take(rows) == [0, 2, 4, 6]
    assert Shard(rank=1, world_size=2).take(rows) == [1, 3, 5]
    assert Shard().take(rows) == rows


# --- manifest -------------------------------------------------------------------------------


def test_manifest_resolves_paths_and_rejects_bad_columns(tmp_path: Path):
    good = _write_manifest(tmp_path / "m.csv", ["subject", "image"], [["s1", "a/b.nii.gz"]])
    (row,) = read_manifest(good)
    assert row.image_path == tmp_path / "a" / "b.nii.gz"
    assert row.reference_path is None and row.expert_volume_ml is None

    missing = _write_manifest(tmp_path / "missing.csv", ["subject", "img"], [["s1", "x.nii.gz"]])
    with pytest.raises(InputError, match="lacks column.*image") as info:
        read_manifest(missing)
    assert "\n" not in str(info.value)

    bad_number = _write_manifest(tmp_path / "n.csv", ["subject", "image", "expert_volume_ml"], [["s1", "x", "big"]])
    with pytest.raises(InputError, match="not a number"):
        read_manifest(bad_number)


def test_command_prints_one_line_for_a_bad_manifest(tmp_path: Path, capsys):
    missing = _write_manifest(tmp_path / "m.csv", ["image"], [["x.nii.gz"]])
    assert main([str(missing), "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "subject" in error and "\n" not in error


# --- a study end to end (injected segmenter) ------------------------------------------------


def test_study_outputs_and_hand_computed_volumes(cohort: Path, tmp_path: Path):
    out = tmp_path / "out"
    summary = run_study(cohort, out, segmenter=ThresholdSegmenter())
    rows = _read_csv(out / "volumes.csv")
    assert [r["status"] for r in rows] == ["ok"] * 6
    volumes = [float(r["volume_ml"]) for r in rows]
    assert volumes == pytest.approx([64.0, 125.0, 216.0, 27.0, 27.0, 64.0])  # side^3 * 1 mL
    assert float(rows[0]["dice"]) == pytest.approx(1.0) and float(rows[0]["hdb_mm"]) == pytest.approx(0.0)
    assert rows[1]["dice"] == ""  # no reference label for that row
    for row in rows:
        assert (out / row["label"]).is_file()
    assert rows[0]["label"] == "labels/0000_s1_s1_scan0.nii.gz"

    subjects = {r["subject"]: r for r in _read_csv(out / "subjects.csv")}
    # s1: 64, 125, 216 -> mean 135, sample SD 76.49
    assert float(subjects["s1"]["mean_volume_ml"]) == pytest.approx(135.0)
    assert float(subjects["s1"]["sd_volume_ml"]) == pytest.approx(76.49182962905255)
    # s2: 27, 27, 64 -> mean 39.333, sample SD sqrt((2 * 12.333^2 + 24.667^2) / 2)
    assert float(subjects["s2"]["sd_volume_ml"]) == pytest.approx(21.361959960016154)

    document = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert document["counts"] == {"volumes": 6, "ok": 6, "failed": 0, "subjects": 2}
    assert document["reproducibility"]["mean_sd_ml"] == pytest.approx((76.49182962905255 + 21.361959960016154) / 2)
    assert document["reproducibility"]["max_sd_ml"] == pytest.approx(76.49182962905255)
    # expert = ours + 0.1 * (scan - 1): differences ours - expert are 0.1, 0, -0.1 per subject
    assert document["expert_agreement"]["bias_ml"] == pytest.approx(0.0, abs=1e-9)
    assert document["expert_agreement"]["sd_of_differences_ml"] == pytest.approx(125.0 * np.sqrt(0.04 / 5))
    assert document["reference_metrics"]["dice"] == {"n": 1, "mean": pytest.approx(1.0), "sd": None}
    assert summary.n_ok == 6 and summary.expert_pearson_r > 0.9

    for figure in ("bland_altman.png", "correlation.png", "subject_volumes.png", "montage.png"):
        assert (out / "figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.html").read_text(encoding="utf-8")
    assert report.count("data:image/png;base64,") == 4 and "</html>" in report


def test_corrupt_volume_and_bad_reference_fail_alone(cohort: Path, tmp_path: Path):
    data = cohort.parent / "data"
    (data / "broken.nii.gz").write_bytes(b"this is not an image")
    _cube_label(data / "other_grid.nii.gz", 4, spacing=(1.0, 1.0, 1.0))
    with open(cohort, "a", newline="") as handle:
        csv.writer(handle).writerows(
            [["<b>&s3", "data/broken.nii.gz", "", ""], ["s3", "data/s2_scan0.nii.gz", "data/other_grid.nii.gz", ""]]
        )
    out = tmp_path / "out"
    summary = run_study(cohort, out, segmenter=ThresholdSegmenter())

    rows = _read_csv(out / "volumes.csv")
    assert [r["status"] for r in rows] == ["ok"] * 6 + ["failed", "failed"]
    assert "InputError" in rows[6]["error"] and "broken.nii.gz" in rows[6]["error"]
    assert rows[6]["label"] == "" and rows[6]["volume_ml"] == ""
    assert "GeometryMismatchError" in rows[7]["error"] and "spacing" in rows[7]["error"]
    assert float(rows[7]["volume_ml"]) == pytest.approx(27.0)  # measured before the comparison failed
    assert all((out / r["label"]).is_file() for r in rows[:6])
    assert (summary.n_ok, summary.n_failed, summary.n_subjects) == (6, 2, 2)
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "&lt;b&gt;&amp;s3" in report and "<b>&s3" not in report
    assert report.count('class="failed"') == 2


class ConstantSegmenter:
    """Labels a fixed block of ``voxels`` voxels (0: nothing) whatever the image."""

    def __init__(self, voxels: int) -> None:
        self.voxels = voxels

    def segment(self, image: sitk.Image) -> sitk.Image:
        array = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=np.uint8)
        array.reshape(-1)[: self.voxels] = 1
        return label_like(array, image)


@pytest.mark.parametrize(("voxels", "reason"), [(0, "empty segmentation"), (2, "implausible head volume 2.0 mL")])
def test_an_empty_or_implausible_head_is_flagged_not_counted(cohort: Path, tmp_path: Path, voxels, reason):
    out = tmp_path / "out"
    summary = run_study(cohort, out, segmenter=ConstantSegmenter(voxels))
    rows = _read_csv(out / "volumes.csv")
    assert {r["status"] for r in rows} == {"flagged"}
    assert all(reason in r["error"] and r["volume_ml"] == "" for r in rows)
    assert all((out / r["label"]).is_file() for r in rows)  # the label is kept for the user to look at
    assert summary.n_ok == 0 and summary.reproducibility.mean_sd is None


def test_resume_does_not_redo_finished_volumes(cohort: Path, tmp_path: Path):
    out = tmp_path / "out"
    interrupted = ThresholdSegmenter(interrupt_at=4)
    with pytest.raises(KeyboardInterrupt):
        run_study(cohort, out, segmenter=interrupted)
    checkpoint = _read_csv(out / "volumes.csv")  # complete file holding the 3 finished volumes
    assert [r["row"] for r in checkpoint] == ["0", "1", "2"]
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no partial file behind

    resumed = ThresholdSegmenter()
    run_study(cohort, out, segmenter=resumed, resume=True)
    assert resumed.calls == 3  # only rows 3-5

    again = ThresholdSegmenter()
    run_study(cohort, out, segmenter=again, resume=True)
    assert again.calls == 0

    (out / _read_csv(out / "volumes.csv")[1]["label"]).unlink()  # a lost label is redone
    third = ThresholdSegmenter()
    run_study(cohort, out, segmenter=third, resume=True)
    assert third.calls == 1

    fresh = tmp_path / "fresh"
    run_study(cohort, fresh, segmenter=ThresholdSegmenter())
    assert (out / "volumes.csv").read_text(encoding="utf-8") == (fresh / "volumes.csv").read_text(encoding="utf-8")
    assert (out / "summary.json").read_text(encoding="utf-8") == (fresh / "summary.json").read_text(encoding="utf-8")


# --- torchrun: 2 processes (gloo, CPU) equal 1 process, with the real Segmenter ---------------


def _inference_available() -> bool:
    try:
        from fetalbiometry.segment3d.segmenter import Segmenter  # noqa: F401
    except ImportError:
        return False
    return True


TORCHRUN = Path(sys.executable).parent / "torchrun"


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """Weights for the bundle's network, seeded: ``--model`` needs no shipped model."""
    import torch

    from fetalbiometry.segment3d.segmenter import load_bundle_model

    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    torch.save(load_bundle_model().network.state_dict(), path)
    return path


@pytest.mark.slow
@pytest.mark.skipif(not _inference_available(), reason="inference not yet available")
@pytest.mark.skipif(not TORCHRUN.is_file(), reason="no torchrun beside the interpreter")
def test_torchrun_two_processes_equal_one_process(cohort: Path, model_file: Path, tmp_path: Path):
    import torch

    single, sharded = tmp_path / "single", tmp_path / "sharded"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun worker (OMP_NUM_THREADS=1): same float arithmetic
    try:
        run_study(cohort, single, model_path=model_file, device="cpu")
    finally:
        torch.set_num_threads(threads)
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "fetalbiometry.study"]
    command += [str(cohort), "--out", str(sharded), "--model", str(model_file), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, encoding="utf-8", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _read_csv(sharded / "volumes.csv")
    assert len(rows) == 6
    # seeded random weights may label nothing or no plausible head (flagged); any failure is a bug
    assert all(row["status"] in ("ok", "flagged") for row in rows), rows
    for name in ("volumes.csv", "subjects.csv", "summary.json"):
        assert (sharded / name).read_text(encoding="utf-8") == (single / name).read_text(encoding="utf-8"), name
    assert not list(sharded.glob("volumes.rank*.csv"))  # per-rank checkpoints merged and removed
    assert "volumes:" in result.stdout  # rank 0 printed the summary
