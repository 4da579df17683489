"""Tests for fetalbiometry.io: formats, geometry round trips, label grids, atomic writes, errors."""

import os

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from fetalbiometry.errors import GeometryMismatchError, InputError
from fetalbiometry.io import (
    Geometry,
    array_spacing,
    atomic_output,
    check_dimension,
    check_finite,
    check_same_grid,
    label_like,
    read_image,
    write_image,
    write_label,
)

# Geometry tolerance of each format (mm for spacing/origin, unitless for direction cosines):
# MetaImage prints doubles with 17 digits (exact); NRRD stores spacing x direction products and
# reads them back decomposed (~1e-15); DICOM stores 16-character decimal strings (~1e-14);
# NIfTI stores float32 (pixdim, quaternion, offsets): ~6e-8 relative, 1e-5 for |origin| < 50 mm.
FORMAT_TOLERANCE = {
    ".mha": 0.0,
    ".mhd": 0.0,
    ".nrrd": 1e-12,
    ".seg.nrrd": 1e-12,
    "": 1e-12,  # a path without suffix is a DICOM series folder
    ".nii": 1e-5,
    ".nii.gz": 1e-5,
}


def oblique_image(dim: int, dtype=np.int16) -> sitk.Image:
    """Random pixels on a rotated, non-axis-aligned grid with anisotropic spacing; size x=7, y=5(, z=3)."""
    rng = np.random.default_rng(dim)
    if dim == 3:
        array = rng.integers(-100, 100, (3, 5, 7))
        direction = Rotation.from_rotvec([0.3, -0.5, 1.1]).as_matrix()
        spacing, origin = (0.31, 0.77, 2.3), (-12.345678, 45.6789, 3.21)
    else:
        array = rng.integers(-100, 100, (5, 7))
        angle = 0.7
        direction = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        spacing, origin = (0.31, 0.77), (-12.345678, 45.6789)
    image = sitk.GetImageFromArray(array.astype(dtype))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction.ravel().tolist())
    return image


def assert_same_geometry(actual: sitk.Image, expected: sitk.Image, atol: float) -> None:
    assert actual.GetSize() == expected.GetSize()
    np.testing.assert_allclose(actual.GetSpacing(), expected.GetSpacing(), rtol=0, atol=atol)
    np.testing.assert_allclose(actual.GetOrigin(), expected.GetOrigin(), rtol=0, atol=atol)
    np.testing.assert_allclose(actual.GetDirection(), expected.GetDirection(), rtol=0, atol=atol)


def assert_one_line_naming(error: pytest.ExceptionInfo, path) -> None:
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message


def test_array_axis_order_is_reversed_from_itk_order():
    image = sitk.Image(7, 5, 3, sitk.sitkUInt8)  # x=7, y=5, z=3
    image.SetSpacing((0.5, 0.8, 1.2))
    image[6, 1, 2] = 9  # ITK index (x, y, z)
    array = sitk.GetArrayFromImage(image)
    assert array.shape == (3, 5, 7)
    assert array[2, 1, 6] == 9  # numpy index (z, y, x)
    assert array_spacing(image) == (1.2, 0.8, 0.5)
    assert array_spacing(sitk.Image(4, 3, sitk.sitkUInt8)) == (1.0, 1.0)


@pytest.mark.parametrize("dim", [3, 2])
@pytest.mark.parametrize("suffix", list(FORMAT_TOLERANCE), ids=lambda suffix: suffix or "dicom-folder")
def test_round_trip_keeps_pixels_and_oblique_geometry(tmp_path, suffix, dim):
    image = oblique_image(dim)
    path = write_image(image, tmp_path / f"case{suffix}")
    back = read_image(path)
    assert back.GetDimension() == dim
    assert back.GetPixelID() == image.GetPixelID()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert_same_geometry(back, image, FORMAT_TOLERANCE[suffix])
    check_same_grid(back, image, names=("read", "written"))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_float_pixels_survive(tmp_path, suffix):
    image = sitk.Cast(oblique_image(3), sitk.sitkFloat64) / 7.0
    back = read_image(write_image(image, tmp_path / f"float{suffix}"))
    assert back.GetPixelID() == sitk.sitkFloat64
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))


def test_png_round_trip_takes_pixel_size_from_caller(tmp_path):
    labels = np.zeros((5, 7), np.int64)
    labels[1:4, 2:6] = 1
    labels[2, 3] = 2
    reference = sitk.Image(7, 5, sitk.sitkUInt8)
    path = write_label(labels, reference, tmp_path / "mask.png")  # int64 labels narrowed to uint8
    back = read_image(path, pixel_size=0.25)
    assert back.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels)
    assert back.GetSpacing() == (0.25, 0.25)
    assert back.GetOrigin() == (0.0, 0.0) and back.GetDirection() == (1.0, 0.0, 0.0, 1.0)
    assert read_image(path, pixel_size=(0.2, 0.3)).GetSpacing() == (0.2, 0.3)  # (x, y)


@pytest.mark.parametrize("channels", [3, 4])
def test_colour_png_reads_as_bt601_grayscale(tmp_path, channels):
    colour = np.random.default_rng(1).integers(0, 256, (5, 7, channels)).astype(np.uint8)
    path = tmp_path / "colour.png"
    sitk.WriteImage(sitk.GetImageFromArray(colour, isVector=True), str(path))
    gray = read_image(path, pixel_size=0.1)
    assert gray.GetNumberOfComponentsPerPixel() == 1
    luma = colour[..., :3] @ np.array([0.299, 0.587, 0.114])  # ITU-R BT.601; alpha ignored
    np.testing.assert_allclose(sitk.GetArrayFromImage(gray), luma, atol=1.0)


def test_png_errors_name_the_file(tmp_path):
    path = write_image(sitk.Image(7, 5, sitk.sitkUInt8), tmp_path / "frame.png")
    for bad_pixel_size in (None, 0.0, -1.0, (0.1, 0.2, 0.3)):
        with pytest.raises(InputError) as error:
            read_image(path, pixel_size=bad_pixel_size)
        assert_one_line_naming(error, path)
    for image in (sitk.Image(7, 5, 3, sitk.sitkUInt8), sitk.Image(7, 5, sitk.sitkFloat32)):
        with pytest.raises(InputError) as error:
            write_image(image, tmp_path / "bad.png")
        assert_one_line_naming(error, tmp_path / "bad.png")
    negative = sitk.Image(7, 5, sitk.sitkInt16) - 1
    with pytest.raises(InputError, match="do not fit"):
        write_image(negative, tmp_path / "negative.png")
    nifti = write_image(sitk.Image(7, 5, sitk.sitkUInt8), tmp_path / "frame.nii.gz")
    with pytest.raises(InputError, match="PNG only"):
        read_image(nifti, pixel_size=0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.nii.gz", "frame.png"]


@pytest.mark.parametrize("dim", [3, 2])
def test_label_lands_on_the_reference_grid(tmp_path, dim):
    reference = oblique_image(dim, np.float32)
    mask = sitk.GetArrayFromImage(reference) > 0
    label = label_like(mask, reference)
    assert label.GetPixelID() == sitk.sitkUInt8
    assert Geometry.from_image(label) == Geometry.from_image(reference)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label), mask)
    back = read_image(write_label(mask, reference, tmp_path / "label.seg.nrrd"))
    check_same_grid(back, reference, names=("label", "image"))
    with pytest.raises(GeometryMismatchError, match="shape"):
        label_like(mask.T, reference)


def test_geometry_describe_and_matches():
    image = oblique_image(3)
    geometry = Geometry.from_image(image)
    text = geometry.describe()
    assert "\n" not in text
    assert text.startswith("size 7x5x3, spacing (0.31, 0.77, 2.3) mm, origin (-12.3457, 45.6789, 3.21) mm")
    assert geometry.matches(geometry)
    shifted = Geometry(geometry.size, geometry.spacing, (0.0, 0.0, 0.0), geometry.direction)
    assert not geometry.matches(shifted)
    assert geometry.differences(shifted) == ["origin"]
    nearly = Geometry(geometry.size, tuple(s + 1e-6 for s in geometry.spacing), geometry.origin, geometry.direction)
    assert geometry.matches(nearly, atol=1e-4) and not geometry.matches(nearly, atol=1e-7)
    assert Geometry.from_image(sitk.Image(7, 5, sitk.sitkUInt8)).differences(geometry) == [
        "size", "spacing", "origin", "direction"
    ]


def test_check_same_grid_names_both_grids_and_what_differs():
    image = oblique_image(3)
    other = sitk.Image(image)
    other.SetSpacing((0.31, 0.77, 2.5))
    with pytest.raises(GeometryMismatchError) as error:
        check_same_grid(image, other, names=("image", "prediction"))
    message = str(error.value)
    assert "(spacing differ" in message and "origin" not in message.split(":")[0]
    assert "image: size 7x5x3" in message and "prediction: size 7x5x3" in message
    assert "2.3)" in message and "2.5)" in message
    check_same_grid(image, sitk.Image(image))  # the same grid passes


@pytest.mark.parametrize("interrupt", [ValueError, KeyboardInterrupt])
def test_atomic_output_leaves_nothing_on_error(tmp_path, interrupt):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(interrupt):
        with atomic_output(target) as temporary:
            assert temporary.name == "out.nii.gz" and temporary.parent.parent == tmp_path
            sitk.WriteImage(sitk.Image(4, 4, sitk.sitkUInt8), str(temporary))
            raise interrupt()
    assert list(tmp_path.iterdir()) == []

    target.write_bytes(b"previous")
    with pytest.raises(interrupt):
        with atomic_output(target) as temporary:
            temporary.write_bytes(b"half written")
            raise interrupt()
    assert target.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_output_replaces_and_moves_companions(tmp_path):
    target = tmp_path / "old.csv"
    target.write_text("old")
    with atomic_output(target) as temporary:
        temporary.write_text("new")
    assert target.read_text(encoding="utf-8") == "new"
    write_image(sitk.Image(4, 4, 2, sitk.sitkUInt8), tmp_path / "sub" / "volume.mhd")
    assert sorted(os.listdir(tmp_path / "sub")) == ["volume.mhd", "volume.zraw"]
    assert read_image(tmp_path / "sub" / "volume.mhd").GetSize() == (4, 4, 2)
    assert sorted(os.listdir(tmp_path)) == ["old.csv", "sub"]


def test_dicom_series_overwrite_narrowing_and_refusals(tmp_path):
    folder = tmp_path / "series"
    write_image(oblique_image(3, np.int16), folder)
    labels = sitk.Cast(oblique_image(3, np.int64) > 0, sitk.sitkInt64)
    write_image(labels, folder)  # replaces the previous series; int64 labels narrowed to uint8
    back = read_image(folder)
    assert back.GetPixelID() == sitk.sitkUInt8 and len(os.listdir(folder)) == 3
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(labels))
    assert sorted(os.listdir(tmp_path)) == ["series"]

    with pytest.raises(InputError, match="integer"):
        write_image(sitk.Image(4, 4, 2, sitk.sitkFloat32), tmp_path / "float_series")
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a folder of .dcm files"):
        write_image(labels, folder)
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "keep me"

    mixed = tmp_path / "mixed"
    write_image(sitk.Image(4, 4, 2, sitk.sitkUInt8), tmp_path / "other")
    mixed.mkdir()
    for source in (folder, tmp_path / "other"):
        for file in source.glob("*.dcm"):
            os.link(file, mixed / f"{source.name}_{file.name}")
    empty = tmp_path / "empty"
    empty.mkdir()
    for bad_folder, count in ((mixed, 2), (empty, 0)):
        with pytest.raises(InputError, match=f"holds {count} DICOM series") as error:
            read_image(bad_folder)
        assert_one_line_naming(error, bad_folder)


def test_missing_corrupt_and_unsupported_files_raise_input_error(tmp_path):
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(np.random.default_rng(0).bytes(512))
    corrupt_png = tmp_path / "corrupt.png"
    corrupt_png.write_bytes(b"not a png at all")
    unsupported = tmp_path / "image.xyz"
    unsupported.write_bytes(b"\0" * 16)
    header_only = write_image(sitk.Image(4, 4, 2, sitk.sitkUInt8), tmp_path / "header.mhd")
    (tmp_path / "header.zraw").unlink()
    cases = [
        (tmp_path / "missing.nii.gz", {}, "not found"),
        (corrupt, {}, "cannot read"),
        (corrupt_png, {"pixel_size": 0.1}, "cannot read"),
        (unsupported, {}, "unsupported"),
        (header_only, {}, "cannot read"),
    ]
    for path, kwargs, expected in cases:
        with pytest.raises(InputError, match=expected) as error:
            read_image(path, **kwargs)
        assert_one_line_naming(error, path)
    with pytest.raises(InputError) as error:
        write_image(sitk.Image(4, 4, sitk.sitkUInt8), tmp_path / "image.jpg2")
    assert_one_line_naming(error, tmp_path / "image.jpg2")


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise_input_error(tmp_path, bad_value, suffix):
    """NIfTI included: ITK's NIfTI reader turns NaN/Inf into 0, so this needs the nibabel check."""
    array = np.ones((3, 5, 7), np.float32)
    array[1, 2, 3] = bad_value
    path = write_image(sitk.GetImageFromArray(array), tmp_path / f"nonfinite{suffix}")
    with pytest.raises(InputError, match="1 NaN or infinite") as error:
        read_image(path)
    assert_one_line_naming(error, path)
    check_finite(sitk.GetImageFromArray(np.ones((3, 5, 7), np.float32)))  # finite passes


def test_wrong_dimensionality_raises_input_error(tmp_path):
    plane = sitk.Image(7, 5, sitk.sitkUInt8)
    with pytest.raises(InputError, match="2D image; expected 3D") as error:
        check_dimension(plane, (3,), name="frame.png")
    assert_one_line_naming(error, "frame.png")
    check_dimension(plane, (2, 3))
    path = tmp_path / "four_d.nii.gz"
    sitk.WriteImage(sitk.Image([2, 3, 4, 5], sitk.sitkUInt8), str(path))
    with pytest.raises(InputError, match="4D") as error:
        read_image(path)
    assert_one_line_naming(error, path)
