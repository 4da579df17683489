"""Pre-processing, augmentation and the on-the-fly phantom data set of the 3D bundle."""

from __future__ import annotations


import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from scipy import ndimage

from fetalbiometry.data.synthetic import PROBE_DIRECTIONS
from fetalbiometry.segment3d.phantom_dataset import PhantomDataset
from fetalbiometry.segment3d.transforms import (
    SIZE_DIVISOR,
    AntiAliasd,
    RandShadowErasingd,
    SegmentorInput,
    image_to_tensor,
    normalize_intensity,
    spatial_transforms,
    tensor_to_label,
)

ROTATED = [0, 1, 0, -1, 0, 0, 0, 0, 1]  # a direction that is not the identity


def oblique_image(shape=(10, 12, 14)) -> sitk.Image:
    """A ramp image (value = flat index) with anisotropic spacing, a rotated direction and an origin."""
    image = sitk.GetImageFromArray(np.arange(np.prod(shape), dtype=np.float32).reshape(shape))
    image.SetSpacing((0.5, 0.75, 1.25))
    image.SetOrigin((3.0, -2.0, 7.5))
    image.SetDirection(ROTATED)
    return image


def test_image_to_tensor_equals_monai_itk_loader(tmp_path) -> None:
    image = oblique_image()
    path = tmp_path / "volume.nii.gz"
    sitk.WriteImage(image, str(path))
    load = Compose([LoadImaged("image", reader="ITKReader"), EnsureChannelFirstd("image")])
    loaded = load({"image": str(path)})["image"]
    converted = image_to_tensor(image)
    assert converted.shape == (1, 14, 12, 10)  # (C, x, y, z)
    assert torch.equal(converted, loaded.float())
    assert np.allclose(converted.affine, loaded.affine)
    assert np.allclose(affine_to_spacing(converted.affine, r=3), image.GetSpacing())


def test_tensor_to_label_puts_xyz_labels_back_on_the_reference_grid() -> None:
    image = oblique_image()
    labels = torch.zeros(1, 14, 12, 10, dtype=torch.uint8)
    labels[0, 13, 2, 1] = 1  # x=13, y=2, z=1
    label = tensor_to_label(labels, image)
    assert label.GetSize() == image.GetSize() and label.GetDirection() == image.GetDirection()
    assert label.GetOrigin() == image.GetOrigin() and label.GetSpacing() == image.GetSpacing()
    assert sitk.GetArrayFromImage(label)[1, 2, 13] == 1 and sitk.GetArrayFromImage(label).sum() == 1


def test_normalize_intensity_maps_minimum_and_upper_percentile_to_unit_range() -> None:
    volume = np.concatenate([np.linspace(10.0, 110.0, 1000), [1e6]]).astype(np.float32)  # one saturated outlier
    scaled = np.asarray(normalize_intensity(volume))
    assert scaled.min() == pytest.approx(0.0) and scaled.max() == pytest.approx(1.0)
    upper = np.percentile(volume, 99.5)
    assert scaled[500] == pytest.approx((volume[500] - 10.0) / (upper - 10.0), rel=1e-5)


def test_segmentor_input_resamples_to_the_target_spacing_and_restores_the_grid() -> None:
    image = image_to_tensor(oblique_image(shape=(20, 33, 41)))  # (1, 41, 33, 20), oblique, anisotropic
    network_input = SegmentorInput(1.5)
    x = network_input(image)
    affine = np.asarray(x.affine)
    assert np.allclose(affine[:3, :3], np.diag([1.5, 1.5, 1.5]))  # axis-aligned RAS at 1.5 mm: canonical
    assert all(size % SIZE_DIVISOR == 0 for size in x.shape[1:])
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    scores = torch.zeros(2, *x.shape[1:])
    scores[1] = 1.0  # foreground everywhere
    restored = network_input.restore(scores, x)
    assert restored.shape == (2, 41, 33, 20)
    # within half a network voxel of the volume's edge the scores blend with the empty outside
    assert torch.allclose(restored[1, 2:-2, 2:-2, 2:-2], torch.ones(37, 29, 16))
    assert float(restored[1].min()) > 0.5


@pytest.mark.parametrize(
    ("spacing", "direction"),
    [((1.0, 1.0, 1.0), None), ((0.6, 0.6, 0.6), None), ((0.8, 0.8, 1.4), None), ((1.0, 0.9, 1.1), ROTATED)],
)
def test_an_ellipsoid_survives_the_round_trip_at_any_spacing_and_direction(spacing, direction) -> None:
    """Resampled to 3 mm and back, a 100 × 80 × 70 mm ellipsoid keeps its volume and place within 1 %."""
    size = [int(round(140 / s)) for s in spacing]
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing(spacing)
    if direction is not None:
        reference.SetDirection(direction)
    points = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3)
    matrix = np.reshape(reference.GetDirection(), (3, 3)) * np.asarray(spacing)
    centre = matrix @ ((np.asarray(size) - 1) / 2.0)
    offset = (points @ matrix.T - centre) / np.array([50.0, 40.0, 35.0])
    inside = (offset**2).sum(axis=1) <= 1.0  # (x, y, z) index order
    volume = sitk.GetImageFromArray(np.transpose(inside.reshape(size)).astype(np.float32) * 200.0)
    volume.CopyInformation(reference)
    network_input = SegmentorInput(3.0)
    x = network_input(image_to_tensor(volume))
    restored = network_input.restore(x, x)[0] > 0.5  # the normalised image itself as the "probability"
    truth = inside.reshape(size)
    assert restored.shape == truth.shape
    overlap = np.logical_and(restored.numpy(), truth).sum()
    assert 2.0 * overlap / (restored.sum().item() + truth.sum()) > 0.98
    assert restored.sum().item() / truth.sum() == pytest.approx(1.0, abs=0.01)


def test_spatial_transforms_resample_labels_with_nearest_neighbour() -> None:
    label = MetaTensor(torch.zeros(1, 20, 20, 20))  # 1 mm voxels
    label[0, 5:15, 5:15, 5:15] = 1.0
    data = {"image": MetaTensor(torch.rand(1, 20, 20, 20)), "label": label}
    out = Compose(spatial_transforms(2.0, "image", "label"))(data)
    assert out["label"].shape == (1, 16, 16, 16)  # 10 voxels at 2 mm, padded to 16
    assert set(torch.unique(out["label"]).tolist()) == {0.0, 1.0}
    assert int(out["label"].sum()) == 5**3


def test_anti_aliasing_blurs_only_axes_finer_than_the_target() -> None:
    image = image_to_tensor(oblique_image())  # 0.5, 0.75, 1.25 mm
    blur = AntiAliasd("image", target_spacing=(1.25, 1.25, 1.25))
    assert np.allclose(blur.sigma_voxels(image), [0.75, 1.0 / 3.0, 0.0])
    noise = MetaTensor(torch.rand(1, 30, 30, 30), affine=torch.diag(torch.tensor([0.5, 0.5, 0.5, 1.0])))
    smoothed = blur({"image": noise})["image"]
    assert smoothed.std() < 0.6 * noise.std() and torch.equal(smoothed.affine, noise.affine)
    coarse = MetaTensor(torch.rand(1, 8, 8, 8), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    assert torch.equal(blur({"image": coarse})["image"], coarse)


def test_shadow_erasing_zeroes_a_box_on_the_head_boundary_and_keeps_the_label() -> None:
    label = torch.zeros(1, 32, 32, 32)
    label[0, 8:24, 10:22, 12:20] = 1.0
    image = torch.ones(1, 32, 32, 32)
    eraser = RandShadowErasingd("image", label_key="label", prob=1.0, size_fraction=(0.25, 0.5))
    for seed in range(5):
        eraser.set_random_state(seed)
        out = eraser({"image": image, "label": label})
        erased = out["image"][0] == 0
        assert torch.equal(out["label"], label) and torch.equal(image, torch.ones_like(image))
        zeros = np.argwhere(erased.numpy())
        low, high = zeros.min(axis=0), zeros.max(axis=0) + 1
        assert erased.sum() == np.prod(high - low)  # a single box
        extent = np.array([16, 12, 8])
        assert np.all(high - low <= np.ceil(0.5 * extent) + 1)
        mask = label[0].numpy() > 0
        boundary = mask & ~ndimage.binary_erosion(mask)
        assert boundary[erased.numpy()].any()  # centred on the head's boundary
    never = RandShadowErasingd("image", prob=0.0)({"image": image, "label": label})
    assert torch.equal(never["image"], image)


def test_phantom_dataset_items_are_scanner_like_grids_with_disjoint_seed_ranges() -> None:
    train = PhantomDataset(3, base_seed=5, spacing_range=(8.0, 10.0), max_anisotropy=1.5)
    validation = PhantomDataset(2, base_seed=5 + len(train), spacing_range=(8.0, 10.0), max_anisotropy=1.5)
    assert set(train.seeds).isdisjoint(validation.seeds)
    item = validation[1]
    assert item["seed"] == 9 and item["image"].meta["filename_or_obj"] == "phantom-9"
    phantom = validation.phantom(1)  # deterministic: the same scan every time
    assert torch.equal(item["image"], image_to_tensor(phantom.image))
    assert torch.equal(item["label"], image_to_tensor(phantom.label))
    for dataset in (train, validation):
        for index in range(len(dataset)):
            scan = dataset.phantom(index)
            spacing = np.asarray(scan.image.GetSpacing())
            assert 8.0 <= spacing.min() <= 10.0 and spacing.max() <= 1.5 * spacing.min() + 1e-9
            assert scan.label.GetDirection() == scan.image.GetDirection()
            label = sitk.GetArrayFromImage(scan.label)
            assert label.sum() > 0
            assert not any(np.take(label, edge, axis=a).any() for a in range(3) for edge in (0, -1))  # head inside
    with pytest.raises(IndexError):
        validation[2]


def test_phantom_dataset_scans_every_image_model_from_every_probe_direction() -> None:
    n_directions = len(PROBE_DIRECTIONS)
    dataset = PhantomDataset(4 * n_directions, image_models=("polar", "cartesian"))
    pairs = {(index % n_directions, dataset.image_model(index)) for index in range(len(dataset))}
    assert pairs == {(direction, model) for direction in range(n_directions) for model in ("polar", "cartesian")}
