"""The multi-task U-Net: plane classification (head, abdomen, femur) and structure segmentation.

Qazi MA, Alam MT, Almakky I, et al. "Multi-Task Learning Approach for Unified Biometric
Estimation from Fetal Ultrasound Anomaly Scans" (``shared/papers/multitask-unet-hc-ac-fl.txt``),
sections 2 and 2.1, Fig. 1. The loss is :class:`fetalbiometry.planes2d.losses.MultiTaskUNetLoss`; the
predicted class selects the measurement (:func:`fetalbiometry.biometry.measure_plane`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Dict, List

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat

from fetalbiometry.biometry.planes import PLANE_CLASSES
from fetalbiometry.networks.blocks import check_spatial_size

__all__ = ["PlaneClassifier", "MultiTaskUNet"]

_SPATIAL_DIMS = 2
_ACT = "relu"
_NORM = "batch"


class PlaneClassifier(nn.Sequential):
    """The classification branch at the base of the U-Net (section 2.1).

    "This branch utilizes feature maps from the bottleneck layer, which are flattened and directed
    through a fully connected (FC) layer, followed by a softmax layer." The features are
    average-pooled to ``grid`` first so that the FC layer does not depend on the image size; at
    the paper's 256 x 256 input with 5 poolings the bottleneck is 8 x 8, where this pooling does
    nothing. The branch outputs logits: the softmax is applied by the cross entropy in training
    and by ``torch.softmax`` for probabilities.

    Args:
        in_channels: channels of the bottleneck features.
        num_classes: plane classes (3: head, abdomen, femur).
        grid: (rows, columns) the features are pooled to before flattening.
    """

    def __init__(self, in_channels: int, num_classes: int = len(PLANE_CLASSES), grid: Sequence[int] = (8, 8)) -> None:
        super().__init__()
        self.add_module("pool", Pool[Pool.ADAPTIVEAVG, _SPATIAL_DIMS](tuple(grid)))
        self.add_module("flatten", nn.Flatten())
        self.add_module("fc", nn.Linear(in_channels * grid[0] * grid[1], num_classes))


class MultiTaskUNet(nn.Module):
    """U-Net with a plane-classification branch on the bottleneck (Qazi et al., Fig. 1).

    "five downsampling steps in the encoder [...] five upsampling steps [...] All convolution layers
    used 3x3 kernels, followed by batch normalization and ReLU activation [...] 2x2 pooling".
    Built from MONAI's U-Net blocks (:mod:`monai.networks.nets.basic_unet`): two Conv-BN-ReLU at
    each level, ``Down`` = 2x2 max pooling + two Conv-BN-ReLU, ``UpCat`` = 2x2 transposed
    convolution, concatenation of the encoder features of the same level, two Conv-BN-ReLU; a
    1x1 convolution gives the segmentation logits. The segmentation is of the plane's structure
    (head, abdomen or femur against background); the class comes from :class:`PlaneClassifier`.

    Input sizes must be multiples of 2 ** (len(features) - 1) (32 by default; the paper resizes to
    256 x 256). The output, in training and evaluation, is ``{"segmentation": (B, out_channels, H,
    W) logits, "plane": (B, num_classes) logits}``.

    Args:
        in_channels: image channels.
        out_channels: segmentation classes (background, structure).
        num_classes: plane classes, in the order of :data:`~fetalbiometry.biometry.PLANE_CLASSES`.
        features: channels of each level, finest first; ``len(features) - 1`` down-sampling steps
            (5 in the paper, whose widths are not given: we double from 32).
        classifier_grid: grid the bottleneck is pooled to before the FC layer.

    Raises:
        ValueError: fewer than 2 levels.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        num_classes: int = len(PLANE_CLASSES),
        features: Sequence[int] = (32, 64, 128, 256, 512, 1024),
        classifier_grid: Sequence[int] = (8, 8),
    ) -> None:
        super().__init__()
        if len(features) < 2:
            raise ValueError(f"need at least 2 levels, got features={tuple(features)}.")
        self.size_divisor = 2 ** (len(features) - 1)
        self.input_block = TwoConv(_SPATIAL_DIMS, in_channels, features[0], _ACT, _NORM, bias=True)
        self.encoder = nn.ModuleList(
            Down(_SPATIAL_DIMS, c_in, c_out, _ACT, _NORM, bias=True) for c_in, c_out in zip(features[:-1], features[1:])
        )
        # deepest first: decoder[k] brings features[-1 - k] up to the level of features[-2 - k]
        self.decoder = nn.ModuleList(
            UpCat(_SPATIAL_DIMS, c_in, c_skip, c_skip, _ACT, _NORM, bias=True, halves=True)
            for c_in, c_skip in zip(features[:0:-1], features[-2::-1])
        )
        self.output_block = Convolution(_SPATIAL_DIMS, features[0], out_channels, kernel_size=1, conv_only=True)
        self.classifier = PlaneClassifier(features[-1], num_classes, classifier_grid)

    def forward(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Args:
            image: (B, in_channels, H, W), H and W multiples of :attr:`size_divisor`.

        Returns:
            ``{"segmentation": (B, out_channels, H, W) logits, "plane": (B, num_classes) logits}``.

        Raises:
            ValueError: a spatial size is not a multiple of :attr:`size_divisor`.
        """
        check_spatial_size(image, self.size_divisor, "multi-task U-Net")
        hidden = self.input_block(image)
        skips: List[torch.Tensor] = [hidden]
        for block in self.encoder:
            hidden = block(hidden)
            skips.append(hidden)
        plane = self.classifier(hidden)
        for index, block in enumerate(self.decoder):
            hidden = block(hidden, skips[len(skips) - 2 - index])
        return {"segmentation": self.output_block(hidden), "plane": plane}
