"""Building blocks of the 3D whole-fetal-head segmentor.

Yang X, Wang X, Wang Y, et al. "Hybrid attention for automatic segmentation of whole fetal head
in prenatal ultrasound volumes", Computer Methods and Programs in Biomedicine, 2020
(``shared/papers/3d-whole-head-hybrid-attention-autocontext.txt``), Sections 2.3-2.4.

Every block takes ``spatial_dims`` so that the same code builds the 3D segmentor and the
2D-USegNet baseline.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, UnetBasicBlock

__all__ = ["AttentionModule", "ConvBnReluBlock", "DecoderLevel", "check_spatial_size"]


def check_spatial_size(image: torch.Tensor, divisor: int, network: str) -> None:
    """Raise ``ValueError`` unless every spatial size of ``image`` (B, C, *S) is a multiple of ``divisor``.

    Encoder-decoders with ``n`` poolings need sizes divisible by ``2 ** n`` for the skips to align.
    The check is skipped while tracing for ONNX export, where sizes are symbolic.
    """
    if not torch.jit.is_tracing():
        for size in image.shape[2:]:
            if size % divisor != 0:
                raise ValueError(f"{network} input size {list(image.shape[2:])} must be a multiple of {divisor}.")


class ConvBnReluBlock(UnetBasicBlock):
    """Two successive Conv+BN+ReLU layers: the block between two poolings (Sec. 2.3).

    MONAI's :class:`~monai.networks.blocks.UnetBasicBlock` with batch normalisation and ReLU.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: number of input channels.
        out_channels: number of output channels of both convolutions.
        kernel_size: convolution kernel size (3 in the shallow levels, 5 in the deep ones).
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            spatial_dims,
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=1,
            norm_name="batch",
            act_name="relu",
        )


class AttentionModule(nn.Module):
    """The attention module (AM) of the hybrid attention scheme (Sec. 2.4, Fig. 3, Eqs. 3-4).

    - ``P(X)``: a 1x1x1 convolution shrinks the input features ``F(X)`` to
      ``attention_channels`` (32) channels.
    - ``W(X) = H(F(X); θ)`` (Eq. 3): two further ``kernel_size`` convolutions on ``P(X)`` give the
      un-normalised attention weights (``H`` is these two plus the 1x1x1 one: three convolutions).
    - ``A(X)`` (Eq. 4): softmax of ``W(X)`` across the channel dimension.
    - ``T(X) = A(X) ⊙ P(X)``; ``P(X)`` and ``T(X)`` are concatenated and a convolution with BN and
      ReLU outputs ``out_channels`` (64) attention features.

    ``P(X)`` and ``W(X)`` are kept linear (no BN/ReLU after their last convolution) because they
    enter a product and a softmax, as in the authors' released code; the convolution between
    them and the output convolution carry BN+ReLU like every other layer of the network.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: channels of the input features ``F(X)``.
        out_channels: channels of the output attention features (64 in the paper).
        attention_channels: channels of ``P(X)``, ``W(X)`` and ``A(X)`` (32 in the paper).
        kernel_size: kernel of the two attention convolutions and of the output convolution
            (3x3x3 in the paper).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int = 64,
        attention_channels: int = 32,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.project = Convolution(spatial_dims, in_channels, attention_channels, kernel_size=1, conv_only=True)
        self.weigh = nn.Sequential(
            Convolution(
                spatial_dims, attention_channels, attention_channels, kernel_size=kernel_size, norm="batch", act="relu"
            ),
            Convolution(spatial_dims, attention_channels, attention_channels, kernel_size=kernel_size, conv_only=True),
        )
        self.fuse = Convolution(
            spatial_dims, 2 * attention_channels, out_channels, kernel_size=kernel_size, norm="batch", act="relu"
        )

    def attention_map(self, projected: torch.Tensor) -> torch.Tensor:
        """Return ``A(X)``: the softmax across channels (Eq. 4) of ``W(X)`` computed from ``P(X)``.

        Args:
            projected: ``P(X)``, the output of :attr:`project`, shape (B, attention_channels, ...).

        Returns:
            attention weights in (0, 1) that sum to 1 across channels at every location.
        """
        return torch.softmax(self.weigh(projected), dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args:
            features: ``F(X)``, shape (B, in_channels, ...).

        Returns:
            attention features, shape (B, out_channels, ...), same spatial size.
        """
        projected = self.project(features)
        refined = self.attention_map(projected) * projected
        return self.fuse(torch.cat((projected, refined), dim=1))


class DecoderLevel(nn.Module):
    """One level of the up-sampling path (Sec. 2.3-2.4, Fig. 2a).

    Transposed convolution (stride 2, BN, ReLU) → concatenation with the encoder features of the
    same scale (through a SAM when ``skip_attention``) → UAM when ``upsample_attention`` → two
    Conv+BN+ReLU layers. Without ``skip_channels`` there is no skip connection (3D-DeconvNet).

    The authors' released code has no convolutions after the UAM: it is the level's only fusion,
    and the level outputs the UAM's ``attention_out_channels``. ``convs_after_attention=False``
    builds that layout. By default the U-Net's two Conv+BN+ReLU layers stay after the UAM, so that
    the variants without UAM have a regular U-Net decoder and adding a UAM is a pure insertion, as
    in the ablations of Table 2.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: channels of the coarser features coming up the decoder.
        skip_channels: channels of the encoder features of this scale; 0 for no skip connection.
        out_channels: channels of this level's output (and of the up-convolution).
        kernel_size: kernel of the up-convolution and of the two convolutions.
        skip_attention: put an :class:`AttentionModule` (SAM) on the skip connection.
        upsample_attention: put an :class:`AttentionModule` (UAM) after the concatenation.
        attention_out_channels: output channels of the attention modules (64 in the paper).
        attention_channels: internal channels of the attention modules (32 in the paper).
        attention_kernel_size: kernel of the attention modules' convolutions (3 in the paper).
        convs_after_attention: keep the two Conv+BN+ReLU layers after a UAM; without a UAM they
            always stay.

    Attributes:
        out_channels: channels of the level's output (``attention_out_channels`` when a UAM ends it).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        skip_attention: bool = False,
        upsample_attention: bool = False,
        attention_out_channels: int = 64,
        attention_channels: int = 32,
        attention_kernel_size: int = 3,
        convs_after_attention: bool = True,
    ) -> None:
        super().__init__()
        if skip_attention and skip_channels == 0:
            raise ValueError("a skip attention module (SAM) needs a skip connection (skip_channels > 0).")
        self.has_skip = skip_channels > 0
        self.upconv = Convolution(
            spatial_dims,
            in_channels,
            out_channels,
            strides=2,
            kernel_size=kernel_size,
            norm="batch",
            act="relu",
            is_transposed=True,
        )
        self.skip_attention: nn.Module = nn.Identity()
        if skip_attention:
            self.skip_attention = AttentionModule(
                spatial_dims, skip_channels, attention_out_channels, attention_channels, attention_kernel_size
            )
            skip_channels = attention_out_channels
        merged_channels = out_channels + skip_channels
        self.upsample_attention: nn.Module = nn.Identity()
        if upsample_attention:
            self.upsample_attention = AttentionModule(
                spatial_dims, merged_channels, attention_out_channels, attention_channels, attention_kernel_size
            )
            merged_channels = attention_out_channels
        self.convs: nn.Module = ConvBnReluBlock(spatial_dims, merged_channels, out_channels, kernel_size)
        self.out_channels = out_channels
        if upsample_attention and not convs_after_attention:
            self.convs = nn.Identity()
            self.out_channels = attention_out_channels

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Args:
            coarse: features from the level below, shape (B, in_channels, *S).
            skip: encoder features of this scale, shape (B, skip_channels, *2S); ignored when
                the level has no skip connection.

        Returns:
            features of shape (B, :attr:`out_channels`, *2S).
        """
        merged = self.upconv(coarse)
        if self.has_skip:
            merged = torch.cat((merged, self.skip_attention(skip)), dim=1)
        return self.convs(self.upsample_attention(merged))
