"""Pre-processing, augmentation and the on-the-fly phantom data set of the 3D bundle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data.utils import affine_to_spacing
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from scipy import ndimage

from fetalbiometry.segment3d.phantom_dataset import PhantomDataset
from fetalbiometry.data.synthetic import make_head_volume
from fetalbiometry.segment3d.transforms import (
    SIZE_DIVISOR,
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


def test_segmentor_input_downscales_pads_and_restores_the_grid() -> None:
    image = image_to_tensor(oblique_image(shape=(20, 33, 41)))  # (1, 41, 33, 20)
    network_input = SegmentorInput(0.4)
    x = network_input(image)
    downscaled = [math.floor(0.4 * size) for size in (41, 33, 20)]  # 16, 13, 8
    assert list(x.shape[1:]) == [math.ceil(s / SIZE_DIVISOR) * SIZE_DIVISOR for s in downscaled]
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    scores = torch.zeros(2, *x.shape[1:])
    scores[1] = 1.0  # foreground everywhere
    restored = network_input.restore(scores, x)
    assert restored.shape == (2, 41, 33, 20)
    assert torch.allclose(restored[1], torch.ones(41, 33, 20))


def test_spatial_transforms_resample_labels_with_nearest_neighbour() -> None:
    label = torch.zeros(1, 20, 20, 20)
    label[0, 5:15, 5:15, 5:15] = 1.0
    data = {"image": torch.rand(1, 20, 20, 20), "label": label}
    out = Compose(spatial_transforms(0.5, "image", "label"))(data)
    assert out["label"].shape == (1, 16, 16, 16)  # 10 padded to 16
    assert set(torch.unique(out["label"]).tolist()) == {0.0, 1.0}
    assert int(out["label"].sum()) == 5**3


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


def test_phantom_dataset_items_are_the_generator_phantoms_with_disjoint_seed_ranges() -> None:
    shape, spacing = (16, 16, 16), (10.0, 10.0, 10.0)
    train = PhantomDataset(3, base_seed=5, shape=shape, spacing=spacing)
    validation = PhantomDataset(2, base_seed=5 + len(train), shape=shape, spacing=spacing)
    assert set(train.seeds).isdisjoint(validation.seeds)
    item = validation[1]
    assert item["seed"] == 9 and item["image"].meta["filename_or_obj"] == "phantom-9"
    expected = make_head_volume(seed=9, shape=shape, spacing=spacing, probe_direction=1)
    assert torch.equal(item["image"], image_to_tensor(expected.image))
    assert torch.equal(item["label"], image_to_tensor(expected.label))
    assert np.allclose(affine_to_spacing(item["label"].affine, r=3), spacing)
    with pytest.raises(IndexError):
        validation[2]
