"""Segmentation networks of FetalHeadSeg.

The 3D whole-fetal-head segmentor of Yang et al. 2020 (USegNet with deep supervision, hybrid
attention and auto-context) and the baselines of its Tables 1-2, by their names in the paper::

    from fetalbiometry.networks import build_network
    net = build_network("USegNet-DS-HAS-Ctx")
"""

from fetalbiometry.networks.autocontext import AutoContextCascade
from fetalbiometry.networks.blocks import AttentionModule, ConvBnReluBlock, DecoderLevel
from fetalbiometry.networks.slicewise import SliceWise2D
from fetalbiometry.networks.usegnet import USegNet
from fetalbiometry.networks.variants import VARIANTS, NetworkVariant, build_network

__all__ = [
    "VARIANTS",
    "AttentionModule",
    "AutoContextCascade",
    "ConvBnReluBlock",
    "DecoderLevel",
    "NetworkVariant",
    "SliceWise2D",
    "USegNet",
    "build_network",
]
