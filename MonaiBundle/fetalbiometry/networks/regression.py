"""Regression CNNs that predict the head circumference directly, without segmentation.

Zhang J, Petitjean C, Lopez P, Ainouz S. "Direct estimation of fetal head circumference from
ultrasound images based on regression CNN", MIDL 2020 (``shared/papers/regression-cnn-hc.txt``).

Two changes turn a classification CNN into a regressor: a last layer that is linear with one
output, and a regression loss (:func:`fetalbiometry.planes2d.losses.regression_loss`: MSE, MAE or Huber with
δ = 0.5). The target is HC divided by the largest HC of the training set; :class:`HCRegressor`
keeps that normaliser as a buffer, so a saved model converts its output back to HC by itself. The
paper's HC is in pixels (its HC18 range is 439.1 to 1786.5 pixels): what the image shows; the
millimetres follow from the pixel size. Images are z-scored per image, ``(x − µ)/σ`` (MONAI
``NormalizeIntensityd(keys="image")``), at 128 x 128 or 224 x 224.

The four regressors of the paper (:data:`REGRESSORS`, :func:`build_hc_regressor`):

- ``"cnn-263k"``: Conv(8) → Conv(16) → Dense(16) → Dense(8) → Dense(1) on 128 x 128, 263,633
  parameters as laid out in the paper's figure (b).
- ``"cnn-1m"``: Conv(16) → Conv(32) → Conv(64) → Dense(64) → Dense(32) → Dense(8) → Dense(1) on
  128 x 128, 1,074,641 parameters. The paper's figure (a) prints Dense(16) as the first dense
  layer, which on 128 x 128 gives only 286K parameters, not 1M: its flattened features are
  16 x 16 x 64 = 16384, as in figure (b), so the 1M can only come from a 4x wider first dense
  layer. We take 64, which also makes the dense widths decrease (64, 32, 8).
- ``"vgg16"``: VGG configuration "D" (Simonyan & Zisserman 2015) with a 4096-4096-1 head.
- ``"resnet50"``: ResNet-50 (He et al. 2016), MONAI's :class:`~monai.networks.nets.ResNet`.

torchvision is not used: no torchvision wheel imports beside the project's torch 2.13 CPU build,
so VGG16 is built here from MONAI ``Convolution`` blocks and ResNet-50 is MONAI's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Union

import torch
import torch.nn as nn
from monai.networks.blocks import ADN, Convolution
from monai.networks.layers.factories import Pool
from monai.networks.nets import FullyConnectedNet, ResNet

__all__ = [
    "REGRESSORS",
    "VGG16_CONFIGURATION",
    "HCRegressor",
    "RegressionCNN",
    "VGGRegressor",
    "build_hc_regressor",
    "resnet50_regressor",
]

_SPATIAL_DIMS = 2

VGG16_CONFIGURATION: tuple[Union[int, str], ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"
)  # fmt: skip
"""VGG configuration "D" (VGG16): convolution widths, "M" for 2x2 max pooling."""


class RegressionCNN(nn.Sequential):
    """The custom regression CNNs of Zhang et al. (figure "CNN regressors", (a) 1M and (b) 263K).

    Each convolution block is Conv(3x3, same padding) + ReLU + BN + 2x2 max pooling; then
    Flatten, a first dense layer with ReLU + BN + Dropout(0.5), further dense layers with ReLU,
    and a linear Dense(1) output. The flattened size, hence the parameter count, depends on
    ``spatial_size`` as in the paper's Keras models.

    Args:
        in_channels: image channels.
        spatial_size: (rows, columns) of the input; each a multiple of 2 ** len(conv_channels).
        conv_channels: width of each convolution block.
        dense_features: width of each hidden dense layer.
        dropout: dropout after the first dense layer.
    """

    def __init__(
        self,
        in_channels: int = 1,
        spatial_size: Sequence[int] = (128, 128),
        conv_channels: Sequence[int] = (16, 32, 64),
        dense_features: Sequence[int] = (64, 32, 8),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        downsampling = 2 ** len(conv_channels)
        if any(size % downsampling for size in spatial_size):
            raise ValueError(f"spatial_size {tuple(spatial_size)} must be multiples of {downsampling}.")
        for index, (c_in, c_out) in enumerate(zip((in_channels, *conv_channels[:-1]), conv_channels)):
            block = nn.Sequential(
                Convolution(_SPATIAL_DIMS, c_in, c_out, kernel_size=3, act="relu", norm="batch", adn_ordering="AN"),
                Pool[Pool.MAX, _SPATIAL_DIMS](kernel_size=2),
            )
            self.add_module(f"conv_{index}", block)
        self.add_module("flatten", nn.Flatten())
        features = conv_channels[-1] * (spatial_size[0] // downsampling) * (spatial_size[1] // downsampling)
        for index, width in enumerate(dense_features):
            first = index == 0
            adn = ADN(
                ordering="AND" if first else "A",
                in_channels=width,
                act="relu",
                norm="batch" if first else None,
                norm_dim=1,
                dropout=dropout if first else None,
                dropout_dim=1,
            )
            self.add_module(f"dense_{index}", nn.Sequential(nn.Linear(features, width), adn))
            features = width
        self.add_module("output", nn.Linear(features, 1))


class VGGRegressor(nn.Sequential):
    """VGG (Simonyan & Zisserman, ICLR 2015) with a one-output linear last layer ("Reg-VGG16").

    The convolutions follow ``configuration`` (3x3, stride 1, ReLU; "M" = 2x2 max pooling); the
    features are average-pooled to ``grid`` (7 x 7 as in the ImageNet model, which a 224 x 224
    input gives without pooling), then two 4096-wide ReLU + dropout layers and a linear output.
    With ``batch_norm`` each convolution is followed by batch normalisation: the model is trained
    from scratch here (no pretrained weights are downloaded), which plain VGG16 does poorly.

    Args:
        in_channels: image channels.
        out_channels: outputs of the last linear layer (1 for HC).
        configuration: convolution widths and "M" poolings (:data:`VGG16_CONFIGURATION`).
        fc_features: widths of the hidden fully connected layers.
        dropout: dropout after each hidden fully connected layer.
        grid: (rows, columns) the features are pooled to before flattening.
        batch_norm: add batch normalisation after each convolution.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        configuration: Sequence[Union[int, str]] = VGG16_CONFIGURATION,
        fc_features: Sequence[int] = (4096, 4096),
        dropout: float = 0.5,
        grid: Sequence[int] = (7, 7),
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in configuration:
            if item == "M":
                layers.append(Pool[Pool.MAX, _SPATIAL_DIMS](kernel_size=2))
                continue
            norm = "batch" if batch_norm else None
            layers.append(Convolution(_SPATIAL_DIMS, channels, int(item), kernel_size=3, act="relu", norm=norm))
            channels = int(item)
        self.add_module("features", nn.Sequential(*layers))
        self.add_module("pool", Pool[Pool.ADAPTIVEAVG, _SPATIAL_DIMS](tuple(grid)))
        self.add_module(
            "classifier",
            FullyConnectedNet(
                channels * grid[0] * grid[1], out_channels, fc_features, dropout=dropout, act="relu", adn_ordering="AD"
            ),
        )


def resnet50_regressor(in_channels: int = 1, out_channels: int = 1) -> ResNet:
    """ResNet-50 (He et al., CVPR 2016) with a linear ``out_channels`` last layer ("Reg-ResNet50").

    MONAI's :class:`~monai.networks.nets.ResNet` with bottleneck blocks (3, 4, 6, 3), a 7x7
    stride-2 first convolution and max pooling as in the paper's ImageNet model; its last layer
    after global average pooling is ``Linear(2048, out_channels)``.

    Args:
        in_channels: image channels.
        out_channels: outputs (1 for HC).
    """
    return ResNet(
        block="bottleneck",
        layers=[3, 4, 6, 3],
        block_inplanes=[64, 128, 256, 512],
        spatial_dims=_SPATIAL_DIMS,
        n_input_channels=in_channels,
        conv1_t_size=7,
        conv1_t_stride=2,
        num_classes=out_channels,
    )


class HCRegressor(nn.Module):
    """A regression CNN with its HC normaliser: the output is HC / max HC of the training set.

    Args:
        backbone: a network mapping (B, C, H, W) images to (B, 1).
        hc_max: the largest HC of the training set (the unit of the HC, e.g. pixels), kept in the
            buffer ``hc_max`` and saved with the weights.

    Raises:
        ValueError: ``hc_max`` is not positive.
    """

    def __init__(self, backbone: nn.Module, hc_max: float = 1.0) -> None:
        super().__init__()
        if not hc_max > 0:
            raise ValueError(f"hc_max must be positive, got {hc_max}.")
        self.backbone = backbone
        self.register_buffer("hc_max", torch.tensor(float(hc_max)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Args:
            image: z-scored images (B, C, H, W).

        Returns:
            the normalised HC, HC / :attr:`hc_max`, shape (B, 1): the value the loss compares
            with :meth:`normalize` of the reference.
        """
        return self.backbone(image)

    def normalize(self, hc: torch.Tensor) -> torch.Tensor:
        """The training target of an HC: ``hc / hc_max``."""
        return hc / self.hc_max

    def predict_hc(self, image: torch.Tensor) -> torch.Tensor:
        """HC in the unit of :attr:`hc_max`, shape (B,)."""
        return self(image)[:, 0] * self.hc_max


REGRESSORS: Mapping[str, Callable[..., nn.Module]] = MappingProxyType(
    {
        "cnn-263k": lambda in_channels, spatial_size: RegressionCNN(in_channels, spatial_size, (8, 16), (16, 8)),
        "cnn-1m": lambda in_channels, spatial_size: RegressionCNN(in_channels, spatial_size, (16, 32, 64), (64, 32, 8)),
        "vgg16": lambda in_channels, spatial_size: VGGRegressor(in_channels),
        "resnet50": lambda in_channels, spatial_size: resnet50_regressor(in_channels),
    }
)
"""The paper's four regressors by name: ``(in_channels, spatial_size) -> backbone``."""


def build_hc_regressor(
    name: str, hc_max: float = 1.0, in_channels: int = 1, spatial_size: Sequence[int] = (128, 128)
) -> HCRegressor:
    """One of the paper's regressors with its HC normaliser.

    Args:
        name: ``"cnn-263k"``, ``"cnn-1m"``, ``"vgg16"`` or ``"resnet50"``.
        hc_max: largest HC of the training set (see :class:`HCRegressor`).
        in_channels: image channels.
        spatial_size: input (rows, columns); fixes the custom CNNs' dense layer (VGG16 and
            ResNet-50 take any size of at least 32 x 32).

    Returns:
        the :class:`HCRegressor`.

    Raises:
        ValueError: unknown name.
    """
    if name not in REGRESSORS:
        raise ValueError(f"unknown regressor {name!r}; known: {', '.join(REGRESSORS)}.")
    return HCRegressor(REGRESSORS[name](in_channels, tuple(spatial_size)), hc_max)
