"""Segmentation networks of FetalHeadSeg.

The 3D whole-fetal-head segmentor of Yang et al. 2020 (USegNet with deep supervision, hybrid
attention and auto-context) and the baselines of its Tables 1-2, by their names in the paper::

    from fetalbiometry.networks import build_network
    net = build_network("USegNet-DS-HAS-Ctx")

The 2D biometry networks: :class:`MTLN` (multi-task LinkNet with an Ellipse Tuner),
:func:`build_hc_regressor` (regression CNNs predicting HC), :class:`MultiTaskUNet` (U-Net with a
plane classifier) and :func:`unet_baseline` (plain U-Net).
"""

# The 3D whole-head segmenter (Yang et al. 2020) and the variants of its Tables 1-2
from fetalbiometry.networks.autocontext import AutoContextCascade
from fetalbiometry.networks.blocks import AttentionModule, ConvBnReluBlock, DecoderLevel
from fetalbiometry.networks.slicewise import SliceWise2D
from fetalbiometry.networks.usegnet import USegNet
from fetalbiometry.networks.variants import VARIANTS, NetworkVariant, build_network

# The 2D biometry networks, one module per paper
from fetalbiometry.networks.mtln import (  # isort: skip
    ELLIPSE_KEY,
    MTLN,
    SEGMENTATION_KEY,
    EllipseTuner,
    LinkNetDecoderBlock,
    ResBlock,
    decode_ellipse,
    encode_ellipse,
)
from fetalbiometry.networks.multitask_unet import MultiTaskUNet, PlaneClassifier  # isort: skip
from fetalbiometry.networks.regression import (  # isort: skip
    REGRESSORS,
    VGG16_CONFIGURATION,
    HCRegressor,
    RegressionCNN,
    VGGRegressor,
    build_hc_regressor,
    resnet50_regressor,
)
from fetalbiometry.networks.unet2d import UNET_FEATURES, unet_baseline  # isort: skip

__all__ = [
    "ELLIPSE_KEY",
    "MTLN",
    "REGRESSORS",
    "SEGMENTATION_KEY",
    "UNET_FEATURES",
    "VARIANTS",
    "VGG16_CONFIGURATION",
    "AttentionModule",
    "AutoContextCascade",
    "ConvBnReluBlock",
    "DecoderLevel",
    "EllipseTuner",
    "HCRegressor",
    "LinkNetDecoderBlock",
    "MultiTaskUNet",
    "NetworkVariant",
    "PlaneClassifier",
    "RegressionCNN",
    "ResBlock",
    "SliceWise2D",
    "USegNet",
    "VGGRegressor",
    "build_hc_regressor",
    "build_network",
    "decode_ellipse",
    "encode_ellipse",
    "resnet50_regressor",
    "unet_baseline",
]
