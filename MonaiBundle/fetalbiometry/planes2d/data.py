"""Where the multi-task U-Net's frames come from: synthetic planes, a user's datalist, HC18, or a mix.

``configs/biometry/train.json`` trains on HC18, which has heads only. The multi-task U-Net
(``multitask_unet.json``) replaces its ``train_dataset``, ``validation_cases`` and ``test_cases``
with those of a source that has all three planes:

- :class:`SyntheticPlanes`: head, abdomen and femur planes of the phantom generator, each part
  (training, validation, test) drawn from its own range of seeds, so no phantom is in two parts;
- :class:`DatalistPlanes`: a user's annotated frames listed in a datalist
  (:mod:`fetalbiometry.data.plane_dataset`), split into parts by the user;
- :class:`HC18Planes`: the real HC18 heads of ``train.json``'s subject split (both are
  :class:`AnnotatedPlanes`);
- :class:`CombinedPlanes`: several sources together, e.g. the real HC18 heads with synthetic
  abdomens and femurs (``multitask_unet_hc18.json``), since no real abdomen or femur frames are
  public.

Each gives training samples (``samples``) and evaluation frames with their reference
(``cases``, :class:`~fetalbiometry.planes2d.evaluation.PlaneCase`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Union

from torch.utils.data import ConcatDataset, Dataset

from fetalbiometry.biometry.planes import PLANE_CLASSES
from fetalbiometry.data.hc18 import HC18Record
from fetalbiometry.data.hc18_dataset import IDENTITY, AnnotatedPlane, PlaneAugmentation, PlaneSampleDataset, hc18_plane
from fetalbiometry.data.plane_dataset import DATALIST_PARTS, SyntheticPlaneDataset, read_plane_datalist
from fetalbiometry.errors import InputError
from fetalbiometry.planes2d.evaluation import PlaneCase, datalist_case, phantom_case

__all__ = ["AnnotatedPlanes", "CombinedPlanes", "DatalistPlanes", "HC18Planes", "PlaneSource", "SyntheticPlanes"]


def _check_part(part: str) -> None:
    if part not in DATALIST_PARTS:
        raise ValueError(f"part must be one of {', '.join(DATALIST_PARTS)}, got {part!r}.")


class SyntheticPlanes:
    """Synthetic head, abdomen and femur planes, by part.

    Each part is a :class:`~fetalbiometry.data.plane_dataset.SyntheticPlaneDataset` of its own seeds.

    Args:
        lengths: number of planes of each part, e.g. ``{"training": 600, "validation": 60, "test": 150}``.
        base_seeds: first seed of each part, e.g. ``{"training": 0, "validation": 100000, "test": 200000}``.
        max_images: at most this many planes per part (for quick runs); all when None.
        kinds: the plane kinds, cycled through.

    Raises:
        ValueError: a part without a length or seed, or two parts whose seed ranges overlap.
    """

    def __init__(
        self,
        lengths: Mapping[str, int],
        base_seeds: Mapping[str, int],
        max_images: int | None = None,
        kinds: Sequence[str] = PLANE_CLASSES,
    ) -> None:
        if set(lengths) != set(DATALIST_PARTS) or set(base_seeds) != set(DATALIST_PARTS):
            raise ValueError(f"give a length and a base seed for each of {', '.join(DATALIST_PARTS)}.")
        self.lengths = {part: min(lengths[part], max_images or lengths[part]) for part in DATALIST_PARTS}
        self.base_seeds = dict(base_seeds)
        self.kinds = tuple(kinds)
        ranges = sorted((self.base_seeds[part], self.base_seeds[part] + lengths[part], part) for part in DATALIST_PARTS)
        for (_, end, first), (start, _, second) in zip(ranges, ranges[1:]):
            if start < end:
                raise ValueError(f"the seeds of the {first} and {second} planes overlap.")

    def samples(self, part: str, spatial_size: Sequence[int], transform: Callable | None = None) -> Dataset:
        """The planes of ``part`` as training samples (no offline augmentation: every phantom is a new pose)."""
        _check_part(part)
        length, base_seed = self.lengths[part], self.base_seeds[part]
        return SyntheticPlaneDataset(length, base_seed, spatial_size, self.kinds, transform=transform)

    def cases(self, part: str) -> list[PlaneCase]:
        """Each plane of ``part`` with its true HC, AC or FL (:func:`~fetalbiometry.planes2d.evaluation.phantom_case`)."""
        _check_part(part)
        planes = SyntheticPlaneDataset(self.lengths[part], self.base_seeds[part], kinds=self.kinds)
        return [phantom_case(planes.phantom(index)) for index in range(len(planes))]


class AnnotatedPlanes:
    """Annotated frames (:class:`~fetalbiometry.data.hc18_dataset.AnnotatedPlane`) by part.

    Args:
        parts: the frames of each of ``training``, ``validation`` and ``test``.
        augmentations: offline augmentations of the training frames (e.g. the MTLN's flips and
            rotations, :data:`~fetalbiometry.data.hc18_dataset.MTLN_AUGMENTATIONS`); those that
            move a structure out of the image are dropped.
        max_images: at most this many frames per part (for quick runs); all when None.
        where: what the frames are, for the error of an empty part.

    Raises:
        ValueError: a part is missing.
    """

    def __init__(
        self,
        parts: Mapping[str, Sequence[AnnotatedPlane]],
        augmentations: Sequence[PlaneAugmentation] = (IDENTITY,),
        max_images: int | None = None,
        where: str = "the frames",
    ) -> None:
        if set(parts) != set(DATALIST_PARTS):
            raise ValueError(f"give the frames of each of {', '.join(DATALIST_PARTS)}.")
        self.parts = {part: list(parts[part])[:max_images] for part in DATALIST_PARTS}
        self.augmentations = tuple(augmentations)
        self.where = where

    def _planes(self, part: str) -> list[AnnotatedPlane]:
        _check_part(part)
        if not self.parts[part]:
            raise InputError(f"{self.where} has no {part} entries")
        return self.parts[part]

    def samples(self, part: str, spatial_size: Sequence[int], transform: Callable | None = None) -> Dataset:
        """The frames of ``part`` as training samples, the training part augmented.

        Raises:
            InputError: the part is empty.
        """
        augmentations = self.augmentations if part == "training" else (IDENTITY,)
        return PlaneSampleDataset(self._planes(part), spatial_size, augmentations, transform)

    def cases(self, part: str) -> list[PlaneCase]:
        """The frames of ``part`` with their reference (:func:`~fetalbiometry.planes2d.evaluation.datalist_case`).

        Raises:
            InputError: the part is empty.
        """
        return [datalist_case(plane) for plane in self._planes(part)]


class DatalistPlanes(AnnotatedPlanes):
    """A user's annotated frames by the parts of their datalist (:mod:`fetalbiometry.data.plane_dataset`).

    Args:
        path: the datalist JSON file.
        augmentations: offline augmentations of the training frames (see :class:`AnnotatedPlanes`).
        max_images: at most this many frames per part (for quick runs); all when None.

    Raises:
        InputError: the datalist or one of its entries is bad (see ``read_plane_datalist``).
    """

    def __init__(
        self, path: str | Path, augmentations: Sequence[PlaneAugmentation] = (IDENTITY,), max_images: int | None = None
    ) -> None:
        self.path = Path(path)
        super().__init__(read_plane_datalist(path), augmentations, max_images, f"{self.path}: the datalist")


class HC18Planes(AnnotatedPlanes):
    """The HC18 heads by the parts of a subject split (:func:`fetalbiometry.planes2d.training.hc18_splits`).

    Each record becomes its annotated frame (:func:`~fetalbiometry.data.hc18_dataset.hc18_plane`):
    the ellipse fitted to its outline, the CSV HC as the reference.

    Args:
        splits: the records of each part, ``{"training": [...], "validation": [...], "test": [...]}``.
        augmentations: offline augmentations of the training frames (see :class:`AnnotatedPlanes`).
        max_images: at most this many frames per part (for quick runs); all when None.

    Raises:
        ValueError: a part is missing.
    """

    def __init__(
        self,
        splits: Mapping[str, Sequence[HC18Record]],
        augmentations: Sequence[PlaneAugmentation] = (IDENTITY,),
        max_images: int | None = None,
    ) -> None:
        parts = {part: [hc18_plane(record) for record in records[:max_images]] for part, records in splits.items()}
        super().__init__(parts, augmentations, where="the HC18 split")


PlaneSource = Union[SyntheticPlanes, AnnotatedPlanes]
"""A source of frames of :class:`CombinedPlanes`."""


class CombinedPlanes:
    """The frames of several sources, part by part: their samples concatenated, their cases in turn.

    Args:
        sources: the sources, e.g. ``[HC18Planes(...), SyntheticPlanes(..., kinds=("abdomen", "femur"))]``.

    Raises:
        ValueError: fewer than two sources.
    """

    def __init__(self, sources: Sequence[PlaneSource]) -> None:
        if len(sources) < 2:
            raise ValueError(f"combine at least two sources, got {len(sources)}.")
        self.sources = tuple(sources)

    def samples(self, part: str, spatial_size: Sequence[int], transform: Callable | None = None) -> Dataset:
        """The samples of ``part`` of every source, one after the other."""
        return ConcatDataset([source.samples(part, spatial_size, transform) for source in self.sources])

    def cases(self, part: str) -> list[PlaneCase]:
        """The cases of ``part`` of every source, one after the other."""
        return [case for source in self.sources for case in source.cases(part)]
