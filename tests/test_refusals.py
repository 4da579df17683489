"""The refusal catalogue of issue 26 (docs/refusals.md): no silently wrong number, no lost file,
no traceback.

Each refusal asserts the exit status, exactly one line on stderr (``fetalbiometry: error: ...``),
no partial output (nor a staging folder left behind) and every input byte-identical afterwards.
Images are tiny; the commands that need a network fail before it loads, or run a stand-in
(2D: a network that segments bright pixels; 3D: the bundle's network with random weights).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import cv2
import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from fetalbiometry.biometry.ellipse import Ellipse, ellipse_to_mask
from fetalbiometry.cli import main
from fetalbiometry.io import write_image
from fetalbiometry.planes2d import predictor as plane_model
from fetalbiometry.errors import NO_RESULT_EXIT_CODE as NO_MEASUREMENT_EXIT_CODE
from fetalbiometry.planes2d.predictor import PlanePredictor
from fetalbiometry.study import run_study
from torch import nn

SPATIAL_SIZE = (128, 192)
HEAD = Ellipse(cx=120.0, cy=80.0, a=60.0, b=45.0, theta=0.3)  # a 160 x 240 frame, HC ~ 83 mm at 0.25 mm


# --- helpers --------------------------------------------------------------------------------


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path] if path.exists() else []


def _hashes(paths: Iterable[Path]) -> dict[str, str]:
    """SHA-256 of every file of ``paths`` (folders: every file inside)."""
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for p in paths for f in _files(Path(p))}


def _strict_json(text: str) -> object:
    def reject(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=reject)


def _run(argv: list[str], capfd) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return status, out, err


def refused(
    argv: list[object],
    capfd,
    inputs: Iterable[Path],
    outputs: Iterable[Path] = (),
    expect: str = "",
    status: int = 1,
) -> str:
    """Run a command that must refuse: exit ``status``, one stderr line containing ``expect``,
    no output written (pre-existing outputs unchanged), every input unchanged. Returns the line."""
    inputs, outputs = list(inputs), list(outputs)
    before = _hashes(inputs)
    existing = _hashes(outputs)
    code, _, err = _run([str(a) for a in argv], capfd)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, err
    assert len(lines) == 1, err
    assert lines[0].startswith("fetalbiometry: error: ") and "Traceback" not in err
    assert expect.lower() in lines[0].lower(), lines[0]
    assert _hashes(inputs) == before, "an input was changed"
    assert _hashes(outputs) == existing, "an output was written"
    for output in outputs:
        if output.parent.exists():
            assert not list(output.parent.glob(f".{output.name}.*.tmp")), "a staging folder was left"
    return lines[0]


def _label_array(shape=(12, 12, 12), dtype=np.int16) -> np.ndarray:
    array = np.zeros(shape, dtype)
    array[3:9, 2:10, 4:11] = 1
    return array


def _write(path: Path, array: np.ndarray, compress: bool = False, spacing=(1.0, 1.0, 1.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[: array.ndim])
    sitk.WriteImage(image, str(path), compress)
    return path


def _truncate(path: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _noise(shape=(12, 12, 12), dtype=np.int16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 3, shape).astype(dtype)


def _volume(path: Path) -> Path:
    """A 16³ volume of 4 mm voxels: a 64 mm field of view, which raises no geometry warning."""
    return _write(path, _noise(shape=(16, 16, 16), dtype=np.float32), spacing=(4.0, 4.0, 4.0))


# --- table 1: wrong numbers with exit 0 ------------------------------------------------------


def _truncated_nifti(folder: Path, suffix: str, dtype) -> Path:
    return _truncate(_write(folder / f"label{suffix}", _noise(dtype=dtype)))


def _truncated_itk(folder: Path, name: str, compress: bool) -> Path:
    """A MetaImage or NRRD whose voxel data is cut: the file itself, or a .mhd's data file."""
    path = _write(folder / name, _noise(), compress)
    if name.endswith(".mhd"):
        data = next(p for p in folder.iterdir() if p.suffix in (".raw", ".zraw"))
        _truncate(data, 0.5)
        return path
    return _truncate(path)


TRUNCATED = {
    "nii.gz int16": lambda d: _truncated_nifti(d, ".nii.gz", np.int16),
    "nii int16": lambda d: _truncated_nifti(d, ".nii", np.int16),
    "nii.gz uint8": lambda d: _truncated_nifti(d, ".nii.gz", np.uint8),
    "nii.gz float32": lambda d: _truncated_nifti(d, ".nii.gz", np.float32),
    "nii float32": lambda d: _truncated_nifti(d, ".nii", np.float32),
    "nrrd raw": lambda d: _truncated_itk(d, "label.nrrd", False),
    "nrrd gzip": lambda d: _truncated_itk(d, "label.nrrd", True),
    "mha raw": lambda d: _truncated_itk(d, "label.mha", False),
    "mha zlib": lambda d: _truncated_itk(d, "label.mha", True),
    "mhd + raw": lambda d: _truncated_itk(d, "label.mhd", False),
    "mhd + zraw": lambda d: _truncated_itk(d, "label.mhd", True),
}


@pytest.mark.parametrize("kind", TRUNCATED)
def test_truncated_image_is_refused_by_volume(tmp_path, capfd, kind):
    path = TRUNCATED[kind](tmp_path)
    refused(["volume", path], capfd, inputs=[tmp_path], expect="truncated")


@pytest.mark.parametrize("kind", ["nii.gz int16", "mha zlib", "nrrd raw"])
def test_truncated_volume_is_refused_by_segment_before_the_model(tmp_path, capfd, kind, no_model_loading):
    path = TRUNCATED[kind](tmp_path)
    output = tmp_path / "out" / "head.nii.gz"
    refused(
        ["segment", path, output],
        capfd,
        inputs=[tmp_path / p.name for p in tmp_path.iterdir()],
        outputs=[output],
        expect="truncated",
    )


def test_truncated_dicom_slice_is_refused(tmp_path, capfd):
    """GDCM skips a slice it cannot read: the series would silently lose it."""
    series = tmp_path / "series"
    write_image(sitk.GetImageFromArray(_noise(shape=(6, 12, 12))), series)
    _truncate(sorted(series.iterdir())[2], 0.5)
    refused(["volume", series], capfd, inputs=[series], expect="slice_0002.dcm is not a readable slice")


def test_truncated_png_is_refused_by_measure(tmp_path, capfd, bright_network):
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8))
    _truncate(frame, 0.5)
    refused(["measure", frame, "--pixel-size", "0.2"], capfd, inputs=[frame], expect="cannot read")


def test_two_copies_of_a_truncated_label_are_both_refused(tmp_path, capfd):
    """The issue: byte-identical copies under two names gave 80.3 and 85.7 mL."""
    first = _truncated_nifti(tmp_path, ".nii.gz", np.int16)
    second = tmp_path / "copy.nii.gz"
    second.write_bytes(first.read_bytes())
    for path in (first, second):
        refused(["volume", path], capfd, inputs=[first, second], expect="truncated")


def _header_only_nifti(path: Path, shape: tuple[int, ...]) -> Path:
    header = nibabel.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    with open(path.with_suffix(""), "wb") if path.suffix == ".gz" else open(path, "wb") as handle:
        header.write_to(handle)
    if path.suffix == ".gz":
        raw = path.with_suffix("")
        path.write_bytes(gzip.compress(raw.read_bytes()))
        raw.unlink()
    return path


@pytest.mark.parametrize(
    "name, shape, expect",
    [
        ("claims.nii", (1000, 1000, 1000), "truncated"),
        ("claims.nii.gz", (1000, 1000, 1000), "truncated"),
        ("absurd.nii", (4000, 4000, 4000), "before allocating"),
    ],
)
def test_header_only_nifti_is_refused_without_allocating(tmp_path, capfd, name, shape, expect):
    path = _header_only_nifti(tmp_path / name, shape)
    refused(["volume", path], capfd, inputs=[path], expect=expect)


@pytest.mark.parametrize(
    "name, header",
    [
        (
            "claims.mha",
            "ObjectType = Image\nNDims = 3\nDimSize = 1000 1000 1000\nElementType = MET_SHORT\n"  # noqa: ISC004
            "ElementDataFile = LOCAL\n",
        ),
        (
            "claims.nrrd",
            "NRRD0004\ntype: short\ndimension: 3\nsizes: 1000 1000 1000\nendian: little\nencoding: gzip\n\n",
        ),
    ],
)
def test_header_only_metaimage_and_nrrd_are_refused(tmp_path, capfd, name, header):
    path = tmp_path / name
    path.write_text(header, encoding="ascii")
    refused(["volume", path], capfd, inputs=[path], expect="truncated")


def _probability_map(folder: Path, name: str = "probability.nii.gz") -> Path:
    array = np.linspace(0.0, 0.9, 12 * 12 * 12, dtype=np.float32).reshape(12, 12, 12)
    return _write(folder / name, array)


def test_probability_map_is_refused_by_volume(tmp_path, capfd):
    path = _probability_map(tmp_path)
    line = refused(["volume", path], capfd, inputs=[path], expect="not a label")
    assert "0 to 0.9" in line


@pytest.mark.parametrize("which", ["pred", "ref"])
def test_probability_map_is_refused_by_evaluate(tmp_path, capfd, which):
    label = _write(tmp_path / "label.nii.gz", _label_array(dtype=np.uint8))
    probability = _probability_map(tmp_path)
    argv = ["evaluate", probability, label] if which == "pred" else ["evaluate", label, probability]
    refused(argv, capfd, inputs=[label, probability], expect="not a label")


def test_exactly_binary_float_and_multi_label_files_are_labels(tmp_path, capfd):
    binary = _write(tmp_path / "binary.nii.gz", _label_array(dtype=np.float32), spacing=(2.0, 2.0, 2.0))
    multi = _label_array(dtype=np.uint8)
    multi[3:5][multi[3:5] == 1] = 2  # "everything > 0" counts both labels
    multi_path = _write(tmp_path / "multi.nii.gz", multi, spacing=(2.0, 2.0, 2.0))
    expected = 6 * 8 * 7 * 8 / 1000
    for path in (binary, multi_path):
        code, out, _ = _run(["volume", path, "--json"], capfd)
        assert code == 0 and _strict_json(out)["volume_ml"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["--hc", "1e9"], "HC 1e+09 mm is outside the plausible range 40-450 mm"),
        (["--hc", "600"], "40-450"),
        (["--hc", "30"], "40-450"),
        (["--hc", "175", "--ac", "1e6", "--fl", "32"], "AC"),
        (["--hc", "175", "--ac", "150", "--fl", "1e6"], "FL"),
        (["--hc", "175", "--bpd", "500"], "BPD"),
        (["--hc", "inf"], "HC"),
        (["--hc", "nan", "--json"], "HC"),
    ],
)
def test_ga_refuses_implausible_biometry(capfd, argv, expect):
    refused(["ga", *argv], capfd, inputs=[], expect=expect)


@pytest.mark.parametrize("hc", ["40", "450"])
def test_ga_at_the_ends_of_the_range_is_finite_json(capfd, hc):
    code, out, _ = _run(["ga", "--hc", hc, "--ac", "450", "--fl", "5", "--bpd", "125", "--json"], capfd)
    report = _strict_json(out)
    assert code == 0 and all(math.isfinite(value) for value in report.values())
    assert report["efw_g_hadlock"] > 0


def test_evaluate_json_of_an_empty_prediction_is_strict(tmp_path, capfd):
    empty = _write(tmp_path / "empty.nii.gz", np.zeros((12, 12, 12), np.uint8))
    reference = _write(tmp_path / "ref.nii.gz", _label_array(dtype=np.uint8))
    code, out, err = _run(["evaluate", empty, reference, "--json"], capfd)
    result = _strict_json(out)
    assert code == 0 and not err.strip()
    assert result["dice"] == 0.0 and result["adb_mm"] is None and result["hdb_mm"] is None
    assert result["conformity"] is None


def _manifest(path: Path, rows: list[list[object]], header=("subject", "image", "reference")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_duplicate_manifest_row_is_refused(tmp_path, capfd):
    volume = _write(tmp_path / "scan.nii.gz", _noise(dtype=np.float32))
    manifest = _manifest(tmp_path / "manifest.csv", [["s1", "scan.nii.gz", ""], ["s1", "scan.nii.gz", ""]])
    out = tmp_path / "study"
    refused(
        ["study", manifest, "--out", out],
        capfd,
        inputs=[manifest, volume],
        outputs=[out / "volumes.csv"],
        expect="repeats row 0",
    )
    assert not out.exists()


# --- table 2: files lost ------------------------------------------------------------------------


class BrightPixels(nn.Module):
    """Segments the pixels brighter than half scale."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        foreground = 20.0 * (image - 0.5)
        return torch.cat([torch.zeros_like(foreground), foreground], dim=1)


@pytest.fixture
def bright_network(monkeypatch) -> None:
    """``measure`` and ``hc`` run a predictor around :class:`BrightPixels` instead of a trained model."""

    def load(model_path=None, network_config="mtln.json", device="auto", **overrides):
        if model_path is not None:  # the commands' model checks still apply
            from fetalbiometry.weights import read_weights

            read_weights(Path(model_path), None)
        return PlanePredictor(BrightPixels(), SPATIAL_SIZE, "cpu", plane=overrides.get("plane", "head"))

    monkeypatch.setattr(plane_model, "load_plane_predictor", load)


def _frames(folder: Path, names: Iterable[str] = ("001_HC.png", "002_HC.png"), header_extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(folder / name), ellipse_to_mask(HEAD, (160, 240)).astype(np.uint8) * 200)
    csv_path = folder / "pixel_size.csv"
    csv_path.write_text(
        f"filename,pixel size(mm){header_extra}\n"
        + "".join(f"{name},0.25{',' * header_extra.count(',')}\n" for name in names),
        encoding="utf-8",
    )
    return csv_path


def test_hc_refuses_to_write_its_csv_over_a_frame(tmp_path, capfd, bright_network):
    csv_path = _frames(tmp_path)
    frame = tmp_path / "001_HC.png"
    refused(
        ["hc", tmp_path, "--pixel-size-csv", csv_path, "--out", frame], capfd, inputs=[tmp_path], expect="is the input"
    )


@pytest.mark.parametrize("target", ["pixel_size.csv", "model.pt"])
def test_hc_refuses_to_write_over_its_csv_or_model(tmp_path, capfd, bright_network, target):
    csv_path = _frames(tmp_path)
    model = tmp_path / "model.pt"
    torch.save({}, model)
    argv = ["hc", tmp_path, "--pixel-size-csv", csv_path, "--out", tmp_path / target, "--model", model]
    refused(argv, capfd, inputs=[tmp_path], expect="is the input")


def test_measure_refuses_to_draw_over_its_model(tmp_path, capfd, bright_network):
    csv_path = _frames(tmp_path)
    model = tmp_path / "model.png"
    model.write_bytes(b"weights")
    argv = ["measure", tmp_path / "001_HC.png", "--pixel-size", "0.25", "--overlay", model, "--model", model]
    refused(argv, capfd, inputs=[tmp_path, csv_path], expect="is the input")


def _series(folder: Path) -> Path:
    image = sitk.GetImageFromArray(_noise(dtype=np.int16))
    write_image(image, folder)
    return folder


def test_segment_refuses_to_replace_its_input_series(tmp_path, capfd):
    series = _series(tmp_path / "series")
    for extra in ([], ["--overwrite"]):
        refused(["segment", series, series, *extra], capfd, inputs=[series], expect="is the input")


def test_segment_refuses_to_replace_another_series_without_overwrite(tmp_path, capfd):
    volume = _write(tmp_path / "volume.nii.gz", _noise(dtype=np.float32))
    other = _series(tmp_path / "other_series")
    refused(["segment", volume, other], capfd, inputs=[volume], outputs=[other], expect="--overwrite")


def test_segment_refuses_a_series_folder_holding_its_input(tmp_path, capfd):
    (tmp_path / "data").mkdir()
    volume = _write(tmp_path / "data" / "volume.nii.gz", _noise(dtype=np.float32))
    for extra in ([], ["--overwrite"]):
        refused(
            ["segment", volume, tmp_path / "data", *extra],
            capfd,
            inputs=[tmp_path / "data"],
            expect="is a folder holding the input",
        )


def test_segment_refuses_a_metaimage_output_over_the_input_data_file(tmp_path, capfd):
    """``segment in.mhd data.mhd`` where in.mhd's data is data.zraw would write data.zraw."""
    image = sitk.GetImageFromArray(_noise(dtype=np.float32))
    sitk.WriteImage(image, str(tmp_path / "data.mhd"), True)  # data.mhd + data.zraw
    (tmp_path / "data.mhd").rename(tmp_path / "in.mhd")  # in.mhd still names data.zraw
    assert (tmp_path / "data.zraw").is_file()
    refused(
        ["segment", tmp_path / "in.mhd", tmp_path / "data.mhd"],
        capfd,
        inputs=[tmp_path],
        expect="data.zraw is data.zraw, part of the input",
    )


def test_segment_refuses_to_write_over_its_model(tmp_path, capfd):
    volume = _write(tmp_path / "volume.nii.gz", _noise(dtype=np.float32))
    model = tmp_path / "model.nii.gz"
    model.write_bytes(b"weights")
    refused(["segment", volume, model, "--model", model], capfd, inputs=[volume, model], expect="is the input")


def test_study_refuses_outputs_over_its_inputs(tmp_path, capfd):
    out = tmp_path / "study"
    out.mkdir()
    volume = _write(out / "scan.nii.gz", _noise(dtype=np.float32))
    manifest = _manifest(out / "volumes.csv", [["s1", "scan.nii.gz", ""]])
    refused(["study", manifest, "--out", out], capfd, inputs=[manifest, volume], expect="is the input")
    assert not (out / "labels").exists()


# --- table 3: tracebacks instead of one line --------------------------------------------------------


def _tiny_pngs(folder: Path) -> dict[str, np.ndarray]:
    return {"tiny_1x1.png": np.full((1, 1), 200, np.uint8), "row_1x50.png": np.full((1, 50), 200, np.uint8)}


def test_one_bad_frame_never_stops_an_hc_batch(tmp_path, capfd, bright_network):
    csv_path = _frames(tmp_path, names=("001_HC.png", "tiny_1x1.png", "row_1x50.png", "002_HC.png"))
    for name, pixels in _tiny_pngs(tmp_path).items():
        cv2.imwrite(str(tmp_path / name), pixels)
    out = tmp_path / "out" / "submission.csv"
    before = _hashes([tmp_path])
    code, _, err = _run(["hc", tmp_path, "--pixel-size-csv", csv_path, "--out", out], capfd)
    assert code == 1 and "Traceback" not in err
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [row["filename"] for row in rows] == ["001_HC.png", "tiny_1x1.png", "row_1x50.png", "002_HC.png"]
    assert rows[0]["semi_axes_a_mm"] and rows[3]["semi_axes_a_mm"]
    assert not rows[1]["semi_axes_a_mm"] and not rows[2]["semi_axes_a_mm"]
    problems = [line for line in err.splitlines() if line.strip()]
    assert (
        problems == [line for line in problems if line.startswith(("tiny_1x1.png: error:", "row_1x50.png: error:"))]
        and len(problems) == 2
    )
    assert _hashes([p for p in tmp_path.iterdir() if p.name != "out"]) == {
        k: v for k, v in before.items() if "/out/" not in k
    }


@pytest.mark.parametrize("name", ["tiny_1x1.png", "row_1x50.png"])
def test_measure_refuses_a_degenerate_frame(tmp_path, capfd, bright_network, name):
    path = tmp_path / name
    cv2.imwrite(str(path), _tiny_pngs(tmp_path)[name])
    overlay = tmp_path / "overlay.png"
    refused(
        ["measure", path, "--pixel-size", "0.2", "--overlay", overlay],
        capfd,
        inputs=[path],
        outputs=[overlay],
        expect="pixels a side",
    )


@pytest.fixture
def no_model_loading(monkeypatch) -> None:
    """Loading the 3D model fails the test: the refusal must come before it."""
    from fetalbiometry.segment3d.segmenter import Segmenter

    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(Segmenter, "from_bundle", fail)


def test_segment_refuses_an_all_zero_volume_before_the_model(tmp_path, capfd, no_model_loading):
    volume = _write(tmp_path / "zeros.nii.gz", np.zeros((40, 40, 40), np.float32), spacing=(2.0, 2.0, 2.0))
    output = tmp_path / "head.nii.gz"
    refused(["segment", volume, output], capfd, inputs=[volume], outputs=[output], expect="one value everywhere (0)")


def test_segment_refuses_a_single_slice_volume_before_the_model(tmp_path, capfd, no_model_loading):
    volume = _write(tmp_path / "slice.nii.gz", np.zeros((1, 64, 64), np.float32))
    output = tmp_path / "head.nii.gz"
    refused(["segment", volume, output], capfd, inputs=[volume], outputs=[output], expect="64x64x1 voxels")


def test_segment_refuses_an_empty_model_file(tmp_path, capfd):
    volume = _volume(tmp_path / "volume.nii.gz")
    model = tmp_path / "model.pt"
    model.write_bytes(b"")
    output = tmp_path / "head.nii.gz"
    refused(
        ["segment", volume, output, "--model", model],
        capfd,
        inputs=[volume, model],
        outputs=[output],
        expect="is empty (0 bytes)",
    )


def test_measure_and_hc_refuse_an_empty_model_file(tmp_path, capfd, bright_network):
    csv_path = _frames(tmp_path)
    model = tmp_path / "model.pt"
    model.write_bytes(b"")
    out = tmp_path / "out.csv"
    refused(
        ["hc", tmp_path, "--pixel-size-csv", csv_path, "--out", out, "--model", model],
        capfd,
        inputs=[tmp_path],
        outputs=[out],
        expect="is empty (0 bytes)",
    )
    refused(
        ["measure", tmp_path / "001_HC.png", "--pixel-size", "0.25", "--model", model],
        capfd,
        inputs=[tmp_path],
        expect="is empty (0 bytes)",
    )


@pytest.mark.parametrize(
    "output, expect",
    [("head.txt", "unsupported image type"), ("head.png", "not a 3D label"), ("head.nii.gz", "permission denied")],
)
def test_segment_checks_its_output_before_the_model(tmp_path, capfd, monkeypatch, output, expect):
    volume = _volume(tmp_path / "volume.nii.gz")
    folder = tmp_path / "read_only"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == folder else real_access(p, mode))
    # an empty model: had the model been loaded first, the message would be about it
    model = tmp_path / "model.pt"
    model.write_bytes(b"")
    refused(
        ["segment", volume, folder / output, "--model", model],
        capfd,
        inputs=[volume, model],
        outputs=[folder / output],
        expect=expect,
    )


def test_a_write_that_fails_anyway_is_one_line(tmp_path, capfd, monkeypatch):
    """Past the early checks (e.g. a folder made read-only meanwhile): one line, no traceback."""
    from fetalbiometry import io

    volume = _write(tmp_path / "label.nii.gz", _label_array(dtype=np.uint8))
    output = tmp_path / "blocked" / "x.nii.gz"
    (tmp_path / "blocked").write_text("a file where a folder should be")
    monkeypatch.setattr(io, "check_writable", lambda path: None)
    with pytest.raises(io.InputError, match="cannot write"):
        io.write_image(sitk.ReadImage(str(volume)), output)


def test_an_unreadable_input_says_permission_denied(tmp_path, capfd, monkeypatch):
    import builtins

    from fetalbiometry import io

    label = _write(tmp_path / "label.nii.gz", _label_array(dtype=np.uint8))

    def deny(file, *args, **kwargs):
        if Path(file) == label:
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", deny, raising=False)
    refused(["volume", label], capfd, inputs=[label], expect="permission denied")


# --- the small things -----------------------------------------------------------------------------


def test_hc_csv_with_a_byte_order_mark_and_extra_columns(tmp_path, capfd, bright_network):
    names = ("001_HC.png", "002_HC.png")
    _frames(tmp_path, names)
    csv_path = tmp_path / "excel.csv"
    csv_path.write_bytes(
        "\ufefffilename,pixel size(mm),head circumference (mm),note\r\n".encode()
        + b"".join(f"{name},0.25,150.0,ok\r\n".encode() for name in names)
        + b",,,\r\n"
    )
    out = tmp_path / "submission.csv"
    code, _, err = _run(["hc", tmp_path, "--pixel-size-csv", csv_path, "--out", out], capfd)
    assert code == 0, err
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [row["filename"] for row in rows] == list(names) and all(row["semi_axes_a_mm"] for row in rows)


def test_twelve_bit_png_is_measured_as_eight_bit(tmp_path, capfd, bright_network):
    mask = ellipse_to_mask(HEAD, (160, 240))
    eight = (mask * 200 + 20).astype(np.uint8)
    twelve = np.round(eight.astype(np.float64) * 4095 / 255).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "eight.png"), eight)
    cv2.imwrite(str(tmp_path / "twelve.png"), twelve)
    reports = []
    for name in ("eight.png", "twelve.png"):
        code, out, err = _run(["measure", tmp_path / name, "--pixel-size", "0.25", "--json"], capfd)
        assert code == 0, err
        reports.append(_strict_json(out))
    assert reports[0]["hc_mm"] == pytest.approx(reports[1]["hc_mm"], rel=1e-9)


class ThresholdSegmenter:
    def segment(self, image: sitk.Image) -> sitk.Image:
        from fetalbiometry.io import label_like

        return label_like((sitk.GetArrayFromImage(image) > 0.5).astype(np.uint8), image)


def _cube(path: Path) -> Path:
    array = np.zeros((12, 12, 12), np.float32)
    array[3:9, 3:9, 3:9] = 1.0
    return _write(path, array, spacing=(10.0, 10.0, 10.0))  # 216 mL: a plausible head for the study


def test_volumes_csv_holds_no_absolute_paths(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    scan = _cube(data / "scan.nii.gz")
    broken = data / "broken.nii.gz"
    broken.write_bytes(b"not an image")
    manifest = _manifest(tmp_path / "manifest.csv", [["s1", str(scan), ""], ["s2", str(broken), ""]])
    out = tmp_path / "out"
    run_study(manifest, out, segmenter=ThresholdSegmenter())
    text = (out / "volumes.csv").read_text(encoding="utf-8")
    assert str(tmp_path) not in text
    rows = list(csv.DictReader(text.splitlines()))
    assert [row["image"] for row in rows] == ["data/scan.nii.gz", "data/broken.nii.gz"]
    assert [row["status"] for row in rows] == ["ok", "failed"]


def test_a_study_reference_that_is_a_probability_map_fails_its_row(tmp_path):
    _cube(tmp_path / "scan.nii.gz")
    _probability_map(tmp_path, "reference.nii.gz")
    manifest = _manifest(tmp_path / "manifest.csv", [["s1", "scan.nii.gz", "reference.nii.gz"]])
    summary = run_study(manifest, tmp_path / "out", segmenter=ThresholdSegmenter())
    rows = list(csv.DictReader((tmp_path / "out" / "volumes.csv").open(encoding="utf-8")))
    assert rows[0]["status"] == "failed" and "not a label" in rows[0]["error"] and "0 to 0.9" in rows[0]["error"]
    assert summary.reference_metrics == {}


def test_a_study_whose_every_row_failed_exits_non_zero(tmp_path, capfd, random_model):
    truncated = _truncated_nifti(tmp_path, ".nii.gz", np.int16)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not an image")
    manifest = _manifest(tmp_path / "manifest.csv", [["s1", truncated.name, ""], ["s2", broken.name, ""]])
    before = _hashes([truncated, broken, manifest])
    out = tmp_path / "out"
    code, _, err = _run(["study", manifest, "--out", out, "--model", random_model, "--device", "cpu"], capfd)
    errors = [line for line in err.splitlines() if line.startswith("fetalbiometry: error:")]
    assert code == 1 and "Traceback" not in err
    assert len(errors) == 1 and "no volume of the study gave a head volume (2 failed or flagged)" in errors[0]
    rows = list(csv.DictReader((out / "volumes.csv").open(encoding="utf-8")))
    assert [row["status"] for row in rows] == ["failed", "failed"] and "truncated" in rows[0]["error"]
    assert _hashes([truncated, broken, manifest]) == before


def test_segment_replaces_another_series_with_overwrite(tmp_path, capfd, random_model):
    volume = _volume(tmp_path / "volume.nii.gz")
    other = _series(tmp_path / "other_series")
    code, _, err = _run(["segment", volume, other, "--overwrite", "--model", random_model, "--device", "cpu"], capfd)
    assert code in (0, NO_MEASUREMENT_EXIT_CODE), err  # random weights: the head may be flagged
    assert sitk.ReadImage(min(str(p) for p in other.iterdir())).GetSize()[:2] == (16, 16)


# --- strict JSON from every command that prints it --------------------------------------------


def _json_commands(tmp_path: Path) -> dict[str, list[object]]:
    label = _write(tmp_path / "label.nii.gz", _label_array(dtype=np.uint8))
    empty = _write(tmp_path / "empty.nii.gz", np.zeros((12, 12, 12), np.uint8))
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), (ellipse_to_mask(HEAD, (160, 240)) * 200).astype(np.uint8))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((160, 240), np.uint8))
    return {
        "evaluate": ["evaluate", label, label, "--json"],
        "evaluate empty prediction": ["evaluate", empty, label, "--json"],
        "evaluate percentile": ["evaluate", empty, label, "--percentile", "95", "--json"],
        "volume": ["volume", label, "--json"],
        "volume empty": ["volume", empty, "--json"],
        "ga": ["ga", "--hc", "175", "--ac", "150", "--fl", "32", "--bpd", "45", "--ga-weeks", "20", "--json"],
        "measure": ["measure", frame, "--pixel-size", "0.25", "--ga", "22", "--json"],
        "measure no measurement": ["measure", blank, "--pixel-size", "0.25", "--json"],
    }


def test_every_json_output_is_strict(tmp_path, capfd, bright_network):
    for name, argv in _json_commands(tmp_path).items():
        code, out, err = _run(argv, capfd)
        assert code in (0, NO_MEASUREMENT_EXIT_CODE), f"{name}: {err}"
        assert isinstance(_strict_json(out), dict), name
