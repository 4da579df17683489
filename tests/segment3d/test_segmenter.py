"""``fetalbiometry segment`` and the Segmenter: the label on exactly the input's grid, bad input refused.

The network weights here are the bundle's network freshly initialised and saved to a file, so
these tests check the plumbing (geometry, checksums, errors), not accuracy.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from fetalbiometry.data.synthetic import make_head_volume
from fetalbiometry.errors import InputError, require_bool
from fetalbiometry.metrics import label_volume_ml
from fetalbiometry.segment3d.segmenter import Segmenter, load_bundle_model
from fetalbiometry.weights import cpu_has_bfloat16_units, load_weights, sha256_of

OBLIQUE = (0.8, -0.6, 0.0, 0.6, 0.8, 0.0, 0.0, 0.0, 1.0)


def _volume(path: Path, shape=(24, 28, 32), spacing=(1.5, 1.2, 2.0)) -> Path:
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.uniform(0, 255, shape).astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin((-12.0, 7.5, 30.0))
    image.SetDirection(OBLIQUE)
    sitk.WriteImage(image, str(path))
    return path


def _segment(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fetalbiometry.cli", "segment", *args], capture_output=True, encoding="utf-8", timeout=300
    )


def test_label_lands_on_the_input_grid(tmp_path, random_model):
    image_path = _volume(tmp_path / "volume.nrrd")
    output = tmp_path / "label.nii.gz"
    process = _segment(str(image_path), str(output), "--model", str(random_model), "--device", "cpu")
    assert process.returncode == 0, process.stderr
    assert "head volume:" in process.stdout
    image, label = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(output))
    assert label.GetSize() == image.GetSize()
    np.testing.assert_allclose(label.GetSpacing(), image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(label.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(label.GetDirection(), image.GetDirection(), atol=1e-5)
    assert set(np.unique(sitk.GetArrayFromImage(label))) <= {0, 1}


@pytest.mark.parametrize(
    "make_input, expected",
    [
        (lambda d: _write(d / "flat.nii.gz", np.zeros((20, 20), np.float32)), "3d"),
        (lambda d: _write(d / "four.nii.gz", np.zeros((2, 8, 8, 8), np.float32)), "4d"),
        (lambda d: _write(d / "nan.nii.gz", _with_nan(np.ones((8, 8, 8), np.float32))), "nan"),
        (lambda d: _text(d / "notes.nii.gz"), "notes.nii.gz"),
        (lambda d: d / "absent.nii.gz", "not found"),
    ],
)
def test_bad_input_one_line_no_output(tmp_path, random_model, make_input, expected):
    bad = make_input(tmp_path)
    output = tmp_path / "out" / "label.nii.gz"
    process = _segment(str(bad), str(output), "--model", str(random_model))
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in process.stderr, process.stderr
    assert expected in lines[0].lower()
    assert not output.exists()


def test_missing_model_file(tmp_path):
    image_path = _volume(tmp_path / "volume.nii.gz")
    output = tmp_path / "label.nii.gz"
    process = _segment(str(image_path), str(output), "--model", str(tmp_path / "nowhere.pt"))
    assert process.returncode == 1
    assert "model file not found" in process.stderr and len(process.stderr.strip().splitlines()) == 1
    assert not output.exists()


def test_refuses_to_overwrite_its_input(tmp_path, random_model):
    image_path = _volume(tmp_path / "volume.nii.gz")
    before = image_path.read_bytes()
    process = _segment(str(image_path), str(image_path), "--model", str(random_model))
    assert process.returncode == 1 and "input" in process.stderr
    assert image_path.read_bytes() == before


def test_checksum_mismatch_is_refused(random_model):
    network = load_bundle_model().network
    with pytest.raises(InputError, match="SHA-256"):
        load_weights(network, random_model, checksum="0" * 64)
    load_weights(network, random_model, checksum=sha256_of(random_model))  # the right checksum loads


def test_segmenter_on_a_phantom_keeps_geometry(random_model):
    from fetalbiometry.data.synthetic import make_head_volume

    phantom = make_head_volume(seed=1, shape=(32, 40, 48), spacing=(3.0, 2.5, 2.0))
    label = Segmenter.from_bundle(random_model, device="cpu").segment(phantom.image)
    assert label.GetSize() == phantom.image.GetSize()
    assert label.GetSpacing() == phantom.image.GetSpacing()
    assert label.GetDirection() == phantom.image.GetDirection()


def _write(path: Path, array: np.ndarray) -> Path:
    image = (
        sitk.JoinSeries([sitk.GetImageFromArray(v) for v in array]) if array.ndim == 4 else sitk.GetImageFromArray(array)
    )
    sitk.WriteImage(image, str(path))
    return path


def _with_nan(array: np.ndarray) -> np.ndarray:
    array[3, 4, 5] = np.nan
    return array


def _text(path: Path) -> Path:
    path.write_text("these are not voxels\n")
    return path


def _two_blob_scores(network_input: torch.Tensor) -> torch.Tensor:
    """Class probabilities (2, *S) with a large and a small detached head blob."""
    foreground = torch.zeros(network_input.shape[1:])
    foreground[2:10, 2:10, 2:10] = 1.0
    foreground[14:17, 14:17, 14:17] = 1.0
    return torch.stack((1.0 - foreground, foreground))


@pytest.mark.parametrize("keep_largest_component, components", [(True, 1), (False, 2)])
def test_only_the_largest_head_region_is_kept(random_model, monkeypatch, keep_largest_component, components):
    segmenter = Segmenter.from_bundle(random_model, device="cpu")
    segmenter.model = replace(segmenter.model, keep_largest_component=keep_largest_component)
    monkeypatch.setattr(segmenter, "_class_scores", _two_blob_scores)
    # 32³ voxels at the bundle's target spacing: the network input is the same 32³ grid
    image = sitk.GetImageFromArray(np.random.default_rng(0).uniform(0, 255, (32, 32, 32)).astype(np.float32))
    image.SetSpacing(segmenter.model.target_spacing)
    label = sitk.GetArrayFromImage(segmenter.segment(image))
    assert ndimage.label(label)[1] == components
    assert label.sum() > 0


def test_a_flag_given_as_text_is_refused():
    assert require_bool("keep_largest_component", False) is False
    with pytest.raises(InputError, match="keep_largest_component must be True or False; got 'false'"):
        require_bool("keep_largest_component", "false")  # what `--keep_largest_component false` passes


@pytest.mark.parametrize(("voxels", "reason"), [(0, "empty segmentation"), (10, "implausible head volume 0.3 mL")])
def test_segment_reports_no_number_for_an_empty_or_implausible_head(
    random_model, monkeypatch, tmp_path, capsys, voxels, reason
):
    from fetalbiometry.cli import main
    from fetalbiometry.errors import NO_RESULT_EXIT_CODE
    from fetalbiometry.io import label_like

    def few_voxels(self, image: sitk.Image) -> sitk.Image:
        array = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
        array.reshape(-1)[:voxels] = 1
        return label_like(array, image)

    monkeypatch.setattr(Segmenter, "segment", few_voxels)
    volume = _volume(tmp_path / "volume.nii.gz", shape=(40, 40, 40), spacing=(3.0, 3.0, 3.0))
    code = main(["segment", str(volume), str(tmp_path / "label.nii.gz"), "--model", str(random_model), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == NO_RESULT_EXIT_CODE == 3
    assert f"head volume: not reported: {reason}" in printed
    assert "working spacing: 3.00 x 3.00 x 3.00 mm (this volume: 3.00 x 3.00 x 3.00 mm)" in printed
    assert (tmp_path / "label.nii.gz").is_file()  # the label is kept for the user to look at


def test_segment_warns_about_a_spacing_that_looks_missing(random_model, tmp_path, capsys):
    from fetalbiometry.cli import main

    volume = _volume(tmp_path / "volume.nii.gz", shape=(30, 30, 30), spacing=(1.0, 1.0, 1.0))
    main(["segment", str(volume), str(tmp_path / "label.nii.gz"), "--model", str(random_model), "--device", "cpu"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fetalbiometry: warning:")]
    assert len(warnings) == 4  # exactly 1 mm (no spacing stored?), and a 30 mm field of view on each axis
    assert "exactly 1 mm" in warnings[0] and all("field of view" in line for line in warnings[1:])


@pytest.mark.skipif(
    not cpu_has_bfloat16_units(),
    reason="bfloat16 is emulated on this CPU (no AMX tiles): over ten minutes for one volume, and never the default here",
)
def test_bfloat16_on_the_cpu_gives_the_float32_head():
    """The shipped model in bfloat16 (the default on CPUs with bfloat16 units) and in float32."""
    image = make_head_volume(seed=3, shape=(64, 64, 64), spacing=(2.0, 2.0, 2.0), ga_weeks=24.0).image
    segmenter = Segmenter.from_bundle(device="cpu")
    volumes = {}
    for bfloat16 in (False, True):
        segmenter.bfloat16 = bfloat16
        volumes[bfloat16] = label_volume_ml(segmenter.segment(image))
    assert volumes[False] > 50.0  # a head was found
    assert volumes[True] == pytest.approx(volumes[False], rel=0.01)
