"""The networks compared in the paper's Tables 1 and 2, by their names in the paper.

Yang X, Wang X, Wang Y, et al. "Hybrid attention for automatic segmentation of whole fetal head
in prenatal ultrasound volumes", Computer Methods and Programs in Biomedicine, 2020
(``shared/papers/3d-whole-head-hybrid-attention-autocontext.txt``), Sec. 3.2.

Table 2 names its ablations "SAM-1", "SAM-12", "UAM-1", "UAM-12" (all USegNet-DS with the
listed attention modules); the models with all three modules are Table 1's "USegNet-DS-SAM" and
"USegNet-DS-UAM".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch.nn as nn

from fetalbiometry.networks.autocontext import AutoContextCascade
from fetalbiometry.networks.normalization import use_volume_statistics
from fetalbiometry.networks.slicewise import SliceWise2D
from fetalbiometry.networks.usegnet import USegNet

__all__ = ["NetworkVariant", "VARIANTS", "build_network"]


@dataclass(frozen=True)
class NetworkVariant:
    """How one of the paper's compared networks is built and run.

    Attributes:
        network: keyword arguments of :class:`~fetalbiometry.networks.usegnet.USegNet`.
        slice_wise: the USegNet is 2D and runs on each axial slice (:class:`SliceWise2D`).
        context_levels: number of :class:`AutoContextCascade` levels; 1 means no cascade.
        patch_size: when set, the network is trained on patches of this size and the whole
            volume is predicted with overlap-tiling (``monai.inferers.SlidingWindowInferer`` with
            ``roi_size=patch_size``); when ``None`` it takes the whole (downscaled) volume.
        sliding_window_overlap: overlap of the tiles when ``patch_size`` is set.
        source: where the paper reports it.
    """

    network: Mapping[str, Any]
    slice_wise: bool = False
    context_levels: int = 1
    patch_size: tuple[int, ...] | None = None
    sliding_window_overlap: float = 0.5
    source: str = "Table 1"

    @property
    def sliding_window(self) -> bool:
        """Whether inference tiles the volume with patches of :attr:`patch_size`."""
        return self.patch_size is not None


_ALL_LEVELS = (1, 2, 3)
_DS: Mapping[str, Any] = MappingProxyType({"deep_supervision": True})


def _variant(network: Mapping[str, Any] = MappingProxyType({}), **settings: Any) -> NetworkVariant:
    return NetworkVariant(network=MappingProxyType(dict(network)), **settings)


VARIANTS: Mapping[str, NetworkVariant] = MappingProxyType(
    {
        "p-USegNet": _variant(patch_size=(64, 64, 64)),
        "2D-USegNet": _variant({"spatial_dims": 2}, slice_wise=True),
        "3D-DeconvNet": _variant({"skip_connections": False}),
        "USegNet": _variant(),
        "USegNet-DS": _variant(_DS),
        "SAM-1": _variant({**_DS, "sam_levels": (1,)}, source="Table 2"),
        "SAM-12": _variant({**_DS, "sam_levels": (1, 2)}, source="Table 2"),
        "USegNet-DS-SAM": _variant({**_DS, "sam_levels": _ALL_LEVELS}, source="Tables 1-2"),
        "UAM-1": _variant({**_DS, "uam_levels": (1,)}, source="Table 2"),
        "UAM-12": _variant({**_DS, "uam_levels": (1, 2)}, source="Table 2"),
        "USegNet-DS-UAM": _variant({**_DS, "uam_levels": _ALL_LEVELS}, source="Tables 1-2"),
        "USegNet-DS-HAS": _variant({**_DS, "sam_levels": _ALL_LEVELS, "uam_levels": _ALL_LEVELS}),
        "USegNet-DS-HAS-Ctx": _variant(
            {**_DS, "sam_levels": _ALL_LEVELS, "uam_levels": _ALL_LEVELS}, context_levels=2
        ),
    }
)
"""The paper's networks by name. The whole-volume variants differ only in their USegNet switches."""


def build_network(variant: str, **overrides: Any) -> nn.Module:
    """Build one of the paper's networks.

    Args:
        variant: a key of :data:`VARIANTS`, e.g. ``"USegNet-DS-HAS-Ctx"``.
        overrides: :class:`USegNet` keyword arguments that replace the variant's (e.g.
            ``features=(16, 32, 64, 64)``, ``in_channels``).

    Returns:
        a :class:`USegNet`, a :class:`SliceWise2D` around a 2D one, or an
        :class:`AutoContextCascade` of identical USegNets, whose batch normalisation uses the
        statistics of the volume at hand in evaluation mode too (:func:`use_volume_statistics`).

    Raises:
        ValueError: unknown variant name.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown network variant {variant!r}; known: {', '.join(VARIANTS)}.")
    spec = VARIANTS[variant]
    kwargs = {**spec.network, **overrides}
    if spec.context_levels > 1:
        network: nn.Module = AutoContextCascade([USegNet(**kwargs) for _ in range(spec.context_levels)])
    elif spec.slice_wise:
        network = SliceWise2D(USegNet(**kwargs))
    else:
        network = USegNet(**kwargs)
    return use_volume_statistics(network)
