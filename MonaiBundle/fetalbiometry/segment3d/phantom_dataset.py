"""Synthetic whole-head volumes generated on the fly, as a data set for the bundle's training.

With no datalist, ``MonaiBundle/configs/train.json`` trains on these phantoms
(:func:`fetalbiometry.data.synthetic.make_head_volume`), so the bundle runs out of the box.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset

from fetalbiometry.data.synthetic import (
    DEFAULT_VOLUME_SHAPE,
    DEFAULT_VOLUME_SPACING,
    PROBE_DIRECTIONS,
    make_head_volume,
)
from fetalbiometry.segment3d.transforms import image_to_tensor

__all__ = ["PhantomDataset"]


class PhantomDataset(Dataset):
    """``length`` phantoms; item ``i`` is ``make_head_volume(seed=base_seed + i, ...)``.

    Items look like those of ``LoadImaged(reader="ITKReader")`` + ``EnsureChannelFirstd`` on a
    decathlon datalist: ``{"image": MetaTensor (1, x, y, z) float32 B-mode 0-255, "label":
    MetaTensor (1, x, y, z) float32 0/1, "seed": int}`` with the affine of the phantom's grid, and
    ``filename_or_obj`` set to ``phantom-<seed>`` to name the case in reports. The probe
    direction cycles through :data:`~fetalbiometry.data.synthetic.PROBE_DIRECTIONS` with the index,
    so a training set sees heads from every side.

    Use seed ranges that do not overlap (:attr:`seeds`) for training and validation sets, e.g.
    ``base_seed`` of the validation set = training ``base_seed`` + training ``length``.

    Args:
        length: number of phantoms.
        base_seed: seed of item 0.
        shape: (z, y, x) voxels of each phantom, SimpleITK array order.
        spacing: (x, y, z) voxel size in mm, SimpleITK order.
        transform: optional callable applied to each item (a MONAI ``Compose``).
    """

    def __init__(
        self,
        length: int,
        base_seed: int = 0,
        shape: Sequence[int] = DEFAULT_VOLUME_SHAPE,
        spacing: Sequence[float] = DEFAULT_VOLUME_SPACING,
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        if length < 1 or base_seed < 0:
            raise ValueError(f"need length >= 1 and base_seed >= 0, got length={length}, base_seed={base_seed}.")
        self.length = length
        self.base_seed = base_seed
        self.shape = tuple(shape)
        self.spacing = tuple(spacing)
        self.transform = transform

    @property
    def seeds(self) -> range:
        """The phantom seeds of this data set, in item order."""
        return range(self.base_seed, self.base_seed + self.length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.length:
            raise IndexError(f"phantom index {index} out of range 0..{self.length - 1}.")
        seed = self.base_seed + index
        phantom = make_head_volume(
            seed=seed, shape=self.shape, spacing=self.spacing, probe_direction=index % len(PROBE_DIRECTIONS)
        )
        item: dict[str, Any] = {
            "image": image_to_tensor(phantom.image),
            "label": image_to_tensor(phantom.label),
            "seed": seed,
        }
        for key in ("image", "label"):
            item[key].meta["filename_or_obj"] = f"phantom-{seed}"
        return self.transform(item) if self.transform is not None else item
