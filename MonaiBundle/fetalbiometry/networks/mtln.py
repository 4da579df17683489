"""MTLN: the multi-task LinkNet with multi-scale inputs and an Ellipse Tuner.

Sobhaninia Z, Rafiei S, Emami A, et al. "Fetal ultrasound image segmentation for measuring
biometric parameters using multi-task deep learning", EMBC 2019
(``shared/papers/mtln-multitask-linknet-hc.txt``), section II and Fig. 2, on LinkNet
(Chaurasia A, Culurciello E, "LinkNet: exploiting encoder representations for efficient semantic
segmentation", VCIP 2017).

The Ellipse Tuner regresses the head ellipse in a normalised form (:func:`encode_ellipse`):

    p = (cx / W, cy / H, a / W, b / W, θ / π)

for an image of H rows and W columns, in the HC18 convention of
:mod:`fetalbiometry.biometry.ellipse` (x = column, y = row, a along the direction θ), with the
ellipse first normalised to a >= b and θ in [0, π). The centre is divided by the image side it
runs along, so it lies in [0, 1]; both semi-axes are divided by the same length W so that their
ratio, and the normalised values, do not change when the ellipse turns; θ/π lies in [0, 1). The
angle wraps: θ = 0.01 and θ = π − 0.01 are nearly the same ellipse but far apart in p; the paper
regresses the angle plainly and so do we (nearly circular heads, whose angle hardly matters, are
where this bites most).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Dict, List

import numpy as np
import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, UnetResBlock
from monai.networks.layers.factories import Pool
from monai.networks.nets import FullyConnectedNet

from fetalbiometry.biometry.ellipse import Ellipse
from fetalbiometry.errors import InputError, NoMeasurementError
from fetalbiometry.networks.blocks import check_spatial_size

__all__ = [
    "ELLIPSE_KEY",
    "SEGMENTATION_KEY",
    "EllipseTuner",
    "LinkNetDecoderBlock",
    "MTLN",
    "ResBlock",
    "decode_ellipse",
    "encode_ellipse",
]

SEGMENTATION_KEY = "segmentation"
"""Output key of the segmentation logits (B, out_channels, H, W)."""

ELLIPSE_KEY = "ellipse"
"""Output key of the Ellipse Tuner's normalised ellipse parameters (B, 5)."""

_SPATIAL_DIMS = 2  # the ellipse parameters are those of a 2D image


def encode_ellipse(ellipse: Ellipse, shape: Sequence[int]) -> np.ndarray:
    """The Ellipse Tuner's target for an ellipse in pixels (see the module docstring).

    Args:
        ellipse: ellipse in pixels, HC18 convention.
        shape: (rows H, columns W) of the image.

    Returns:
        float32 array (cx/W, cy/H, a/W, b/W, θ/π), with a >= b and θ in [0, π).
    """
    rows, columns = shape
    e = ellipse.normalized()
    return np.array([e.cx / columns, e.cy / rows, e.a / columns, e.b / columns, e.theta / math.pi], dtype=np.float32)


def decode_ellipse(params: Sequence[float] | np.ndarray | torch.Tensor, shape: Sequence[int]) -> Ellipse:
    """The ellipse in pixels that normalised parameters (:func:`encode_ellipse`) stand for.

    Args:
        params: the 5 values (cx/W, cy/H, a/W, b/W, θ/π), e.g. one row of the Ellipse Tuner output.
        shape: (rows H, columns W) of the image.

    Returns:
        The ellipse in pixels, normalised (a >= b, θ in [0, π)).

    Raises:
        InputError: not 5 values.
        NoMeasurementError: a predicted semi-axis is not positive, or a value is not finite.
    """
    values = params.detach().cpu().numpy() if isinstance(params, torch.Tensor) else np.asarray(params)
    values = values.astype(np.float64).ravel()
    if values.size != 5:
        raise InputError(f"expected 5 ellipse parameters, got {values.size}")
    rows, columns = shape
    cx, cy, a, b, angle = values
    if not (np.isfinite(values).all() and a > 0 and b > 0):
        raise NoMeasurementError(f"the predicted ellipse parameters do not describe an ellipse: {values.tolist()}")
    return Ellipse(cx * columns, cy * rows, a * columns, b * columns, angle * math.pi).normalized()


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, **kwargs) -> Convolution:
    """A 2D convolution (or full-convolution with ``is_transposed=True``) followed by BN and ReLU."""
    return Convolution(
        _SPATIAL_DIMS, in_channels, out_channels, kernel_size=kernel_size, norm="batch", act="relu", **kwargs
    )


class ResBlock(nn.Sequential):
    """MTLN encoder block: convolutions with a residual link, then pooling (section II.A).

    "ResBlock [...] comprise of convolutional and pooling layers with a residual link": two 3x3
    Conv-BN layers with an identity (or 1x1 projection) shortcut and ReLU (MONAI's
    :class:`~monai.networks.blocks.UnetResBlock`, a ResNet basic block), then 2x2 max pooling.

    Args:
        in_channels: number of input channels.
        out_channels: number of output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.add_module(
            "residual",
            UnetResBlock(_SPATIAL_DIMS, in_channels, out_channels, 3, 1, norm_name="batch", act_name="relu"),
        )
        self.add_module("pool", Pool[Pool.MAX, _SPATIAL_DIMS](kernel_size=2))


class LinkNetDecoderBlock(nn.Sequential):
    """LinkNet decoder block: 1x1 conv (m → m/4), 3x3 full-conv ×2 up (m/4 → m/4), 1x1 conv (m/4 → n).

    Every convolution is followed by batch normalisation and ReLU (Chaurasia & Culurciello 2017,
    Fig. 4); the bottleneck to m/4 channels keeps the decoder light.

    Args:
        in_channels: m, channels of the coarser features.
        out_channels: n, channels of the encoder features it is added to.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        middle = max(in_channels // 4, 1)
        self.add_module("reduce", _conv_bn_relu(in_channels, middle, kernel_size=1))
        self.add_module("upsample", _conv_bn_relu(middle, middle, kernel_size=3, strides=2, is_transposed=True))
        self.add_module("expand", _conv_bn_relu(middle, out_channels, kernel_size=1))


class EllipseTuner(nn.Sequential):
    """The Ellipse Tuner: bottleneck features → three fully connected layers → 5 ellipse parameters.

    Section II.B: "the extracted features are fed into three Fully Connected (FC) layers for tuning
    ellipse parameters". The features are first average-pooled to a fixed ``grid`` so that the FC
    input size does not depend on the image size (the paper does not give its input size); the
    flattened grid keeps where the head lies. Hidden layers use ReLU; the output is linear and
    predicts the normalised parameters of :func:`encode_ellipse`.

    Args:
        in_channels: channels of the bottleneck features.
        hidden_channels: widths of the two hidden FC layers (not given in the paper).
        grid: (rows, columns) the features are pooled to before flattening.
    """

    def __init__(
        self, in_channels: int, hidden_channels: Sequence[int] = (256, 64), grid: Sequence[int] = (4, 4)
    ) -> None:
        super().__init__()
        self.add_module("pool", Pool[Pool.ADAPTIVEAVG, _SPATIAL_DIMS](tuple(grid)))
        self.add_module(
            "fc", FullyConnectedNet(in_channels * math.prod(grid), 5, hidden_channels, act="relu")
        )


class MTLN(nn.Module):
    """Multi-task LinkNet (MTLN) with multi-scale inputs and an Ellipse Tuner (section II, Fig. 2).

    - Initial block: 7x7 convolution with stride 2, BN, ReLU (LinkNet) → ``features[0]`` channels
      at 1/2 resolution: the first feature map.
    - Encoder: one :class:`ResBlock` per further entry of ``features``, each halving the resolution.
    - Multi-scale inputs: "we have concatenated first and second feature maps of the network with
      the down-sampled versions of the input image": the image average-pooled to 1/2 is
      concatenated to the initial block's output (input of the first ResBlock), and the image at
      1/4 to the first ResBlock's output (input of the second).
    - Decoder: one :class:`LinkNetDecoderBlock` per ResBlock; "skip-connections connect
      corresponding encoders and decoders of similar dimensions": as in LinkNet, each decoder's
      output is added to the encoder features of the same size (before the image concatenation).
    - Final block (LinkNet): 3x3 full-conv ×2 up to ``features[0] // 2`` channels, 3x3 conv, and a
      1x1 convolution to ``out_channels`` class logits at the input resolution.
    - Ellipse Tuner (:class:`EllipseTuner`) on the bottleneck (the deepest encoder output).

    With the default LinkNet widths the network halves the resolution 5 times, so the input sizes
    must be multiples of 32 (e.g. 160 x 256, see :mod:`fetalbiometry.data.hc18_dataset`).

    The HC is measured, as in the paper, on the segmentation: an ellipse fitted to the argmax mask
    (``measure_plane(mask, "head", pixel_size)``, :func:`fetalbiometry.biometry.measure_plane`);
    :func:`decode_ellipse` turns the Ellipse Tuner's output into a second, direct estimate.

    The output is a dict in training and in evaluation alike: ``{"segmentation": logits (B,
    out_channels, H, W), "ellipse": (B, 5)}``, without ``"ellipse"`` when ``ellipse_tuner`` is
    False. It is TorchScript-able (``torch.jit.script``).

    Args:
        in_channels: image channels.
        out_channels: segmentation classes (background, head).
        features: channels of the initial block then of each ResBlock (LinkNet: 64, 64, 128, 256, 512).
        multi_scale_inputs: concatenate the 1/2 and 1/4 scale image as above; False gives a plain
            LinkNet input.
        ellipse_tuner: add the Ellipse Tuner (multi-task); False is the paper's single-task ablation,
            whose DSC is 92.67 % against 96.84 % with it (section III.C).
        tuner_hidden_channels: hidden FC widths of the Ellipse Tuner.
        tuner_grid: grid the bottleneck is pooled to before the Ellipse Tuner's FC layers.

    Raises:
        ValueError: fewer than 3 feature levels (the multi-scale inputs need two ResBlocks).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (64, 64, 128, 256, 512),
        multi_scale_inputs: bool = True,
        ellipse_tuner: bool = True,
        tuner_hidden_channels: Sequence[int] = (256, 64),
        tuner_grid: Sequence[int] = (4, 4),
    ) -> None:
        super().__init__()
        if len(features) < 3:
            raise ValueError(f"MTLN needs an initial block and at least 2 ResBlocks, got features={tuple(features)}.")
        self.multi_scale_inputs = multi_scale_inputs
        self.size_divisor = 2 ** len(features)
        image_channels = in_channels if multi_scale_inputs else 0
        self.initial_block = _conv_bn_relu(in_channels, features[0], kernel_size=7, strides=2)
        self.half_scale = Pool[Pool.AVG, _SPATIAL_DIMS](kernel_size=2)
        encoder_inputs = [features[0] + image_channels, features[1] + image_channels, *features[2:-1]]
        self.encoder = nn.ModuleList(ResBlock(c_in, c_out) for c_in, c_out in zip(encoder_inputs, features[1:]))
        # deepest first: decoder[k] brings features[-1 - k] up to the size and width of features[-2 - k]
        self.decoder = nn.ModuleList(
            LinkNetDecoderBlock(c_in, c_out) for c_in, c_out in zip(features[:0:-1], features[-2::-1])
        )
        final = features[0] // 2
        self.final_block = nn.Sequential(
            _conv_bn_relu(features[0], final, kernel_size=3, strides=2, is_transposed=True),
            _conv_bn_relu(final, final, kernel_size=3),
            Convolution(_SPATIAL_DIMS, final, out_channels, kernel_size=1, conv_only=True),
        )
        self.ellipse_tuner = EllipseTuner(features[-1], tuner_hidden_channels, tuner_grid) if ellipse_tuner else None

    def forward(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Args:
            image: shape (B, in_channels, H, W), H and W multiples of :attr:`size_divisor`.

        Returns:
            ``{"segmentation": (B, out_channels, H, W) logits, "ellipse": (B, 5)}`` (no
            ``"ellipse"`` without the Ellipse Tuner).

        Raises:
            ValueError: a spatial size is not a multiple of :attr:`size_divisor`.
        """
        check_spatial_size(image, self.size_divisor, "MTLN")
        hidden = self.initial_block(image)
        skips: List[torch.Tensor] = [hidden]
        scaled_image = image
        for index, block in enumerate(self.encoder):
            if self.multi_scale_inputs and index < 2:
                scaled_image = self.half_scale(scaled_image)
                hidden = torch.cat((hidden, scaled_image), dim=1)
            hidden = block(hidden)
            skips.append(hidden)
        outputs: Dict[str, torch.Tensor] = {}
        if self.ellipse_tuner is not None:
            outputs["ellipse"] = self.ellipse_tuner(hidden)  # ELLIPSE_KEY: TorchScript reads no str globals
        for index, block in enumerate(self.decoder):
            hidden = block(hidden) + skips[len(skips) - 2 - index]
        outputs["segmentation"] = self.final_block(hidden)  # SEGMENTATION_KEY
        return outputs
