"""Transforms of the 2D biometry networks.

For the MTLN (Sobhaninia et al. 2019, ``shared/papers/mtln-multitask-linknet-hc.txt``, Eq. 5),
:class:`BoundaryWeightMapd` adds the pixel weight map of its boundary-weighted loss.
:class:`EllipseSoftLabeld` replaces a 0/1 head or abdomen label by a logistic function of the
signed distance to the reference ellipse (issue 24's sub-pixel training targets).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type, ensure_tuple
from scipy import ndimage
from scipy.special import expit

from fetalbiometry.biometry import PLANE_CLASSES
from fetalbiometry.data.anatomy import ellipse_signed_distance
from fetalbiometry.networks.mtln import decode_ellipse

__all__ = ["BoundaryWeightMapd", "EllipseSoftLabeld", "boundary_weight_map"]


def boundary_weight_map(mask: np.ndarray, w0: float = 30.0, sigma: float = 10.0) -> np.ndarray:
    """Pixel weights that magnify a loss near the ground-truth boundary (MTLN, Eq. 5).

    ``w(x) = 1 + w0 · exp(−d(x)² / (2σ²))``, ``d(x)`` the Euclidean distance (pixels) from ``x`` to
    the nearest boundary pixel of the mask. The paper prints the exponent as ``d(x) / (2σ²)``,
    without square or minus sign, which grows without bound away from the boundary; we use the
    form of the weight map it cites (Ronneberger et al., U-Net, 2015), a Gaussian of the distance.
    Boundary pixels are the foreground pixels with a background 4-neighbour; the image edge is not
    a boundary (a head cut by the border has no contour there). A mask without boundary (empty or
    full) gives weights 1.

    Args:
        mask: 2D (or nD) array; pixels above 0.5 are the structure (class indices, or the area
            fractions of a supersampled label).
        w0: ω0, the extra weight on the boundary (30 in the paper's Table I).
        sigma: σ of the Gaussian, in pixels (10 in Table I).

    Returns:
        float32 weights of ``mask``'s shape: ``1 + w0`` on the boundary, tending to 1 far from it.
    """
    foreground = np.asarray(mask) > 0.5
    boundary = foreground & ~ndimage.binary_erosion(foreground, border_value=1)
    if not boundary.any():
        return np.ones(foreground.shape, dtype=np.float32)
    distance = ndimage.distance_transform_edt(~boundary)
    return (1.0 + w0 * np.exp(-(distance**2) / (2.0 * sigma**2))).astype(np.float32)


class BoundaryWeightMapd(MapTransform):
    """Add the boundary weight map of a channel-first label (:func:`boundary_weight_map`) to the data.

    Args:
        keys: label key(s); each gives a weight map of the same shape (one map per channel).
        weight_keys: output key per label key (default ``"weight"`` for a single label).
        w0: ω0 of Eq. 5.
        sigma: σ of Eq. 5, in pixels.
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(
        self,
        keys: KeysCollection = "label",
        weight_keys: KeysCollection = "weight",
        w0: float = 30.0,
        sigma: float = 10.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.weight_keys = ensure_tuple(weight_keys)
        if len(self.weight_keys) != len(self.keys):
            raise ValueError(f"need one weight key per label key, got {self.weight_keys} for {self.keys}.")
        self.w0 = w0
        self.sigma = sigma

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, weight_key in self.key_iterator(d, self.weight_keys):
            label = d[key]
            array = np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label)
            weights = np.stack([boundary_weight_map(channel, self.w0, self.sigma) for channel in array])
            d[weight_key] = convert_to_dst_type(weights, label, dtype=np.float32)[0]
        return d


class EllipseSoftLabeld(MapTransform):
    """Replace a sample's 0/1 label by ``σ(d / softness)``, ``d`` the signed distance to its reference ellipse.

    ``d`` (pixels, positive inside) comes from the sample's Ellipse Tuner target (``ellipse_key``,
    :func:`~fetalbiometry.networks.mtln.decode_ellipse`) through
    :func:`~fetalbiometry.data.anatomy.ellipse_signed_distance`, so the target keeps where the outline
    runs inside a pixel, and its 0.5 level is the outline itself. A label so made asks the network
    for a probability that rises over a few pixels across the boundary, which the predictor's
    bilinear warp onto the frame then places between pixels. Femur samples (``plane_key``), whose
    ellipse is only inscribed in the bar, keep their label.

    Args:
        keys: the label key(s), channel-first with one channel, as made by
            :func:`~fetalbiometry.data.hc18_dataset.make_plane_sample`.
        softness: the logistic's scale, in pixels of the label: the target is 0.27 / 0.73 one
            ``softness`` outside / inside the outline.
        ellipse_key: key of the encoded reference ellipse.
        plane_key: key of the plane class index; a missing key means an ellipse plane.
        allow_missing_keys: don't raise if a key is missing.

    Raises:
        ValueError: ``softness`` is not positive.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(
        self,
        keys: KeysCollection = "label",
        softness: float = 0.5,
        ellipse_key: str = "ellipse",
        plane_key: str = "plane",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not softness > 0:
            raise ValueError(f"softness must be positive, got {softness!r}.")
        self.softness = float(softness)
        self.ellipse_key = ellipse_key
        self.plane_key = plane_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.plane_key in d and PLANE_CLASSES[int(d[self.plane_key])] == "femur":
            return d
        for key in self.key_iterator(d):
            label = d[key]
            shape = tuple(label.shape[-2:])
            inward_distance = -ellipse_signed_distance(decode_ellipse(d[self.ellipse_key], shape), shape)
            soft = expit(inward_distance / self.softness)[None]
            d[key] = convert_to_dst_type(soft, label, dtype=np.float32)[0]
        return d
