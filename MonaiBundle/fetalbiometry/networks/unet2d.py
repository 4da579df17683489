"""The plain 2D U-Net baseline for HC18: segment the head, then fit an ellipse.

Nguyen VT, "Machine Learning in Medicine: Practice 2 (Fetal Head Segmentation)"
(``shared/papers/unet-hc18-practice-report.txt``): a U-Net (Ronneberger et al., MICCAI 2015)
on HC18 reaching a Dice of 89.7 %. The report gives no widths or training details, so this is
MONAI's :class:`~monai.networks.nets.BasicUNet` (4 poolings, two 3x3 Conv-BN-ReLU per level,
transposed-convolution up-sampling) with the widths of the original U-Net. The HC comes from the
predicted mask as for every network here: ``measure_plane(mask, "head", pixel_size)``
(:func:`fetalbiometry.biometry.measure_plane`, ellipse fit and Ramanujan perimeter).
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import BasicUNet

__all__ = ["UNET_FEATURES", "unet_baseline"]

UNET_FEATURES = (64, 128, 256, 512, 1024, 64)
"""BasicUNet widths of Ronneberger et al.: four encoder levels and the bottleneck, then the last decoder level."""


def unet_baseline(in_channels: int = 1, out_channels: int = 2, features: Sequence[int] = UNET_FEATURES) -> BasicUNet:
    """The U-Net baseline: input sizes must be multiples of 16 (e.g. 160 x 256).

    Args:
        in_channels: image channels.
        out_channels: classes (background, head).
        features: the six BasicUNet widths (:data:`UNET_FEATURES`).

    Returns:
        a 2D BasicUNet with batch normalisation and ReLU, outputting class logits (B, out_channels, H, W).
    """
    return BasicUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=out_channels,
        features=tuple(features),
        act="relu",
        norm="batch",
    )
