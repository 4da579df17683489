"""Pre-processing and augmentation of the 3D whole-fetal-head segmentor, in millimetres.

Yang X, Wang X, Wang Y, et al. "Hybrid attention for automatic segmentation of whole fetal head
in prenatal ultrasound volumes", Computer Methods and Programs in Biomedicine, 2020
(``shared/papers/3d-whole-head-hybrid-attention-autocontext.txt``), Sections 2.1 and 3.1.

One pipeline serves the bundle configs (``MonaiBundle/configs/*.json``) and
:mod:`fetalbiometry.segment3d.segmenter`; both build it from these functions so that a model always
sees what it was trained on:

1. :func:`image_to_tensor`: a ``SimpleITK.Image`` becomes a channel-first ``MetaTensor`` of shape
   (1, x, y, z) with the affine that MONAI's ``LoadImaged(reader="ITKReader")`` +
   ``EnsureChannelFirstd`` give for the same file (array axes in ITK (x, y, z) order, affine in
   RAS). Configs load files with those two transforms.
2. :func:`spatial_transforms`: the volume is put on the network's grid, whatever the scanner
   exported: ``Orientationd`` to RAS, :class:`AntiAliasd` against aliasing, then ``Spacingd`` to the
   bundle's ``target_spacing`` (mm) on an axis-aligned grid (``diagonal=True`` removes an oblique direction too), trilinear for
   images and nearest for labels, then padding to a multiple of :data:`SIZE_DIVISOR` for the
   network's poolings. A head of one size in mm is one size in voxels at every input spacing and
   direction. The paper's setting, 0.38 mm scans down-scaled by 0.4, is ``target_spacing`` 0.95 mm.
   All three are invertible MONAI transforms.
3. :func:`normalize_intensity` (configs: :func:`normalize_intensityd`): per-volume scaling to
   [0, 1], from the minimum (0th percentile) to the 99.5th percentile, clipped, on the network's
   grid. The auto-context join adds a probability map to the image (Eq. 5), so the image must be on
   the same [0, 1] scale.
4. After the network, ``Invertd`` in the configs (or :meth:`SegmentorInput.restore`) crops the
   padding and resamples the class probabilities back onto the input's exact grid (spacing, origin
   and direction) before the arg-max; :func:`tensor_to_label` puts an (x, y, z) label back on the
   ``SimpleITK`` grid.

:class:`SegmentorInput` bundles steps 2-4 for one volume outside the configs::

    network_input = SegmentorInput(target_spacing)
    x = network_input(image_to_tensor(image))          # (1, X, Y, Z) on the network's grid
    scores = network_input.restore(network(x[None])[0], x)   # (K, x, y, z) on the input grid
    label = tensor_to_label(scores.argmax(0), image)

Training adds the paper's augmentation (Sec. 2.1): flips along the three axes and 180° rotations
about them (MONAI ``RandFlipd`` and ``Rotate90d(k=2)`` in the config), and
:class:`RandShadowErasingd`, a zeroed box near the head that mimics an acoustic shadow.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import orientation_ras_lps
from monai.transforms import (
    Compose,
    DivisiblePadd,
    Orientationd,
    MapTransform,
    RandomizableTransform,
    ScaleIntensityRangePercentiles,
    ScaleIntensityRangePercentilesd,
    Spacingd,
)
from monai.utils import convert_to_dst_type, ensure_tuple
from scipy import ndimage

from fetalbiometry.io import label_like

__all__ = [
    "AntiAliasd",
    "INTENSITY_SCALING",
    "SIZE_DIVISOR",
    "RandShadowErasingd",
    "SegmentorInput",
    "check_target_spacing",
    "image_to_tensor",
    "normalize_intensity",
    "normalize_intensityd",
    "spatial_transforms",
    "tensor_to_label",
]

SIZE_DIVISOR = 8
"""Spatial sizes fed to the network are padded to a multiple of this: 2³ for its 3 poolings (Sec. 2.3)."""

INTENSITY_SCALING: Mapping[str, Any] = {"lower": 0.0, "upper": 99.5, "b_min": 0.0, "b_max": 1.0, "clip": True}
"""Arguments of MONAI's ``ScaleIntensityRangePercentiles`` used everywhere: [min, 99.5th percentile] → [0, 1]."""

_IMAGE_KEY = "image"
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # the affines here are RAS (image_to_tensor, ITKReader)


def normalize_intensity(array: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Scale one volume's intensities to [0, 1]: its minimum to 0, its 99.5th percentile to 1, clipped.

    The upper percentile rather than the maximum keeps a few saturated speckle or bone voxels from
    compressing the tissue range.

    Args:
        array: a volume (any shape, channel-first or not).

    Returns:
        the scaled volume, same type and shape, float.
    """
    return ScaleIntensityRangePercentiles(**INTENSITY_SCALING)(array)


def normalize_intensityd(keys: KeysCollection = _IMAGE_KEY) -> ScaleIntensityRangePercentilesd:
    """The dictionary transform of :func:`normalize_intensity`, for the bundle configs."""
    return ScaleIntensityRangePercentilesd(keys=keys, **INTENSITY_SCALING)


def spatial_transforms(
    target_spacing: Sequence[float],
    image_keys: KeysCollection = _IMAGE_KEY,
    label_keys: KeysCollection = (),
    size_divisor: int = SIZE_DIVISOR,
) -> list[MapTransform]:
    """Resample the volumes onto the network's grid in mm and pad them for its poolings (Sec. 3.1).

    The paper feeds its network 0.38 mm scans "downscale[d] ... with a factor of 0.4 on each
    dimension", i.e. at 0.95 mm, and resamples the result "back to the original full resolution".
    Scanners export 0.3-1.2 mm, often anisotropic and oblique, so a fixed voxel factor would show the
    network heads of different sizes; a fixed spacing in mm does not. The transforms record
    themselves in the ``MetaTensor``, so ``Invertd`` (or :meth:`SegmentorInput.restore`) undoes them;
    the inversion must use these very transform objects (MONAI checks their identity).

    Args:
        target_spacing: the network's voxel size in mm, (x, y, z) in RAS; a positive number or three.
        image_keys: keys of channel-first intensity volumes (trilinear interpolation).
        label_keys: keys of channel-first label volumes (nearest-neighbour interpolation).
        size_divisor: pad each spatial size to a multiple of this (2 ** number of poolings).

    Returns:
        ``[Orientationd, AntiAliasd, Spacingd, DivisiblePadd]``, to put in a ``Compose``.

    Raises:
        ValueError: a ``target_spacing`` that is not one or three positive finite numbers.
    """
    spacing = check_target_spacing(target_spacing)
    images, labels = ensure_tuple(image_keys), ensure_tuple(label_keys)
    keys = images + labels
    modes = ("bilinear",) * len(images) + ("nearest",) * len(labels)
    return [
        Orientationd(keys=keys, axcodes="RAS", labels=_RAS_LABELS),
        AntiAliasd(keys=images, target_spacing=spacing),
        # diagonal=True: an axis-aligned grid in RAS, so an oblique volume is resampled, not just relabelled;
        # zeros outside the input: ultrasound has no echo there
        Spacingd(keys=keys, pixdim=spacing, mode=modes, padding_mode="zeros", diagonal=True),
        DivisiblePadd(keys=keys, k=size_divisor),
    ]


def check_target_spacing(target_spacing: float | Sequence[float]) -> tuple[float, float, float]:
    """``target_spacing`` as three positive finite mm (one number means isotropic); ValueError otherwise."""
    values = np.atleast_1d(np.asarray(target_spacing, dtype=float))
    if values.size == 1:
        values = np.repeat(values, 3)
    if values.shape != (3,) or not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"target_spacing must be one or three positive numbers in mm, got {target_spacing}.")
    return (float(values[0]), float(values[1]), float(values[2]))


class AntiAliasd(MapTransform):
    """Blur images before they are down-sampled to ``target_spacing``, so that no input spacing aliases.

    Sampling a finer volume at a coarser spacing keeps single voxels of the speckle; how many depends
    on the ratio of the two spacings, so the network would see a different texture at 0.5 mm and at
    1.0 mm. A Gaussian of ``(target / spacing - 1) / 2`` voxels per axis (the rule of
    ``skimage.transform.rescale(anti_aliasing=True)``) first removes what the coarser grid cannot hold.
    MONAI's ``Spacingd`` has no anti-aliasing of its own, hence this transform. It filters with
    ``scipy.ndimage.gaussian_filter``, about ten times faster on a CPU than MONAI's ``GaussianSmooth``
    on a 300³ volume (0.3 s against 3 s). Axes already at or coarser than the target are left as
    they are.

    Args:
        keys: keys of channel-first image ``MetaTensor`` s (their affine gives the voxel size).
        target_spacing: the spacing in mm the images are resampled to next, per axis.
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = [torch.Tensor]

    def __init__(
        self, keys: KeysCollection, target_spacing: Sequence[float], allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.target_spacing = np.asarray(check_target_spacing(target_spacing))

    def sigma_voxels(self, image: MetaTensor) -> np.ndarray:
        """The Gaussian's standard deviation along each array axis of ``image``, in voxels."""
        affine = np.asarray(image.affine, dtype=float)
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        return np.maximum(0.0, (self.target_spacing / spacing - 1.0) / 2.0)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            sigma = self.sigma_voxels(d[key])
            if np.any(sigma > 0.0):
                channels = np.asarray(d[key].detach().cpu(), dtype=np.float32)
                blurred = np.stack([ndimage.gaussian_filter(channel, sigma, truncate=3.0) for channel in channels])
                d[key] = convert_to_dst_type(blurred, d[key])[0]
        return d


class SegmentorInput:
    """The segmentor's input pipeline for one volume outside the configs, and its inverse.

    Calling it applies :func:`spatial_transforms` and :func:`normalize_intensity`; :meth:`restore`
    brings the network's class scores back to the original grid, as the configs' ``Invertd`` does.

    Args:
        target_spacing: as in :func:`spatial_transforms` (the configs' ``target_spacing``).
        size_divisor: as in :func:`spatial_transforms`.
    """

    def __init__(self, target_spacing: float | Sequence[float], size_divisor: int = SIZE_DIVISOR) -> None:
        self.spatial = Compose(spatial_transforms(target_spacing, size_divisor=size_divisor))

    def __call__(self, image: MetaTensor) -> MetaTensor:
        """Args:
            image: shape (C, x, y, z) with its affine, e.g. from :func:`image_to_tensor`.

        Returns:
            the network input (without batch dimension), carrying the operations to invert.
        """
        resampled = self.spatial({_IMAGE_KEY: image})[_IMAGE_KEY]
        return normalize_intensity(resampled)

    def restore(self, prediction: torch.Tensor, network_input: MetaTensor) -> torch.Tensor:
        """Crop the padding and resample class scores back to the original grid.

        Args:
            prediction: class scores (K, *S) for ``network_input`` (no batch dimension); resampled
                trilinearly, so pass probabilities or logits and take the argmax afterwards. Any
                subset of the channels may be passed (the segmenter restores the head's only).
            network_input: what :meth:`__call__` returned for this volume.

        Returns:
            the scores on the original grid, shape (K, x, y, z), a plain tensor.
        """
        if isinstance(prediction, MetaTensor):  # the network's output carries the input's meta: drop it
            prediction = prediction.as_tensor()
        scores = MetaTensor(
            prediction, affine=network_input.affine, applied_operations=list(network_input.applied_operations)
        )
        restored = self.spatial.inverse({_IMAGE_KEY: scores})[_IMAGE_KEY]
        return restored.as_tensor() if isinstance(restored, MetaTensor) else restored


def image_to_tensor(image: sitk.Image) -> MetaTensor:
    """A 3D ``SimpleITK`` image as the channel-first ``MetaTensor`` that MONAI's ITK loader gives.

    Args:
        image: a 3D scalar image.

    Returns:
        float32 tensor of shape (1, x, y, z) (``sitk.GetArrayFromImage`` transposed) whose affine
        maps voxel indices to RAS millimetres, as ``LoadImaged(reader="ITKReader")`` builds it.
    """
    array = np.transpose(sitk.GetArrayFromImage(image)).astype(np.float32)
    dims = image.GetDimension()
    affine = np.eye(dims + 1)
    affine[:dims, :dims] = np.reshape(image.GetDirection(), (dims, dims)) @ np.diag(image.GetSpacing())
    affine[:dims, dims] = image.GetOrigin()
    ras = orientation_ras_lps(affine)
    return MetaTensor(torch.from_numpy(array[None]), affine=torch.as_tensor(ras, dtype=torch.float64))


def tensor_to_label(labels: np.ndarray | torch.Tensor, reference: sitk.Image) -> sitk.Image:
    """Put a label volume in (x, y, z) order (optionally with one channel) on ``reference``'s grid.

    Args:
        labels: class indices, shape (x, y, z) or (1, x, y, z), on the grid of ``reference``.
        reference: the image the labels were predicted from.

    Returns:
        a uint8 label image with ``reference``'s size, spacing, origin and direction.
    """
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim == reference.GetDimension() + 1:
        array = array[0]
    return label_like(np.transpose(array).astype(np.uint8), reference)


class RandShadowErasingd(RandomizableTransform, MapTransform):
    """Random Erasing (Zhong et al., AAAI 2020) of a box around the fetal head, set to 0 (Sec. 2.1).

    The paper erases "a sub-region with 0 at a random position around the whole fetal head to mimic
    the ubiquitous acoustic shadow". MONAI's ``RandCoarseDropoutd`` places its holes uniformly over
    the whole volume, mostly in the background far from the head, hence this transform: the box is
    centred on a random voxel of the head's boundary (label voxels with a background neighbour) and
    each side is a random fraction of the head's bounding-box extent along that axis. Only the image
    keys are erased; the label keeps the whole head, so the network learns to complete shadowed
    parts.

    Args:
        keys: image keys to erase.
        label_key: key of the label (channel-first, foreground > 0) that locates the head.
        prob: probability of erasing a box.
        size_fraction: (min, max) side of the box as a fraction of the head's extent, per axis.
        fill_value: value written into the box (0: black, like a shadow after intensity scaling).
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str = "label",
        prob: float = 0.5,
        size_fraction: tuple[float, float] = (0.2, 0.5),
        fill_value: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if not 0.0 < size_fraction[0] <= size_fraction[1] <= 1.0:
            raise ValueError(f"size_fraction must satisfy 0 < min <= max <= 1, got {size_fraction}.")
        self.label_key = label_key
        self.size_fraction = size_fraction
        self.fill_value = fill_value
        self._box: tuple[slice, ...] | None = None

    def randomize(self, label: np.ndarray) -> None:
        """Decide whether to erase and, if so, draw the box from the head mask ``label`` (spatial dims only)."""
        super().randomize(None)
        self._box = None
        if not self._do_transform or not label.any():
            return
        boundary = np.argwhere(label & ~ndimage.binary_erosion(label))
        center = boundary[self.R.randint(len(boundary))]
        occupied = np.argwhere(label)
        extent = occupied.max(axis=0) - occupied.min(axis=0) + 1
        sides = np.maximum(1, np.round(self.R.uniform(*self.size_fraction, size=label.ndim) * extent)).astype(int)
        starts = np.maximum(center - sides // 2, 0)
        self._box = tuple(slice(int(s), int(s + n)) for s, n in zip(starts, sides, strict=True))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        label = d[self.label_key]
        mask = np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label)[0] > 0
        self.randomize(mask)
        if self._box is None:
            return d
        for key in self.key_iterator(d):
            erased = d[key].clone() if isinstance(d[key], torch.Tensor) else np.array(d[key], copy=True)
            erased[(slice(None), *self._box)] = self.fill_value
            d[key] = erased
        return d
