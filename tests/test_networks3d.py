"""Tests of the 3D whole-fetal-head segmentor (fetalbiometry.networks, fetalbiometry.segment3d.losses, fetalbiometry.segment3d.training).

Tiny widths and 16^3 volumes keep the file fast on a busy CPU.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from fetalbiometry.segment3d.losses import DeepSupervisedCrossEntropy, LabelCrossEntropyLoss
from fetalbiometry.networks import (
    VARIANTS,
    AttentionModule,
    AutoContextCascade,
    SliceWise2D,
    USegNet,
    build_network,
)
from fetalbiometry.segment3d.training import train_auto_context

TINY = {"features": (4, 8, 8, 16), "attention_out_channels": 8, "attention_channels": 4}
SIZE = 16


def volume(batch: int = 1, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, size, size, size, generator=torch.Generator().manual_seed(seed))


def sphere_label(size: int = SIZE) -> torch.Tensor:
    grid = torch.stack(torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * 3, indexing="ij"))
    return ((grid - (size - 1) / 2).pow(2).sum(0) < (size / 3) ** 2).float()[None, None]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_predicts_two_classes_at_input_size(name: str) -> None:
    net = build_network(name, **TINY).eval()
    with torch.no_grad():
        out = net(volume(batch=2))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 2, SIZE, SIZE, SIZE)
    assert torch.isfinite(out).all()


def test_registry_holds_the_papers_names_and_settings() -> None:
    table1 = {"p-USegNet", "2D-USegNet", "3D-DeconvNet", "USegNet", "USegNet-DS", "USegNet-DS-UAM"}
    table1 |= {"USegNet-DS-SAM", "USegNet-DS-HAS", "USegNet-DS-HAS-Ctx"}
    table2 = {"SAM-1", "SAM-12", "UAM-1", "UAM-12"}
    assert set(VARIANTS) == table1 | table2
    assert VARIANTS["p-USegNet"].sliding_window and VARIANTS["p-USegNet"].patch_size == (64, 64, 64)
    assert not any(spec.sliding_window for name, spec in VARIANTS.items() if name != "p-USegNet")
    assert isinstance(build_network("USegNet-DS-HAS-Ctx", **TINY), AutoContextCascade)
    assert isinstance(build_network("2D-USegNet", **TINY), SliceWise2D)
    with pytest.raises(ValueError, match="unknown network variant"):
        build_network("USegNet-XL")


def test_deep_supervision_returns_main_then_half_then_quarter_resolution_in_training() -> None:
    net = build_network("USegNet-DS-HAS", **TINY).train()
    outputs = net(volume(batch=2))
    assert [tuple(o.shape) for o in outputs] == [(2, 2, 16, 16, 16), (2, 2, 8, 8, 8), (2, 2, 4, 4, 4)]
    side_branches = [m for m in net.aux_heads.modules() if isinstance(m, nn.Conv3d)]
    assert len(side_branches) == 2 and all(m.kernel_size == (1, 1, 1) for m in side_branches)
    assert not any(isinstance(m, nn.ConvTranspose3d) for m in net.aux_heads.modules())
    assert isinstance(build_network("USegNet", **TINY).train()(volume()), torch.Tensor)


def test_attention_module_gives_64_channels_and_a_channel_softmax() -> None:
    module = AttentionModule(spatial_dims=3, in_channels=12).eval()
    features = torch.randn(2, 12, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        projected = module.project(features)
        attention = module.attention_map(projected)
        out = module(features)
    assert out.shape == (2, 64, 8, 8, 8)
    assert projected.shape[1] == 32 and attention.shape == projected.shape
    assert torch.allclose(attention.sum(dim=1), torch.ones(2, 8, 8, 8), atol=1e-5)
    assert (attention > 0).all() and (attention < 1).all()
    convs = [m for m in module.modules() if isinstance(m, nn.Conv3d)]
    assert [c.kernel_size for c in convs[:3]] == [(1, 1, 1), (3, 3, 3), (3, 3, 3)]  # H(θ) of Eq. 3
    assert convs[-1].in_channels == 64  # concatenation of P(X) and T(X)


def test_attention_levels_are_numbered_from_the_deepest_decoder_level() -> None:
    net = build_network("SAM-1", **TINY)
    assert isinstance(net.decoder[0].skip_attention, AttentionModule)
    assert all(isinstance(level.skip_attention, nn.Identity) for level in net.decoder[1:])
    net = build_network("UAM-12", **TINY)
    assert [isinstance(level.upsample_attention, AttentionModule) for level in net.decoder] == [True, True, False]
    sizes = []
    net.decoder[0].register_forward_hook(lambda module, args, out: sizes.append(out.shape[-1]))
    net.eval()(volume())
    assert sizes == [SIZE // 4]  # level 1 works at 1/4 resolution
    with pytest.raises(ValueError, match="skip_connections"):
        USegNet(skip_connections=False, sam_levels=(1,))
    with pytest.raises(ValueError, match="1..3"):
        USegNet(uam_levels=(4,))


def test_deconvnet_ignores_the_encoder_features_that_usegnet_concatenates() -> None:
    def noisy_skips(module: nn.Module, args: tuple) -> tuple:
        coarse, skip = args
        return coarse, torch.randn_like(skip)

    for name, expect_skip in (("3D-DeconvNet", False), ("USegNet", True)):
        net = build_network(name, **TINY).eval()
        image = volume()
        with torch.no_grad():
            clean = net(image)
            handles = [level.register_forward_pre_hook(noisy_skips) for level in net.decoder]
            noisy = net(image)
        for handle in handles:
            handle.remove()
        uses_skips = not torch.allclose(clean, noisy)
        assert uses_skips == expect_skip
        block_inputs = [level.convs.conv1.conv.in_channels for level in net.decoder]
        widths = [level.convs.conv1.conv.out_channels for level in net.decoder]
        assert block_inputs == ([2 * w for w in widths] if expect_skip else widths)


def test_auto_context_level_two_sees_image_plus_level_one_foreground_probability() -> None:
    cascade = build_network("USegNet-DS-HAS-Ctx", **TINY).eval()
    seen = []
    cascade.levels[1].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    image = volume(batch=2)
    with torch.no_grad():
        final = cascade(image)
        first = cascade.levels[0](image)
        second = cascade.levels[1](seen[0])
    expected_input = image + torch.softmax(first, dim=1)[:, 1:2]
    assert torch.allclose(seen[0], expected_input, atol=1e-6)
    assert torch.equal(final, second)


def test_auto_context_trains_level_two_with_level_one_frozen() -> None:
    cascade = build_network("USegNet-DS-HAS-Ctx", **TINY)
    cascade.freeze_levels_below(2)
    cascade.train()
    assert not cascade.levels[0].training and cascade.levels[1].training
    assert not any(p.requires_grad for p in cascade.levels[0].parameters())
    before = [t.clone() for t in cascade.levels[0].state_dict().values()]
    level_two_before = [p.clone() for p in cascade.levels[1].parameters()]
    optimizer = torch.optim.SGD([p for p in cascade.parameters() if p.requires_grad], lr=0.1)
    outputs = cascade(volume())
    assert len(outputs) == 3  # the trained level's deep supervision outputs
    DeepSupervisedCrossEntropy()(outputs, sphere_label()).backward()
    optimizer.step()
    after = list(cascade.levels[0].state_dict().values())
    assert all(torch.equal(a, b) for a, b in zip(before, after))  # weights and BN statistics
    assert any(not torch.equal(a, b) for a, b in zip(level_two_before, cascade.levels[1].parameters()))
    with pytest.raises(ValueError):
        cascade.freeze_levels_below(3)


def test_slice_wise_wrapper_equals_the_2d_network_on_each_axial_slice() -> None:
    net2d = USegNet(spatial_dims=2, features=(4, 8, 8, 16)).eval()
    wrapped = SliceWise2D(net2d).eval()
    image = volume(batch=2, size=8)
    with torch.no_grad():
        out = wrapped(image)
        per_slice = torch.stack([net2d(image[..., z]) for z in range(8)], dim=-1)
    assert torch.allclose(out, per_slice, atol=1e-5)


def test_deep_supervised_cross_entropy_is_eq2_with_downscaled_ground_truth() -> None:
    coarse = (torch.rand(2, 1, 4, 4, 4, generator=torch.Generator().manual_seed(1)) > 0.5).long()
    half = coarse.repeat_interleave(2, 2).repeat_interleave(2, 3).repeat_interleave(2, 4)
    label = half.repeat_interleave(2, 2).repeat_interleave(2, 3).repeat_interleave(2, 4)
    generator = torch.Generator().manual_seed(2)
    outputs = [torch.randn(2, 2, s, s, s, generator=generator) for s in (16, 8, 4)]
    expected = sum(F.cross_entropy(o, y[:, 0]) for o, y in zip(outputs, (label, half, coarse)))
    loss = DeepSupervisedCrossEntropy()
    assert torch.allclose(loss(outputs, label), expected, atol=1e-5)
    assert torch.allclose(loss(outputs, label.float()), expected, atol=1e-5)
    assert torch.allclose(loss(outputs[0], label), F.cross_entropy(outputs[0], label[:, 0]), atol=1e-6)
    assert torch.allclose(LabelCrossEntropyLoss()(outputs[0], label[:, 0]), loss(outputs[0], label))


def test_has_network_overfits_one_volume() -> None:
    torch.manual_seed(0)
    net = build_network("USegNet-DS-HAS", **TINY).train()
    label = sphere_label()
    image = label + 0.3 * volume()
    loss_fn = DeepSupervisedCrossEntropy()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-5)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = loss_fn(net(image), label)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_torchscript_and_onnx_match_eager(tmp_path) -> None:
    cascade = build_network("USegNet-DS-HAS-Ctx", **TINY).eval()
    image = volume(batch=1)
    with torch.no_grad():
        eager = cascade(image)
        scripted = torch.jit.script(cascade)(image)
    assert torch.allclose(scripted, eager, atol=1e-4)

    onnxruntime = pytest.importorskip("onnxruntime")
    path = tmp_path / "usegnet_ds_has.onnx"
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"}
    torch.onnx.export(
        cascade,
        (image,),
        str(path),
        dynamo=False,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": axes, "logits": axes},
    )
    other = volume(batch=2, size=8)  # another batch and size than the one exported with
    with torch.no_grad():
        expected = cascade(other).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": other.numpy()})
    assert logits.shape == expected.shape
    assert abs(logits - expected).max() < 1e-4


def test_authors_decoder_layout_ends_each_level_with_its_uam():
    """convs_after_attention=False: the UAM is the level's only fusion (authors' released code)."""
    net = USegNet(
        features=(8, 16, 16, 16),
        deep_supervision=True,
        uam_levels=(1, 2, 3),
        sam_levels=(1, 2, 3),
        attention_out_channels=12,
        attention_channels=8,
        convs_after_attention=False,
    )
    assert all(isinstance(level.convs, nn.Identity) and level.out_channels == 12 for level in net.decoder)
    assert net.output_head.conv.in_channels == 12
    assert [head.conv.in_channels for head in net.aux_heads] == [12, 12]
    net.train()
    outputs = net(torch.randn(1, 1, 16, 16, 16))
    assert [tuple(output.shape[2:]) for output in outputs] == [(16, 16, 16), (8, 8, 8), (4, 4, 4)]
    # without a UAM the level keeps its convolutions and its width whatever the switch says
    one_uam = USegNet(features=(8, 16, 16, 16), uam_levels=(1,), convs_after_attention=False, attention_out_channels=12)
    assert [level.out_channels for level in one_uam.decoder] == [12, 16, 8]
    assert one_uam.decoder[1].upconv.conv.in_channels == 12  # the next level takes the UAM's width


def test_cosine_learning_rate_decay_restarts_with_each_auto_context_level() -> None:
    cascade = build_network("USegNet-DS-HAS-Ctx", **TINY)
    batch = {"image": volume(), "label": sphere_label()}
    epochs = 3
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=[batch, batch],
        network=cascade,
        optimizer=torch.optim.Adam(cascade.parameters()),
        loss_function=DeepSupervisedCrossEntropy(),
        decollate=False,
    )
    learning_rates: list[float] = []
    trainer.add_event_handler(
        Events.EPOCH_STARTED, lambda engine: learning_rates.append(engine.optimizer.param_groups[0]["lr"])
    )
    make_optimizer = partial(torch.optim.Adam, lr=1e-3)
    make_scheduler = partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=epochs)
    train_auto_context(trainer, cascade, make_optimizer, make_scheduler)
    level_schedule = [1e-3 * (1 + math.cos(math.pi * epoch / epochs)) / 2 for epoch in range(epochs)]
    assert learning_rates == pytest.approx(level_schedule * 2)
    learning_rates.clear()
    train_auto_context(trainer, cascade, make_optimizer)  # no schedule: constant, and no handler left behind
    assert learning_rates == pytest.approx([1e-3] * (2 * epochs))


def test_volume_batch_norm_trains_as_batch_norm_and_infers_with_the_volume_s_statistics() -> None:
    from fetalbiometry.networks.normalization import VolumeBatchNorm3d

    torch.manual_seed(0)
    plain, volume = torch.nn.BatchNorm3d(4), VolumeBatchNorm3d(4)
    x = torch.randn(1, 4, 6, 7, 8) * 3.0 + 1.0
    assert torch.allclose(plain.train()(x), volume.train()(x), atol=1e-5)
    assert torch.allclose(plain.running_mean, volume.running_mean) and torch.allclose(plain.running_var, volume.running_var)
    volume.eval()
    # in evaluation mode too, an input and its shifted and scaled copy normalise to the same values
    assert torch.allclose(volume(x), volume(10.0 * x - 4.0), atol=1e-4)
    assert torch.allclose(volume(x), plain.train()(x), atol=1e-5)
    assert torch.allclose(torch.jit.script(volume)(x), volume(x), atol=1e-5)  # exports keep working


def test_every_variant_normalises_with_the_volume_s_statistics_and_loads_plain_weights() -> None:
    from fetalbiometry.networks.normalization import VolumeBatchNorm2d, VolumeBatchNorm3d

    for variant in VARIANTS:
        network = build_network(variant, features=(4, 8, 8, 8), attention_out_channels=8, attention_channels=4)
        norms = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert norms and all(isinstance(m, (VolumeBatchNorm2d, VolumeBatchNorm3d)) for m in norms), variant
    plain = USegNet(features=(4, 8, 8, 8))
    build_network("USegNet", features=(4, 8, 8, 8)).load_state_dict(plain.state_dict())  # strict: same keys
