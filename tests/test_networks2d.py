"""Tests of the 2D biometry networks, their losses, the plane measurement and the HC18 samples.

(fetalbiometry.networks.{mtln,regression,multitask_unet,unet2d}, fetalbiometry.segment3d.losses,
fetalbiometry.planes2d.transforms.BoundaryWeightMapd, fetalbiometry.biometry.planes,
fetalbiometry.data.hc18_dataset.) Tiny widths and small images keep the file fast on a busy CPU.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from fetalbiometry.biometry import (
    PLANE_CLASSES,
    Ellipse,
    ellipse_outline,
    ellipse_to_mask,
    fit_ellipse,
    measure_plane,
)
from fetalbiometry.data import hc18
from fetalbiometry.data.anatomy import ellipse_signed_distance
from fetalbiometry.data.hc18_dataset import (
    IDENTITY,
    MTLN_AUGMENTATIONS,
    ZOOM_AUGMENTATIONS,
    AnnotatedPlane,
    HC18PlaneDataset,
    HeadCrop,
    PlaneAugmentation,
    PlaneSampleDataset,
    affine_ellipse,
    augmentations_keeping_head,
    make_plane_sample,
)
from fetalbiometry.data.synthetic import make_plane
from fetalbiometry.errors import InputError, NoMeasurementError
from fetalbiometry.planes2d.losses import BoundaryWeightedDiceCELoss, MTLNLoss, MultiTaskUNetLoss, regression_loss
from fetalbiometry.networks import (
    MTLN,
    REGRESSORS,
    HCRegressor,
    MultiTaskUNet,
    VGGRegressor,
    build_hc_regressor,
    decode_ellipse,
    encode_ellipse,
    unet_baseline,
)
from fetalbiometry.planes2d.transforms import BoundaryWeightMapd, EllipseSoftLabeld, boundary_weight_map

HC18_DIR = Path(os.environ.get("HC18_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hc18"))
TINY_MTLN = {"features": (8, 8, 16, 16, 16), "tuner_hidden_channels": (16, 8), "tuner_grid": (2, 2)}
TINY_UNET = {"features": (4, 8, 8, 16, 16, 16), "classifier_grid": (2, 2)}
SIZE = (64, 96)  # rows, columns: multiples of 32


def image(batch: int = 2, size: tuple[int, int] = SIZE, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, *size, generator=torch.Generator().manual_seed(seed))


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def head_sample(seed: int = 1, size: tuple[int, int] = SIZE) -> dict:
    """A synthetic head plane as a training sample with its boundary weight map."""
    phantom = make_plane("head", seed, shape=size, image_model="cartesian")  # the plain model: a clear head in 6 steps
    t = phantom.truth
    ellipse = Ellipse(t["center_x_px"], t["center_y_px"], t["semi_axes_a_px"], t["semi_axes_b_px"], t["angle_rad"])
    sample = make_plane_sample(sitk.GetArrayFromImage(phantom.image), ellipse, t["pixel_size_mm"], size)
    return BoundaryWeightMapd(keys="label")(sample)


# --- network outputs ---------------------------------------------------------------------------


def test_every_network_gives_its_outputs_at_input_size() -> None:
    x = image()
    with torch.no_grad():
        mtln = MTLN(**TINY_MTLN).eval()(x)
        single = MTLN(**TINY_MTLN, ellipse_tuner=False).eval()(x)
        multitask = MultiTaskUNet(**TINY_UNET).eval()(x)
        unet = unet_baseline(features=(4, 8, 8, 16, 16, 4)).eval()(x)
    assert mtln["segmentation"].shape == (2, 2, *SIZE) and mtln["ellipse"].shape == (2, 5)
    assert set(single) == {"segmentation"} and single["segmentation"].shape == (2, 2, *SIZE)
    assert multitask["segmentation"].shape == (2, 2, *SIZE) and multitask["plane"].shape == (2, 3)
    assert unet.shape == (2, 2, *SIZE)
    with pytest.raises(ValueError, match="multiple of 32"):
        MTLN(**TINY_MTLN)(image(size=(48, 96)))


@pytest.mark.parametrize("name", list(REGRESSORS))
def test_every_regressor_gives_one_linear_output(name: str) -> None:
    if name == "vgg16":  # the 4096-wide head would cost 500 MB here; the output shape does not depend on it
        net = HCRegressor(VGGRegressor(fc_features=(16, 16)), hc_max=1800.0)
    else:
        net = build_hc_regressor(name, hc_max=1800.0, spatial_size=(32, 32))
    with torch.no_grad():
        out = net.eval()(image(size=(32, 32)))
    assert out.shape == (2, 1) and torch.isfinite(out).all()
    assert float(net.hc_max) == 1800.0 and "hc_max" in net.state_dict()
    assert torch.allclose(net.predict_hc(image(size=(32, 32))), out[:, 0] * 1800.0)
    loss = regression_loss("mse")(net.train()(image(size=(32, 32))), torch.tensor([[0.3], [0.6]]))
    loss.backward()  # one training step's gradients reach the first layer
    first = next(p for p in net.parameters() if p.ndim > 1)
    assert torch.isfinite(loss) and first.grad is not None and first.grad.abs().sum() > 0


def test_custom_regression_cnns_have_the_papers_parameter_counts() -> None:
    with torch.device("meta"):
        counts = {name: count(build_hc_regressor(name, spatial_size=(128, 128))) for name in REGRESSORS}
    assert abs(counts["cnn-263k"] - 263_000) < 0.1 * 263_000
    assert abs(counts["cnn-1m"] - 1_000_000) < 0.1 * 1_000_000
    # VGG16 ("D", 1 input channel, BN, 1 output) and ResNet-50 are the known sizes less their ImageNet heads
    assert 130e6 < counts["vgg16"] < 140e6 and 23e6 < counts["resnet50"] < 24e6


# --- MTLN --------------------------------------------------------------------------------------


def test_mtln_concatenates_the_half_and_quarter_scale_image_to_the_first_two_feature_maps() -> None:
    def encoder_inputs(net: MTLN, x: torch.Tensor) -> list[torch.Tensor]:
        seen: list[torch.Tensor] = []
        hooks = [block.register_forward_pre_hook(lambda _, args: seen.append(args[0])) for block in net.encoder]
        with torch.no_grad():
            net.eval()(x)
        for hook in hooks:
            hook.remove()
        return seen

    x = image(batch=1)
    multi = encoder_inputs(MTLN(**TINY_MTLN), x)
    plain = encoder_inputs(MTLN(**TINY_MTLN, multi_scale_inputs=False), x)
    assert [t.shape[1] for t in multi] == [8 + 1, 8 + 1, 16, 16]
    assert [t.shape[1] for t in plain] == [8, 8, 16, 16]
    assert torch.allclose(multi[0][:, -1:], F.avg_pool2d(x, 2), atol=1e-6)
    assert torch.allclose(multi[1][:, -1:], F.avg_pool2d(x, 4), atol=1e-6)


def test_ellipse_tuner_switch_adds_only_the_fully_connected_head_and_scripts() -> None:
    multi, single = MTLN(**TINY_MTLN), MTLN(**TINY_MTLN, ellipse_tuner=False)
    tuner = multi.ellipse_tuner
    assert single.ellipse_tuner is None and count(multi) - count(single) == count(tuner)
    assert sum(isinstance(m, torch.nn.Linear) for m in tuner.modules()) == 3  # three FC layers
    scripted = torch.jit.script(multi.eval())
    with torch.no_grad():
        assert torch.allclose(scripted(image())["ellipse"], multi(image())["ellipse"])


def test_ellipse_encoding_round_trips_and_is_normalised() -> None:
    ellipse = Ellipse(120.0, 70.0, 30.0, 50.0, 0.3)  # a < b: normalised to a >= b
    params = encode_ellipse(ellipse, (160, 256))
    assert np.allclose(params, [120 / 256, 70 / 160, 50 / 256, 30 / 256, (0.3 + math.pi / 2) / math.pi], atol=1e-6)
    back = decode_ellipse(torch.from_numpy(params), (160, 256))
    assert np.allclose([back.cx, back.cy, back.a, back.b, back.theta], [120, 70, 50, 30, 0.3 + math.pi / 2], atol=1e-4)
    with pytest.raises(NoMeasurementError):
        decode_ellipse([0.5, 0.5, -0.1, 0.1, 0.0], (160, 256))


def test_boundary_weight_map_is_one_plus_w0_on_the_boundary_and_tends_to_one_far_away() -> None:
    mask = np.zeros((120, 40), np.uint8)
    mask[:60] = 1  # boundary: row 59 (foreground pixels with a background neighbour)
    w = BoundaryWeightMapd(keys="label", w0=30.0, sigma=10.0)({"label": mask[None]})["weight"][0]
    assert np.allclose(w[59], 31.0)
    for row in (49, 79, 89):  # exact Gaussian of the distance to row 59
        assert np.allclose(w[row], 1 + 30 * math.exp(-((row - 59) ** 2) / 200.0), rtol=1e-5)
    assert np.allclose(w[-1], 1.0, atol=1e-6) and np.allclose(w[0], 1.0, atol=1e-6)
    assert np.all(boundary_weight_map(np.zeros((8, 8))) == 1.0)


def test_weighted_dice_ce_with_unit_weights_is_cross_entropy_plus_soft_dice() -> None:
    logits = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(3))
    labels = (torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(4)) > 0.5).float()
    loss = BoundaryWeightedDiceCELoss(smooth=0.0)(logits, labels, torch.ones_like(labels))
    p = torch.softmax(logits, 1)[:, 1:]
    dice = 1 - 2 * (p * labels).sum((1, 2, 3)) / (p.sum((1, 2, 3)) + labels.sum((1, 2, 3)))
    assert torch.allclose(loss, F.cross_entropy(logits, labels[:, 0].long()) + dice.mean(), atol=1e-5)


def test_mtln_loss_is_finite_and_decreases_on_a_synthetic_head_plane() -> None:
    torch.manual_seed(0)
    sample = head_sample()
    x = torch.from_numpy(sample["image"])[None]
    labels, weight = torch.from_numpy(sample["label"])[None], torch.as_tensor(sample["weight"])[None]
    target = torch.from_numpy(sample["ellipse"])[None]
    net, loss_fn = MTLN(**TINY_MTLN).train(), MTLNLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        out = net(x)
        loss = loss_fn(out["segmentation"], labels, weight, out["ellipse"], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.85 * losses[0]
    assert loss_fn(out["segmentation"], labels, weight).item() < loss.item()  # the single-task loss omits L_ET


# --- multi-task U-Net --------------------------------------------------------------------------


def test_multitask_unet_classifies_planes_into_three_probabilities_and_trains_one_step() -> None:
    torch.manual_seed(0)
    net = MultiTaskUNet(**TINY_UNET).train()
    x, plane = image(batch=3), torch.tensor([0, 1, 2])
    labels = (x > 0.5).float()
    out = net(x)
    probabilities = torch.softmax(out["plane"], dim=1)
    assert probabilities.shape == (3, 3) and torch.allclose(probabilities.sum(1), torch.ones(3))
    loss = MultiTaskUNetLoss(classification_weight=0.001)(out["segmentation"], labels, out["plane"], plane)
    loss.backward()
    assert torch.isfinite(loss) and net.classifier.fc.weight.grad.abs().sum() > 0
    # λ = 1 is the classification loss alone, λ = 0 the Dice loss alone
    only_cls = MultiTaskUNetLoss(1.0)(out["segmentation"], labels, out["plane"], plane)
    assert torch.allclose(only_cls, F.cross_entropy(out["plane"], plane))
    only_dice = MultiTaskUNetLoss(0.0)(out["segmentation"], labels, out["plane"], plane)
    assert 0.0 < only_dice.item() < 1.0


def test_unet_baseline_takes_a_training_step_and_regressors_normalise_hc() -> None:
    torch.manual_seed(0)
    unet = unet_baseline(features=(4, 8, 8, 16, 16, 4)).train()
    x = image(size=(32, 32))
    loss = F.cross_entropy(unet(x), (x[:, 0] > 0).long())
    loss.backward()
    assert torch.isfinite(loss)
    regressor = build_hc_regressor("cnn-263k", hc_max=1000.0, spatial_size=(32, 32))
    assert torch.allclose(regressor.normalize(torch.tensor([[400.0], [900.0]])), torch.tensor([[0.4], [0.9]]))


def test_regression_losses_are_mse_mae_and_huber_with_delta_half() -> None:
    prediction, target = torch.tensor([0.0, 0.0]), torch.tensor([0.2, 1.0])
    assert math.isclose(regression_loss("mse")(prediction, target).item(), (0.04 + 1.0) / 2, rel_tol=1e-6)
    assert math.isclose(regression_loss("mae")(prediction, target).item(), 0.6, rel_tol=1e-6)
    huber = (0.5 * 0.2**2 + 0.5 * (1.0 - 0.25)) / 2  # quadratic below δ = 0.5, linear above
    assert math.isclose(regression_loss("huber")(prediction, target).item(), huber, rel_tol=1e-6)
    with pytest.raises(ValueError):
        regression_loss("l2")


# --- measurement of a plane --------------------------------------------------------------------


def test_head_circumference_of_an_analytic_ellipse_mask_within_one_percent() -> None:
    ellipse = Ellipse(130.0, 80.0, 60.0, 45.0, 0.4)
    result = measure_plane(ellipse_to_mask(ellipse, (160, 256)), "head", pixel_size=0.5)
    assert result.measure == "hc"
    assert math.isclose(result.value_mm, ellipse.circumference * 0.5, rel_tol=0.01)
    assert math.isclose(result.ofd_mm, 60.0, rel_tol=0.01) and math.isclose(result.bpd_mm, 45.0, rel_tol=0.01)
    assert measure_plane(ellipse_to_mask(ellipse, (160, 256)), 1, 0.5).measure == "ac"  # class index 1


def test_femur_length_of_a_bar_within_one_pixel() -> None:
    mask = np.zeros((100, 160), np.uint8)
    mask[48:53, 30:111] = 1  # centres x = 30..110: 80 px end to end
    result = measure_plane(mask, "femur", pixel_size=0.4)
    assert result.measure == "fl" and abs(result.value_mm / 0.4 - 80.0) <= 1.0


def test_no_measurement_for_empty_cut_or_implausible_structures() -> None:
    with pytest.raises(NoMeasurementError, match="empty"):
        measure_plane(np.zeros((64, 64)), "head", 0.5)
    cut = ellipse_to_mask(Ellipse(-10.0, 80.0, 60.0, 45.0, 0.0), (160, 256))  # 44 % of its outline in the image
    with pytest.raises(NoMeasurementError, match="border"):
        measure_plane(cut, "head", 0.5)
    flat = ellipse_to_mask(Ellipse(128.0, 80.0, 60.0, 20.0, 0.0), (160, 256))
    with pytest.raises(NoMeasurementError, match="axis ratio"):
        measure_plane(flat, "abdomen", 0.5)
    with pytest.raises(NoMeasurementError, match="out of range"):
        measure_plane(ellipse_to_mask(Ellipse(128.0, 80.0, 60.0, 45.0, 0.0), (160, 256)), "head", 5.0)
    bar = np.zeros((50, 50), np.uint8)
    bar[20:23, 0:30] = 1
    with pytest.raises(NoMeasurementError, match="border"):
        measure_plane(bar, "femur", 0.5)


# --- samples and augmentation ------------------------------------------------------------------


def test_affine_ellipse_matches_a_fit_to_the_mapped_outline() -> None:
    ellipse = Ellipse(100.0, 60.0, 40.0, 25.0, 0.7)
    matrix = np.array([[0.3, 0.1, 5.0], [-0.2, 0.4, -3.0]])
    points = ellipse_outline(ellipse, 200) @ matrix[:, :2].T + matrix[:, 2]
    fitted, mapped = fit_ellipse(points), affine_ellipse(ellipse, matrix)
    got = [mapped.cx, mapped.cy, mapped.a, mapped.b, mapped.theta]
    assert np.allclose(got, [fitted.cx, fitted.cy, fitted.a, fitted.b, fitted.theta], atol=1e-3)


def test_sample_label_lies_on_the_scaled_and_rotated_image_of_the_structure() -> None:
    ellipse = Ellipse(400.0, 270.0, 150.0, 110.0, 0.5)
    frame = ellipse_to_mask(ellipse, (540, 800)).astype(np.uint8) * 255  # the image is the head itself
    rotation = PlaneAugmentation("rotate+20", rotation_deg=20.0)
    sample = make_plane_sample(frame, ellipse, pixel_size=0.1, spatial_size=(160, 256), augmentation=rotation)
    bright, label = sample["image"][0] > 0.5, sample["label"][0] > 0
    assert 2 * (bright & label).sum() / (bright.sum() + label.sum()) > 0.98
    scale = 160 / 540
    assert math.isclose(sample["pixel_size"], 0.1 / scale)
    assert math.isclose(sample["hc_px"] * sample["pixel_size"], ellipse.circumference * 0.1, rel_tol=1e-9)
    assert sample["image"].shape == sample["label"].shape == (1, 160, 256) and sample["image"].dtype == np.float32


def test_zoomed_sample_keeps_the_measurement_in_mm() -> None:
    ellipse = Ellipse(400.0, 270.0, 120.0, 90.0, 0.5)
    frame = ellipse_to_mask(ellipse, (540, 800)).astype(np.uint8) * 255
    plain = make_plane_sample(frame, ellipse, pixel_size=0.1, spatial_size=(160, 256))
    for augmentation in ZOOM_AUGMENTATIONS:
        sample = make_plane_sample(frame, ellipse, pixel_size=0.1, spatial_size=(160, 256), augmentation=augmentation)
        bright, label = sample["image"][0] > 0.5, sample["label"][0] > 0
        assert 2 * (bright & label).sum() / (bright.sum() + label.sum()) > 0.98, augmentation.name
        assert math.isclose(sample["hc_px"], plain["hc_px"] * augmentation.zoom, rel_tol=1e-9)
        assert math.isclose(sample["hc_px"] * sample["pixel_size"], ellipse.circumference * 0.1, rel_tol=1e-9)
    with pytest.raises(InputError, match="zoom must be positive"):
        PlaneAugmentation("bad", zoom=0.0)


def test_enlarging_zoom_is_dropped_where_the_head_would_leave_the_image() -> None:
    shape = (160, 256)
    large = Ellipse(128.0, 80.0, 110.0, 70.0, 0.0)  # 140 of 160 rows: 1.25 x would run out
    assert [a.name for a in augmentations_keeping_head(large, shape, ZOOM_AUGMENTATIONS)] == ["zoom0.80"]
    small = Ellipse(128.0, 80.0, 40.0, 30.0, 0.3)
    assert augmentations_keeping_head(small, shape, ZOOM_AUGMENTATIONS) == list(ZOOM_AUGMENTATIONS)


def test_augmentation_drops_samples_whose_head_leaves_the_image() -> None:
    shape = (160, 256)
    near_border = Ellipse(200.0, 80.0, 50.0, 35.0, 0.0)  # inside, 5 px from the right edge
    kept = augmentations_keeping_head(near_border, shape)
    names = {a.name for a in kept}
    assert {"identity", "flip-horizontal", "flip-vertical"} <= names
    assert "rotate+60" not in names and "rotate-60" not in names
    for augmentation in MTLN_AUGMENTATIONS:
        mask = ellipse_to_mask(affine_ellipse(near_border, augmentation.matrix(shape)), shape)
        touches = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
        area_kept = mask.sum() / ellipse_to_mask(near_border, shape).sum()
        if augmentation != IDENTITY:
            assert (augmentation in kept) == (not touches and area_kept > 0.99), augmentation.name
    centred = Ellipse(128.0, 80.0, 40.0, 30.0, 0.3)
    assert augmentations_keeping_head(centred, shape) == list(MTLN_AUGMENTATIONS)


def test_head_crop_window_frames_a_small_head_at_the_input_aspect_inside_the_frame() -> None:
    crop, shape, spatial_size = HeadCrop(margin=1.3, min_zoom=1.2, max_zoom=3.0), (540, 800), (160, 256)
    head = Ellipse(300.0, 200.0, 120.0, 90.0, 0.0)  # bounding box 240 x 180 px: a zoom of 540 / 234 = 2.3
    top, left, rows, columns = crop.window(head, shape, spatial_size)
    assert rows == round(1.3 * max(180.0, 240.0 * 160 / 256)) and abs(columns / rows - 256 / 160) < 0.01
    assert abs(top + rows / 2 - 200.0) <= 1 and abs(left + columns / 2 - 300.0) <= 1
    tiny = Ellipse(30.0, 500.0, 10.0, 8.0, 0.0)  # in a corner: the window is capped at 3 x and kept inside
    top, left, rows, columns = crop.window(tiny, shape, spatial_size)
    assert rows == round(540 / 3.0) and (top, left) == (540 - rows, 0)
    assert crop.window(Ellipse(400.0, 270.0, 300.0, 230.0, 0.0), shape, spatial_size) is None  # fills the frame
    for bad in ({"margin": 0.9}, {"min_zoom": 0.5}, {"min_zoom": 2.0, "max_zoom": 1.5}):
        with pytest.raises(InputError, match="head crop"):
            HeadCrop(**bad)


def test_head_crop_samples_are_the_window_letterboxed_with_the_head_in_mm() -> None:
    head = Ellipse(300.0, 220.0, 120.0, 90.0, 0.4)
    frame = ellipse_to_mask(head, (540, 800)).astype(np.uint8) * 255
    plane = AnnotatedPlane("small.png", lambda: frame, (540, 800), 0.1, head)
    plain = PlaneSampleDataset([plane], (160, 256), MTLN_AUGMENTATIONS[:3])
    cropped = PlaneSampleDataset([plane], (160, 256), MTLN_AUGMENTATIONS[:3], head_crop=HeadCrop())
    assert len(plain) == 3 and len(cropped) == 6
    window = cropped[3], plain[0]
    zoom = window[0]["hc_px"] / window[1]["hc_px"]
    assert 2.1 < zoom < 2.5  # a window 1.3 x the head's bounding box, which is 170 to 180 rows
    for sample in window:
        bright, label = sample["image"][0] > 0.5, sample["label"][0] > 0
        assert 2 * (bright & label).sum() / (bright.sum() + label.sum()) > 0.98
        assert math.isclose(sample["hc_px"] * sample["pixel_size"], head.circumference * 0.1, rel_tol=1e-9)


def test_finer_look_windows_large_heads_and_trains_on_crops_at_its_scale() -> None:
    spatial_size, look_size, shape = (160, 256), (224, 352), (540, 800)
    finer = HeadCrop(look_size=look_size)
    large = Ellipse(400.0, 270.0, 260.0, 200.0, 0.0)  # too large for a second look at 160 x 256
    assert HeadCrop().window(large, shape, spatial_size) is None
    window = finer.window(large, shape, spatial_size)
    top, left, rows, columns = window  # the head 224 / 160 = 1.4 times finer than a look at the whole frame
    assert (top, left, rows, columns) == (10, 0, 520, 800)  # 1.3 x its bounding box's height, the frame's width
    crops = finer.training_windows(window, shape, spatial_size)  # the window, at 160 x 256, shows it too coarse
    scale = min(look_size[0] / rows, look_size[1] / columns)
    crop_rows, crop_columns = round(160 / scale), round(256 / scale)
    assert crops == [
        (top + row_offset, left + column_offset, crop_rows, crop_columns)
        for row_offset in (0, rows - crop_rows)
        for column_offset in (0, columns - crop_columns)
    ]
    for _, _, rows, columns in crops:  # letterboxed to the network's input, a crop has the finer look's scale
        assert min(spatial_size[0] / rows, spatial_size[1] / columns) == pytest.approx(scale, rel=0.01)
    small = Ellipse(300.0, 200.0, 100.0, 80.0, 0.0)  # its window, at 160 x 256, is also a training sample
    small_window = finer.window(small, shape, spatial_size)
    assert finer.training_windows(small_window, shape, spatial_size)[0] == small_window
    assert HeadCrop().training_windows((10, 20, 100, 160), shape, spatial_size) == [(10, 20, 100, 160)]
    for bad in ((224,), (224.0, 352), (0, 352)):
        with pytest.raises(InputError, match="look_size"):
            HeadCrop(look_size=bad)


def test_finer_look_for_large_heads_only_trains_small_heads_on_their_windows_alone() -> None:
    spatial_size, shape = (160, 256), (540, 800)
    routed = HeadCrop(look_size=(224, 352), large_heads_only=True)
    every_head = HeadCrop(look_size=(224, 352))
    small, large = Ellipse(300.0, 200.0, 100.0, 80.0, 0.0), Ellipse(400.0, 270.0, 260.0, 200.0, 0.0)
    small_window, large_window = routed.window(small, shape, spatial_size), routed.window(large, shape, spatial_size)
    assert routed.coarse_look_enlarges(small_window, shape, spatial_size)
    assert not routed.coarse_look_enlarges(large_window, shape, spatial_size)
    assert routed.training_windows(small_window, shape, spatial_size) == [small_window]
    assert len(every_head.training_windows(small_window, shape, spatial_size)) == 5  # the window and 4 crops
    assert routed.training_windows(large_window, shape, spatial_size) == every_head.training_windows(
        large_window, shape, spatial_size
    )
    assert routed.look_input_size(small_window, shape, spatial_size) == spatial_size
    assert routed.look_input_size(large_window, shape, spatial_size) == (224, 352)
    assert every_head.look_input_size(small_window, shape, spatial_size) == (224, 352)
    assert HeadCrop().look_input_size(small_window, shape, spatial_size) == spatial_size


def test_finer_look_samples_add_unaugmented_crops_of_the_head_to_its_window() -> None:
    head = Ellipse(320.0, 250.0, 150.0, 120.0, 0.2)
    frame = ellipse_to_mask(head, (540, 800)).astype(np.uint8) * 255
    plane = AnnotatedPlane("head.png", lambda: frame, (540, 800), 0.1, head)
    finer = HeadCrop(look_size=(224, 352))
    dataset = PlaneSampleDataset([plane], (160, 256), MTLN_AUGMENTATIONS[:3], head_crop=finer)
    window = finer.window(head, (540, 800), (160, 256))
    windowed = [(item["window"], item["augmentation"].name) for item in dataset.data if item["window"] is not None]
    assert windowed[:3] == [(window, augmentation.name) for augmentation in MTLN_AUGMENTATIONS[:3]]
    assert len(windowed) == 7 and {name for _, name in windowed[3:]} == {"identity"}
    for index in range(len(dataset) - 4, len(dataset)):
        crop = dataset[index]
        bright, label = crop["image"][0] > 0.5, crop["label"][0] > 0
        assert 2 * (bright & label).sum() / (bright.sum() + label.sum()) > 0.98
        assert not label.all() and label.any()  # part of the head, cut by the crop's edges
        assert math.isclose(crop["hc_px"] * crop["pixel_size"], head.circumference * 0.1, rel_tol=1e-9)


def test_hc18_samples_carry_the_reference_hc() -> None:
    if not (HC18_DIR / hc18.TRAINING_CSV).is_file():
        pytest.skip(f"HC18 not found at {HC18_DIR} (set HC18_DIR)")
    records = hc18.training_records(HC18_DIR)[:3]
    dataset = HC18PlaneDataset(records, augmentations=MTLN_AUGMENTATIONS, transform=BoundaryWeightMapd(keys="label"))
    assert 3 <= len(dataset) <= 27
    for sample in (dataset[0], dataset[len(dataset) - 1]):
        record = next(r for r in records if r.filename == sample["filename"])
        assert abs(sample["hc_px"] * sample["pixel_size"] - record.hc_mm) < 0.1
        assert sample["image"].shape == sample["label"].shape == sample["weight"].shape == (1, 160, 256)
        assert np.isclose(sample["weight"].max(), 31.0)
    assert dataset.max_hc_px() == max(item["hc_px"] for item in dataset.data)


def test_soft_label_crosses_one_half_on_the_reference_ellipse_between_pixels() -> None:
    frame = np.zeros((540, 800), np.uint8)
    reference = Ellipse(401.3, 268.8, 200.0, 150.0, 0.3)
    sample = make_plane_sample(frame, reference, 0.1, (160, 256), label_supersampling=4)
    soft = EllipseSoftLabeld(keys="label", softness=0.5)(sample)["label"][0]
    scaled = decode_ellipse(sample["ellipse"], (160, 256))
    # along the row through the centre, the 0.5 crossing interpolated between pixels is the outline's column
    row = int(round(scaled.cy))
    columns = np.arange(256)
    right = columns > scaled.cx
    crossing = np.interp(0.5, soft[row, right][::-1], columns[right][::-1])
    outline_x = [x for x, y in ellipse_outline(scaled, 20000) if abs(y - row) < 0.01 and x > scaled.cx]
    assert crossing == pytest.approx(np.mean(outline_x), abs=0.05)
    # the same head area as the area fractions, and 0.27 / 0.73 one softness outside / inside
    assert soft.sum() == pytest.approx(sample["label"].sum(), rel=2e-3)
    inward_distance = -ellipse_signed_distance(scaled, (160, 256))
    assert np.allclose(soft, 1.0 / (1.0 + np.exp(-np.clip(inward_distance / 0.5, -50.0, 50.0))), atol=1e-6)
    femur = dict(sample, plane=np.int64(PLANE_CLASSES.index("femur")))
    assert EllipseSoftLabeld(keys="label")(femur)["label"] is sample["label"]
    with pytest.raises(ValueError, match="softness"):
        EllipseSoftLabeld(keys="label", softness=0.0)


def test_weighted_dice_ce_takes_area_fractions_as_soft_targets() -> None:
    logits = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(5))
    fractions = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(6))
    loss = BoundaryWeightedDiceCELoss(smooth=0.0)(logits, fractions, torch.ones_like(fractions))
    targets = torch.cat((1 - fractions, fractions), dim=1)
    p = torch.softmax(logits, 1)[:, 1:]
    dice = 1 - 2 * (p * fractions).sum((1, 2, 3)) / (p.sum((1, 2, 3)) + fractions.sum((1, 2, 3)))
    assert torch.allclose(loss, F.cross_entropy(logits, targets) + dice.mean(), atol=1e-5)
    # the loss is smallest where the prediction matches the fractions, not a rounded mask
    exact = torch.log(targets.clamp_min(1e-6))
    rounded = torch.log(torch.cat((fractions < 0.5, fractions >= 0.5), dim=1).float().clamp_min(1e-6))
    criterion = BoundaryWeightedDiceCELoss(smooth=0.0)
    weights = torch.ones_like(fractions)
    assert criterion(exact, fractions, weights) < criterion(rounded, fractions, weights)
