"""Run a 2D network slice by slice on a volume (the 2D-USegNet baseline of Table 1)."""

from __future__ import annotations

from typing import List, Union

import torch
import torch.nn as nn

__all__ = ["SliceWise2D"]


class SliceWise2D(nn.Module):
    """Apply a 2D segmentation network to every slice of a 3D volume and restack the outputs.

    The paper's 2D-USegNet "takes slices with original resolution as input and outputs slices
    with the same sizes" (Sec. 3.2); this wrapper lets it take and return volumes like the 3D
    variants, so the same training and inference code serves both. The slices of a volume
    are processed together as one batch.

    Args:
        network: a 2D network mapping (N, C, H, W) to (N, K, H, W) logits, or in training mode
            possibly a list of such tensors at several resolutions (deep supervision).
        slice_axis: spatial axis (0, 1 or 2) that indexes the slices. The default 2 is the last
            axis, the axial (z) axis of MONAI's channel-first (C, x, y, z) arrays.
    """

    def __init__(self, network: nn.Module, slice_axis: int = 2) -> None:
        super().__init__()
        if slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1 or 2 (a spatial axis of a volume), got {slice_axis}.")
        self.network = network
        self.slice_axis = slice_axis

    def _restack(self, slices: torch.Tensor, batch_size: int) -> torch.Tensor:
        """(B*S, K, H, W) → (B, K, *volume) with the slice axis back in place."""
        return torch.movedim(slices.unflatten(0, (batch_size, -1)), 1, self.slice_axis + 2)

    def forward(self, volume: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        """Args:
            volume: shape (B, C, X, Y, Z).

        Returns:
            logits of shape (B, K, X, Y, Z), or the network's list of outputs restacked the same
            way (auxiliary outputs are smaller in-plane only).
        """
        batch_size = volume.shape[0]
        slices = torch.movedim(volume, self.slice_axis + 2, 1).flatten(0, 1)
        output = self.network(slices)
        if isinstance(output, torch.Tensor):
            return self._restack(output, batch_size)
        return [self._restack(item, batch_size) for item in output]
