"""USegNet: the 3D encoder-decoder segmentor with deep supervision and hybrid attention.

Yang X, Wang X, Wang Y, et al. "Hybrid attention for automatic segmentation of whole fetal head
in prenatal ultrasound volumes", Computer Methods and Programs in Biomedicine, 2020
(``shared/papers/3d-whole-head-hybrid-attention-autocontext.txt``), Sections 2.3-2.4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, Union

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool

from fetalbiometry.networks.blocks import ConvBnReluBlock, DecoderLevel, check_spatial_size

__all__ = ["USegNet"]


class USegNet(nn.Module):
    """3D U-Net backbone of the paper ("USegNet") with its ablation switches (Tables 1-2).

    Encoder: ``len(features)`` blocks of two Conv+BN+ReLU layers separated by 2x max-pooling
    (3 poolings by default), kernels ``kernel_sizes`` per level (3x3x3 shallow, 5x5x5 deep).
    Decoder: per level a stride-2 transposed convolution, concatenation with the encoder features
    of the same scale, two Conv+BN+ReLU layers (:class:`~fetalbiometry.networks.blocks.DecoderLevel`).

    Decoder levels are numbered as in the paper's Table 2 and Fig. 2: level 1 is the first one
    met when decoding, i.e. the deepest (1/4 resolution with 3 poolings; "UAM 1 [sits] before the
    second deconvolution layer"), and the last level (3) is the full-resolution one whose SAM
    "conveys very detailed features". ``sam_levels=(1, 2, 3)`` is "USegNet-DS-SAM", ``(1,)`` is
    "SAM-1", ``(1, 2)`` is "SAM-12"; likewise for ``uam_levels``.

    Deep supervision (Eq. 2): a 1x1x1 convolution on the output of every decoder level but the
    last gives class scores at 1/4 and 1/2 resolution; there are no up-sampling layers in these
    side branches, the ground truth is downscaled instead (see :mod:`fetalbiometry.segment3d.losses`). The
    side branches sit behind the level's UAM, and stay at the same place when the UAM is removed.

    Spatial sizes of the input must be divisible by ``2 ** (len(features) - 1)``.

    Args:
        spatial_dims: number of spatial dimensions: 3 for the segmentor, 2 for 2D-USegNet.
        in_channels: number of input channels.
        out_channels: number of classes (background and whole fetal head).
        features: channels of each encoder level, finest first; the decoder mirrors them. The
            default follows the authors' released code (32, 64, 64, 64); the paper's figure with
            the widths is lost in our text.
        kernel_sizes: convolution kernel of each level, finest first (Sec. 2.3: 3 shallow, 5 deep).
        skip_connections: concatenate encoder features into the decoder; ``False`` gives the
            3D-DeconvNet baseline of Table 1.
        deep_supervision: add the side branches; in training mode ``forward`` then returns
            ``[main, aux_1/2, aux_1/4]`` (main first, as :class:`monai.losses.DeepSupervisionLoss`
            expects); in eval mode it always returns the main output only.
        sam_levels: decoder levels whose skip connection gets an attention module (SAM).
        uam_levels: decoder levels that get an attention module after the concatenation (UAM).
        attention_out_channels: output channels of every attention module (64 in the paper).
        attention_channels: internal channels ``P(X)``/``A(X)`` of the attention modules (32).
        attention_kernel_size: kernel of the attention modules' convolutions (3 in the paper).
        convs_after_attention: keep two Conv+BN+ReLU layers after each UAM (default); ``False``
            is the authors' released layout, where the UAM is the level's only fusion and its
            ``attention_out_channels`` feed the next level and the side branch
            (:class:`~fetalbiometry.networks.blocks.DecoderLevel`).

    Raises:
        ValueError: inconsistent lengths, unknown attention levels, or a SAM without skips.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (32, 64, 64, 64),
        kernel_sizes: Sequence[int] = (3, 3, 5, 5),
        skip_connections: bool = True,
        deep_supervision: bool = False,
        sam_levels: Sequence[int] = (),
        uam_levels: Sequence[int] = (),
        attention_out_channels: int = 64,
        attention_channels: int = 32,
        attention_kernel_size: int = 3,
        convs_after_attention: bool = True,
    ) -> None:
        super().__init__()
        if len(features) < 2 or len(kernel_sizes) != len(features):
            raise ValueError(
                f"need at least 2 levels and one kernel size per level, got features={tuple(features)}, "
                f"kernel_sizes={tuple(kernel_sizes)}."
            )
        num_up = len(features) - 1
        decoder_levels = set(range(1, num_up + 1))
        for name, levels in (("sam_levels", sam_levels), ("uam_levels", uam_levels)):
            if not set(levels) <= decoder_levels:
                raise ValueError(f"{name}={tuple(levels)}: decoder levels are numbered 1..{num_up} (1 = deepest).")
        if sam_levels and not skip_connections:
            raise ValueError("sam_levels needs skip_connections=True: a SAM sits on a skip connection.")

        self.deep_supervision = deep_supervision
        self.size_divisor = 2**num_up
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2)
        self.encoder = nn.ModuleList(
            ConvBnReluBlock(spatial_dims, channels_in, channels_out, kernel)
            for channels_in, channels_out, kernel in zip((in_channels, *features[:-1]), features, kernel_sizes)
        )
        # decoder level k (1 = deepest) brings its input up to the scale of features[-k - 1]
        self.decoder = nn.ModuleList()
        level_input = features[-1]
        for level in range(1, num_up + 1):
            decoder_level = DecoderLevel(
                spatial_dims,
                in_channels=level_input,
                skip_channels=features[-level - 1] if skip_connections else 0,
                out_channels=features[-level - 1],
                kernel_size=kernel_sizes[-level - 1],
                skip_attention=level in sam_levels,
                upsample_attention=level in uam_levels,
                attention_out_channels=attention_out_channels,
                attention_channels=attention_channels,
                attention_kernel_size=attention_kernel_size,
                convs_after_attention=convs_after_attention,
            )
            self.decoder.append(decoder_level)
            level_input = decoder_level.out_channels
        self.output_head = Convolution(spatial_dims, level_input, out_channels, kernel_size=1, conv_only=True)
        # side branches at 1/2, 1/4, ... resolution (finest first), behind decoder levels num_up-1, ..., 1
        aux_levels = range(num_up - 1, 0, -1) if deep_supervision else range(0)
        self.aux_heads = nn.ModuleList(
            Convolution(spatial_dims, self.decoder[level - 1].out_channels, out_channels, kernel_size=1, conv_only=True)
            for level in aux_levels
        )

    def forward(self, image: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        """Args:
            image: shape (B, in_channels, *S), each size in S divisible by :attr:`size_divisor`.

        Returns:
            class logits (B, out_channels, *S); in training mode with deep supervision the list
            ``[main, aux_1/2, aux_1/4, ...]`` of logits at full, 1/2, 1/4... resolution.

        Raises:
            ValueError: a spatial size is not divisible by :attr:`size_divisor`.
        """
        check_spatial_size(image, self.size_divisor, "USegNet")
        skips: List[torch.Tensor] = []
        hidden = image
        for index, block in enumerate(self.encoder):
            if index > 0:
                hidden = self.pool(hidden)
            hidden = block(hidden)
            skips.append(hidden)
        decoded: List[torch.Tensor] = []
        for index, level in enumerate(self.decoder):
            hidden = level(hidden, skips[len(skips) - 2 - index])
            decoded.append(hidden)
        main = self.output_head(hidden)
        if not (self.training and self.deep_supervision):
            return main
        outputs = [main]
        for index, head in enumerate(self.aux_heads):
            outputs.append(head(decoded[len(decoded) - 2 - index]))
        return outputs
