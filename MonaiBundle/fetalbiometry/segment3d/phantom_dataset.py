"""Synthetic whole-head volumes generated on the fly, at the grids scanners export, for training.

With no datalist, ``MonaiBundle/configs/train.json`` trains on these phantoms
(:func:`fetalbiometry.data.synthetic.make_head_volume`), so the bundle runs out of the box. Each
phantom is a scan as a scanner would export it, not a grid chosen for the network:

- a head of 14 to 40 weeks (``ga_range``), sized by the growth charts;
- a voxel size drawn from ``spacing_range`` (0.6-1.2 mm by default), one axis up to
  ``max_anisotropy`` times coarser (the elevation of a 3D probe);
- a field of view that holds the head with a random margin, and at least a drawn 80-200 mm (a
  small head in a scanner's usual field of view);
- the whole scene (probe and head) turned by a uniformly random 3D rotation against the exported
  axes, and, for half of the phantoms, an oblique direction in the file.

The bundle's preprocessing then resamples every phantom to the network's ``target_spacing``, as it
does a user's volume, so training sees exactly the path of inference.

Generating a large phantom takes seconds, so for repeated trainings the same phantoms can be
written once, in parallel, as NIfTI files with a decathlon datalist (training, validation and test
parts) that ``train.json`` and ``evaluate.json`` read with ``--datalist``::

    python -m fetalbiometry.segment3d.phantom_dataset OUT_DIR --train 64 --validation 8 --test 20
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation
from torch.utils.data import Dataset

from fetalbiometry.data.anatomy import HeadAnatomy
from fetalbiometry.data.synthetic import IMAGE_MODELS, PROBE_DIRECTIONS, HeadPhantom, ImageModel, make_head_volume
from fetalbiometry.io import atomic_output, write_image
from fetalbiometry.segment3d.transforms import image_to_tensor

__all__ = ["PhantomDataset", "ScanGrid", "draw_scan_grid", "write_phantom_datalist"]

_HEAD_REACH = 1.25  # the whole head with its face reaches this many times the skull's longest semi-axis
_HEAD_OFFSET_MM = 6.0  # the generator moves the head up to this far from the volume's centre


@dataclass(frozen=True)
class ScanGrid:
    """Where and how one phantom is sampled.

    Attributes:
        shape: (z, y, x) voxels, SimpleITK array order.
        spacing: (x, y, z) voxel size in mm, SimpleITK order.
        scene_direction: direction cosines the generator samples the scene with (row-major 3×3).
        file_direction: direction cosines written to the image: the scene appears turned by
            ``file_direction · scene_directionᵀ`` in the file's world frame.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    scene_direction: tuple[float, ...]
    file_direction: tuple[float, ...]


def draw_scan_grid(
    rng: np.random.Generator,
    head_extent_mm: float,
    spacing_range: Sequence[float],
    max_anisotropy: float,
    margin_range: Sequence[float],
    field_of_view_range: Sequence[float],
    max_voxels: float,
    oblique_probability: float,
) -> ScanGrid:
    """Draw a scanner-like grid around a head whose largest extent is ``head_extent_mm``.

    The finest spacing is uniform in ``spacing_range``; one random axis is coarser by a factor
    uniform in [1, ``max_anisotropy``]. The field of view is the head's extent times a margin uniform
    in ``margin_range`` or a size uniform in ``field_of_view_range`` (mm), whichever is larger, plus
    the generator's head offset; a grid over ``max_voxels`` is coarsened isotropically to fit (the
    generator's memory and time grow with the voxel count).
    """
    fine = rng.uniform(*spacing_range)
    spacing = np.full(3, fine)
    spacing[rng.integers(3)] *= rng.uniform(1.0, max_anisotropy)
    field_of_view = max(head_extent_mm * rng.uniform(*margin_range), rng.uniform(*field_of_view_range))
    field_of_view += 2.0 * _HEAD_OFFSET_MM
    size = np.ceil(field_of_view / spacing)
    if size.prod() > max_voxels:
        spacing *= (size.prod() / max_voxels) ** (1.0 / 3.0)
        size = np.ceil(field_of_view / spacing)
    scene = Rotation.random(random_state=rng).as_matrix()
    oblique = rng.uniform() < oblique_probability
    file_direction = Rotation.random(random_state=rng).as_matrix() if oblique else np.eye(3)
    x, y, z = (int(s) for s in size)
    return ScanGrid(
        shape=(z, y, x),
        spacing=tuple(float(s) for s in spacing),
        scene_direction=tuple(scene.ravel()),
        file_direction=tuple(file_direction.ravel()),
    )


class PhantomDataset(Dataset):
    """``length`` phantoms; item ``i`` is the head of subject ``base_seed + i`` on a drawn scanner grid.

    Items look like those of ``LoadImaged(reader="ITKReader")`` + ``EnsureChannelFirstd`` on a
    decathlon datalist: ``{"image": MetaTensor (1, x, y, z) float32 B-mode 0-255, "label":
    MetaTensor (1, x, y, z) float32 0/1, "seed": int}`` with the affine of the phantom's grid, and
    ``filename_or_obj`` set to ``phantom-<seed>`` to name the case in reports. The probe
    direction cycles through :data:`~fetalbiometry.data.synthetic.PROBE_DIRECTIONS` with the index,
    so a training set sees heads from every side. Everything is deterministic by seed.

    Use seed ranges that do not overlap (:attr:`seeds`) for training and validation sets, e.g.
    ``base_seed`` of the validation set = training ``base_seed`` + training ``length``.

    Args:
        length: number of phantoms.
        base_seed: seed of item 0.
        spacing_range: (min, max) of the finest voxel size in mm.
        max_anisotropy: the coarsest axis is at most this many times the finest.
        ga_range: (min, max) gestational age in weeks, within 14-40.
        margin_range: (min, max) field of view as a multiple of the head's extent.
        field_of_view_range: (min, max) field of view in mm, if larger than the head's margin.
        max_voxels: largest grid generated; a larger draw is coarsened to fit.
        oblique_probability: chance that the file's direction is oblique rather than the identity.
        image_models: B-mode models of :data:`fetalbiometry.data.synthetic.IMAGE_MODELS`, cycled
            through after each round of probe directions, so that every model is scanned from
            every side (e.g. ``("polar", "cartesian")`` for half of each).
        transform: optional callable applied to each item (a MONAI ``Compose``).
    """

    def __init__(
        self,
        length: int,
        base_seed: int = 0,
        spacing_range: Sequence[float] = (0.6, 1.2),
        max_anisotropy: float = 2.0,
        ga_range: Sequence[float] = (14.0, 40.0),
        margin_range: Sequence[float] = (1.1, 1.5),
        field_of_view_range: Sequence[float] = (80.0, 200.0),
        max_voxels: float = 16e6,
        oblique_probability: float = 0.5,
        image_models: Sequence[ImageModel] = ("polar", "cartesian"),
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        if length < 1 or base_seed < 0:
            raise ValueError(f"need length >= 1 and base_seed >= 0, got length={length}, base_seed={base_seed}.")
        if not image_models or any(model not in IMAGE_MODELS for model in image_models):
            raise ValueError(f"image_models must be among {IMAGE_MODELS}, got {tuple(image_models)}.")
        if not 0.0 < spacing_range[0] <= spacing_range[1] or max_anisotropy < 1.0:
            raise ValueError(f"need 0 < spacing_range[0] <= [1] and max_anisotropy >= 1, got {spacing_range}, {max_anisotropy}.")
        self.length = length
        self.base_seed = base_seed
        self.spacing_range = (float(spacing_range[0]), float(spacing_range[1]))
        self.max_anisotropy = float(max_anisotropy)
        self.ga_range = (float(ga_range[0]), float(ga_range[1]))
        self.margin_range = (float(margin_range[0]), float(margin_range[1]))
        self.field_of_view_range = (float(field_of_view_range[0]), float(field_of_view_range[1]))
        self.max_voxels = float(max_voxels)
        self.oblique_probability = float(oblique_probability)
        self.image_models = tuple(image_models)
        self.transform = transform

    @property
    def seeds(self) -> range:
        """The phantom seeds of this data set, in item order."""
        return range(self.base_seed, self.base_seed + self.length)

    def __len__(self) -> int:
        return self.length

    def phantom(self, index: int) -> HeadPhantom:
        """Phantom ``index`` as the generator makes it, with the file's direction written on it."""
        if not 0 <= index < self.length:
            raise IndexError(f"phantom index {index} out of range 0..{self.length - 1}.")
        seed = self.base_seed + index
        rng = np.random.default_rng([seed, 3])
        ga_weeks = float(rng.uniform(*self.ga_range))
        anatomy = HeadAnatomy.from_seed(seed, ga_weeks)
        head_extent = 2.0 * _HEAD_REACH * float(np.max(anatomy.skull.semi_axes))
        grid = draw_scan_grid(
            rng,
            head_extent,
            self.spacing_range,
            self.max_anisotropy,
            self.margin_range,
            self.field_of_view_range,
            self.max_voxels,
            self.oblique_probability,
        )
        phantom = make_head_volume(
            seed=seed,
            shape=grid.shape,
            spacing=grid.spacing,
            ga_weeks=ga_weeks,
            probe_direction=index % len(PROBE_DIRECTIONS),
            direction=grid.scene_direction,
            image_model=self.image_models[index % len(self.image_models)],
        )
        for image in (phantom.image, phantom.label):
            image.SetDirection(grid.file_direction)
        return phantom

    def image_model(self, index: int) -> ImageModel:
        """B-mode model of phantom ``index``: the next one after each round of probe directions."""
        return self.image_models[(index // len(PROBE_DIRECTIONS)) % len(self.image_models)]

    def __getitem__(self, index: int) -> Any:
        phantom = self.phantom(index)
        seed = self.base_seed + index
        item: dict[str, Any] = {
            "image": image_to_tensor(phantom.image),
            "label": image_to_tensor(phantom.label),
            "seed": seed,
        }
        for key in ("image", "label"):
            item[key].meta["filename_or_obj"] = f"phantom-{seed}"
        return self.transform(item) if self.transform is not None else item


def _write_phantom(dataset: PhantomDataset, index: int, outdir: Path) -> dict[str, Any]:
    """Write phantom ``index`` of ``dataset`` under ``outdir``; its datalist entry with its truth."""
    phantom = dataset.phantom(index)
    name = f"phantom-{dataset.base_seed + index}"
    write_image(phantom.image, outdir / "images" / f"{name}.nii.gz")
    write_image(phantom.label, outdir / "labels" / f"{name}.nii.gz")
    spacing = [round(float(s), 4) for s in phantom.image.GetSpacing()]
    return {"image": f"images/{name}.nii.gz", "label": f"labels/{name}.nii.gz", "spacing_mm": spacing, **phantom.truth}


def write_phantom_datalist(
    outdir: Path, parts: dict[str, PhantomDataset], workers: int = 1
) -> Path:
    """Write every phantom of ``parts`` as NIfTI files and a decathlon ``datalist.json``; returns its path.

    Args:
        outdir: folder for ``images/``, ``labels/`` and ``datalist.json`` (paths in it are relative).
        parts: datalist key (``training``, ``validation``, ``test``) → the phantoms of that part.
        workers: processes that generate phantoms at once.
    """
    outdir = Path(outdir)
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        written = {
            key: [pool.submit(_write_phantom, dataset, index, outdir) for index in range(len(dataset))]
            for key, dataset in parts.items()
        }
        datalist = {key: [job.result() for job in jobs] for key, jobs in written.items()}
    path = outdir / "datalist.json"
    with atomic_output(path) as staging:
        staging.write_text(json.dumps(datalist, indent=1) + "\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Write training, validation and test phantoms with a datalist (see the module's docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m fetalbiometry.segment3d.phantom_dataset",
        description="Write head phantoms at scanner-like grids as NIfTI files with a decathlon datalist.",
    )
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--train", type=int, default=64, help="training phantoms (seeds from --seed)")
    parser.add_argument("--validation", type=int, default=8, help="validation phantoms (the next seeds)")
    parser.add_argument("--test", type=int, default=0, help="test phantoms (seeds from --test-seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-seed", type=int, default=100000)
    parser.add_argument("--spacing-range", type=float, nargs=2, default=(0.6, 1.2), metavar=("MIN", "MAX"))
    parser.add_argument(
        "--test-spacing-range", type=float, nargs=2, default=(0.4, 1.2), metavar=("MIN", "MAX"),
        help="finest voxel size of the test phantoms (default: 0.4-1.2 mm)",
    )
    parser.add_argument("--max-voxels", type=float, default=16e6, help="largest training grid (voxels)")
    parser.add_argument("--workers", type=int, default=1, help="processes generating phantoms")
    parser.add_argument(
        "--image-models", nargs="+", choices=IMAGE_MODELS, default=["polar", "cartesian"],
        help="B-mode models, cycled through after each round of probe directions (default: both)",
    )
    args = parser.parse_args(argv)
    common = {"spacing_range": args.spacing_range, "max_voxels": args.max_voxels, "image_models": args.image_models}
    parts = {}
    if args.train:
        parts["training"] = PhantomDataset(args.train, args.seed, **common)
    if args.validation:
        parts["validation"] = PhantomDataset(args.validation, args.seed + args.train, **common)
    if args.test:
        # test grids up to 300³ voxels: the finest spacings stay fine for all but the largest heads
        common |= {"spacing_range": args.test_spacing_range, "max_voxels": 27e6}
        parts["test"] = PhantomDataset(args.test, args.test_seed, **common)
    if not parts:
        parser.error("nothing to write: give --train, --validation or --test")
    path = write_phantom_datalist(args.outdir, parts, args.workers)
    print(f"wrote {sum(len(d) for d in parts.values())} phantoms and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
