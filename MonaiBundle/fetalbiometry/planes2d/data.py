"""Where the multi-task U-Net's frames come from: synthetic planes, a user's datalist, HC18, or a mix.

``configs/biometry/train.json`` trains on HC18, which has heads only. The multi-task U-Net
(``multitask_unet.json``) replaces its ``train_dataset``, ``validation_cases`` and ``test_cases``
with those of a source that has all three planes:

- :class:`SyntheticPlanes`: head, abdomen and femur planes of the phantom generator, each part
  (training, validation, test) drawn from its own range of seeds, so no phantom is in two parts;
- :class:`DatalistPlanes`: a user's annotated frames listed in a datalist
  (:mod:`fetalbiometry.data.plane_dataset`), split into parts by the user;
- :class:`HC18Planes`: the real HC18 heads of ``train.json``'s subject split;
- :class:`PhantomPlanes`: phantom planes as annotated frames, trained on exactly as HC18's frames
  are (offline augmentation, the MTLN's second-look windows, supersampled labels): the
  sim-to-real model of ``mtln_synthetic_only.json``, or added to HC18's frames by
  ``mtln_with_phantoms.json`` (these three are :class:`AnnotatedPlanes`);
- :class:`CombinedPlanes`: several sources together, e.g. the real HC18 heads with synthetic
  abdomens and femurs (``multitask_unet_hc18.json``), since no real abdomen or femur frames are
  public.

Each gives training samples (``samples``) and evaluation frames with their reference
(``cases``, :class:`~fetalbiometry.planes2d.evaluation.PlaneCase`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk
from torch.utils.data import ConcatDataset, Dataset

from fetalbiometry.biometry.planes import PLANE_CLASSES, PLANE_MEASURES
from fetalbiometry.data.anatomy import size_for_age
from fetalbiometry.data.hc18 import HC18Record
from fetalbiometry.data.hc18_dataset import (
    IDENTITY,
    AnnotatedPlane,
    HeadCrop,
    PlaneAugmentation,
    PlaneSampleDataset,
    hc18_plane,
)
from fetalbiometry.data.plane_dataset import DATALIST_PARTS, SyntheticPlaneDataset, read_plane_datalist
from fetalbiometry.data.synthetic import DEFAULT_PLANE_SHAPE, make_plane
from fetalbiometry.errors import InputError
from fetalbiometry.planes2d.evaluation import PlaneCase, datalist_case, phantom_case

__all__ = [
    "AnnotatedPlanes",
    "CombinedPlanes",
    "DatalistPlanes",
    "HC18Planes",
    "PhantomPlanes",
    "PlaneSource",
    "SyntheticPlanes",
    "phantom_plane",
]


def _check_part(part: str) -> None:
    if part not in DATALIST_PARTS:
        raise ValueError(f"part must be one of {', '.join(DATALIST_PARTS)}, got {part!r}.")


def _check_seed_ranges(lengths: Mapping[str, int], base_seeds: Mapping[str, int]) -> None:
    """A length and a base seed for each part, and no seed in two parts (ValueError otherwise)."""
    if set(lengths) != set(DATALIST_PARTS) or set(base_seeds) != set(DATALIST_PARTS):
        raise ValueError(f"give a length and a base seed for each of {', '.join(DATALIST_PARTS)}.")
    ranges = sorted((base_seeds[part], base_seeds[part] + lengths[part], part) for part in DATALIST_PARTS)
    for (_, end, first), (start, _, second) in zip(ranges, ranges[1:]):
        if start < end:
            raise ValueError(f"the seeds of the {first} and {second} planes overlap.")


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
        _check_seed_ranges(lengths, base_seeds)
        self.lengths = {part: min(lengths[part], max_images or lengths[part]) for part in DATALIST_PARTS}
        self.base_seeds = dict(base_seeds)
        self.kinds = tuple(kinds)

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

    def samples(
        self,
        part: str,
        spatial_size: Sequence[int],
        transform: Callable | None = None,
        head_crop: HeadCrop | None = None,
        label_supersampling: int = 1,
    ) -> Dataset:
        """The frames of ``part`` as training samples, the training part augmented.

        ``head_crop`` and ``label_supersampling`` are those of
        :class:`~fetalbiometry.data.hc18_dataset.PlaneSampleDataset`.

        Raises:
            InputError: the part is empty.
        """
        augmentations = self.augmentations if part == "training" else (IDENTITY,)
        planes = self._planes(part)
        return PlaneSampleDataset(planes, spatial_size, augmentations, transform, head_crop, label_supersampling)

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


def phantom_plane(
    kind: str,
    seed: int,
    shape: Sequence[int] = DEFAULT_PLANE_SHAPE,
    ga_range: tuple[float, float] | None = None,
    fill_range: tuple[float, float] | None = None,
) -> AnnotatedPlane:
    """A phantom plane (:func:`~fetalbiometry.data.synthetic.make_plane`) as an annotated frame.

    The reference is the phantom's exact structure and its true HC, AC or FL; the frame is made
    once and kept in memory. By default the generator draws the age and the zoom; ``ga_range`` and
    ``fill_range`` draw them (uniformly, from the seed) to match a data set's framing: the
    structure's mean size at that age (INTERGROWTH-21st; the diameter of a head or abdomen, the
    femur's length) spans that fraction of the frame's rows (columns for a femur). HC18's heads
    span 0.43-0.96 of the rows (5th-95th percentiles) at 11-40 weeks.

    Raises:
        InputError: an age outside 14-40 weeks (the growth standard's range; 10-40 for heads).
    """
    pixel_size = ga = None
    if ga_range is not None and fill_range is not None:
        rng = np.random.default_rng([seed, len(PLANE_CLASSES), PLANE_CLASSES.index(kind)])
        ga = float(rng.uniform(*ga_range))
        measure = PLANE_MEASURES[kind]
        mean_mm = size_for_age(measure, ga)
        size_mm = mean_mm if measure == "fl" else mean_mm / np.pi
        pixel_size = size_mm / (shape[1 if measure == "fl" else 0] * rng.uniform(*fill_range))
    phantom = make_plane(kind, seed, shape, pixel_size, ga)
    frame = sitk.GetArrayFromImage(phantom.image)
    truth = phantom.truth
    return AnnotatedPlane(
        f"{kind}-{seed}",
        frame.copy,
        frame.shape,
        float(truth["pixel_size_mm"]),
        phantom.structure,
        kind,
        float(truth[f"{PLANE_MEASURES[kind]}_mm"]),
    )


class PhantomPlanes(AnnotatedPlanes):
    """Phantom planes by part, as annotated frames (:func:`phantom_plane`).

    Unlike :class:`SyntheticPlanes`, whose samples are made on the fly without augmentation, these
    go through :class:`AnnotatedPlanes` like HC18's frames: the same offline augmentation, second-look
    windows and labels, so that a config trained on HC18 trains on phantoms by swapping the source
    alone. Part ``p`` holds planes of seeds ``base_seeds[p]`` … ``base_seeds[p] + lengths[p] − 1``,
    the kinds cycled through.

    Args:
        lengths: number of planes of each part; a part may be empty.
        base_seeds: first seed of each part; the ranges may not overlap.
        kinds: the plane kinds, cycled through.
        augmentations: offline augmentations of the training frames (see :class:`AnnotatedPlanes`).
        max_images: at most this many frames per part (for quick runs); all when None.
        shape: (rows, columns) of the frames, e.g. (540, 800) for HC18's.
        ga_range, fill_range: the framing of :func:`phantom_plane`; the generator's when None.
        num_workers: processes that make the planes (0: this one).

    Raises:
        ValueError: a part without a length or seed, or two parts whose seed ranges overlap.
    """

    def __init__(
        self,
        lengths: Mapping[str, int],
        base_seeds: Mapping[str, int],
        kinds: Sequence[str] = ("head",),
        augmentations: Sequence[PlaneAugmentation] = (IDENTITY,),
        max_images: int | None = None,
        shape: Sequence[int] = DEFAULT_PLANE_SHAPE,
        ga_range: tuple[float, float] | None = None,
        fill_range: tuple[float, float] | None = None,
        num_workers: int = 0,
    ) -> None:
        _check_seed_ranges(lengths, base_seeds)
        make = partial(_phantom_plane_of, kinds=tuple(kinds), shape=tuple(shape), ga_range=ga_range, fill_range=fill_range)
        seeds = {
            part: [(index, base_seeds[part] + index) for index in range(min(lengths[part], max_images or lengths[part]))]
            for part in DATALIST_PARTS
        }
        with ProcessPoolExecutor(num_workers) if num_workers > 0 else nullcontext() as pool:
            mapper = pool.map if pool is not None else map
            parts = {part: list(mapper(make, seeds[part])) for part in DATALIST_PARTS}
        super().__init__(parts, augmentations, where="the phantom planes")


def _phantom_plane_of(
    index_seed: tuple[int, int],
    kinds: tuple[str, ...],
    shape: tuple[int, ...],
    ga_range: tuple[float, float] | None,
    fill_range: tuple[float, float] | None,
) -> AnnotatedPlane:
    """:func:`phantom_plane` of item ``index`` with ``seed``, its kind cycled (a module function: it crosses processes)."""
    index, seed = index_seed
    return phantom_plane(kinds[index % len(kinds)], seed, shape, ga_range, fill_range)


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
