"""2D standard-plane networks at inference: one ultrasound frame in, its measurement out.

Every 2D network of the bundle is used the same way (:class:`PlanePredictor`):

1. the frame (8-bit intensities / 255) is letterboxed to the network's ``spatial_size``
   (:func:`fetalbiometry.data.hc18_dataset.letterbox`: one scale for both axes, zero padding at the
   bottom and right), exactly as in training, and z-scored for the regression CNNs (MONAI
   ``NormalizeIntensity``, as in their training);
2. the network runs; its output is read by :func:`network_outputs`;
3. the foreground probability is mapped back onto the frame's own pixel grid through the inverse
   of the letterbox matrix (bilinear), so the 0.5 level, the fitted ellipse and every length are in
   frame pixels whatever the network's resolution;
   with ``head_crop`` (:class:`~fetalbiometry.data.hc18_dataset.HeadCrop`) a small head (or, with
   its ``look_size``, nearly every head) is looked at again: steps 1–3 on a window of the frame around the
   first look's ellipse;
4. :func:`fetalbiometry.biometry.measure_plane` fits the ellipse (head, abdomen) or the rectangle
   (femur) and refuses what cannot be measured (``NoMeasurementError`` with the reason).

The plane is the multi-task U-Net's classifier output (Qazi et al., section 2.1) when the network
has one, else the predictor's ``plane`` (HC18 networks see only heads). The regression CNNs
(Zhang et al.) give the HC directly, without a mask or an ellipse.

A predictor's network may be a :class:`PlaneEnsemble`: several trained copies of one network
whose class probabilities (and regressed values) are averaged. A weights file holds an ensemble
when its keys are those of :class:`PlaneEnsemble` (``members.0.…``, ``members.1.…``, written by
:mod:`fetalbiometry.planes2d.ensemble`); :func:`load_plane_network` then builds one copy of the
config's network per member.

The networks and their settings come from the bundle's ``configs/biometry`` files
(:func:`load_plane_predictor`); the shipped HC model's weights are checked against the SHA-256 in
``configs/metadata.json``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn as nn
from monai.bundle import ConfigParser
from monai.transforms import MeanEnsemble, NormalizeIntensity

from fetalbiometry import BUNDLE_ROOT
from fetalbiometry.biometry.planes import PLANE_CLASSES, PlaneMeasurement, measure_plane
from fetalbiometry.biometry.ellipse import fit_ellipse_to_mask
from fetalbiometry.data.hc18_dataset import HeadCrop, affine_ellipse, letterbox, require_head_crop
from fetalbiometry.errors import EmptyMaskError, InputError, NoMeasurementError, require_bool
from fetalbiometry.weights import (
    cpu_autocast,
    cpu_has_bfloat16_units,
    expected_checksum,
    fit_weights,
    read_weights,
    recorded_checksum,
    resolve_device,
)

__all__ = [
    "BIOMETRY_CONFIG_DIR",
    "PROBABILITY_OUTPUTS",
    "SHIPPED_PLANE_MODEL",
    "SHIPPED_PLANE_NETWORK",
    "PlaneEnsemble",
    "PlanePrediction",
    "PlanePredictor",
    "combine_members",
    "ensemble_size",
    "load_plane_network",
    "load_plane_predictor",
    "network_outputs",
]

BIOMETRY_CONFIG_DIR = Path("configs") / "biometry"
"""Where the 2D configs live in the bundle: ``train.json``, ``evaluate.json``, ``inference.json``
and one file per network (``mtln.json``, ``unet.json``, ``multitask_unet.json``, ``regression.json``)."""

SHIPPED_PLANE_MODEL = "models/hc_model.pt"
"""The shipped HC model's weights, relative to the bundle root."""

SHIPPED_PLANE_NETWORK = "mtln.json"
"""The network config the shipped HC weights belong to."""


def network_outputs(output: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any 2D network's output as a dict.

    MTLN and the multi-task U-Net already return dicts (``"segmentation"`` logits, ``"ellipse"``
    or ``"plane"``); a plain U-Net returns logits (B, K, H, W) → ``{"segmentation": ...}``; a
    regression CNN returns the normalised HC (B, 1) → ``{"hc": ...}``.
    """
    if isinstance(output, dict):
        return output
    if output.ndim == 4:
        return {"segmentation": output}
    return {"hc": output}


PROBABILITY_OUTPUTS = ("segmentation", "plane")
"""Network outputs that are class logits: an ensemble averages their softmax, not the logits."""

_MEMBER_KEY = re.compile(r"members\.(\d+)\.")


class PlaneEnsemble(nn.Module):
    """The mean of several trained copies of one 2D network.

    - Class logits (``"segmentation"``, ``"plane"``): the members' softmax probabilities are
      averaged (MONAI ``MeanEnsemble``) and returned as their logarithm, so that a softmax, as
      :class:`PlanePredictor` applies, gives back the mean probability.
    - Every other output (the Ellipse Tuner's parameters, a regressed HC) is averaged as it is.

    Args:
        members: the networks, all of one architecture, in eval mode at inference.

    Raises:
        ValueError: fewer than two members.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.mean = MeanEnsemble()

    @property
    def hc_max(self) -> float:
        """The regression members' shared HC normaliser (1.0 for segmentation networks).

        Raises:
            InputError: members trained with different normalisers, whose outputs cannot be averaged.
        """
        values = {float(getattr(member, "hc_max", 1.0)) for member in self.members}
        if len(values) > 1:
            raise InputError(f"the ensemble's regressors have different hc_max values: {sorted(values)}")
        return values.pop()

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = [network_outputs(member(image)) for member in self.members]
        mean = {}
        for key in outputs[0]:
            if key in PROBABILITY_OUTPUTS:
                probability = self.mean([torch.softmax(output[key], dim=1) for output in outputs])
                mean[key] = torch.log(probability.clamp_min(torch.finfo(probability.dtype).tiny))
            else:
                mean[key] = self.mean([output[key] for output in outputs])
        return mean


def ensemble_size(state: Mapping[str, torch.Tensor]) -> int:
    """The number of members of a :class:`PlaneEnsemble` state dict; 0 for a single network's."""
    indices = {match.group(1) for match in map(_MEMBER_KEY.match, state) if match}
    return len(indices) if indices and all(map(_MEMBER_KEY.match, state)) else 0


def combine_members(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The :class:`PlaneEnsemble` state dict of the members' ``states`` (the inverse of :func:`ensemble_size`).

    Raises:
        InputError: fewer than two members, a member that is itself an ensemble, or members whose
            keys or tensor shapes differ (not one architecture).
    """
    if len(states) < 2:
        raise InputError(f"an ensemble needs at least two members, got {len(states)}")
    first_shapes = {key: tuple(value.shape) for key, value in states[0].items()}
    combined = {}
    for index, state in enumerate(states):
        if ensemble_size(state):
            raise InputError(f"member {index + 1} is already an ensemble; give its members instead")
        if {key: tuple(value.shape) for key, value in state.items()} != first_shapes:
            raise InputError(f"member {index + 1} is not the architecture of member 1 (its keys or shapes differ)")
        combined.update({f"members.{index}.{key}": value for key, value in state.items()})
    return combined


def load_plane_network(network: nn.Module, path: str | Path, checksum: str | None = None) -> nn.Module:
    """``network`` with the weights saved at ``path``, or an ensemble of its copies if ``path`` holds one.

    Args:
        network: the config's network (its weights are replaced).
        path: a state dict saved by the biometry training, or an ensemble's
            (:mod:`fetalbiometry.planes2d.ensemble`), loaded with ``weights_only``.
        checksum: the SHA-256 the file must have, or None.

    Returns:
        ``network`` with the weights, or a :class:`PlaneEnsemble` of copies of it.

    Raises:
        InputError: missing, corrupt or mismatched file, or weights that do not fit the network.
    """
    path = Path(path)
    state = read_weights(path, checksum)
    members = ensemble_size(state)
    if members > 1:  # a lone member does not fit the ensemble nor the network: fit_weights refuses it
        network = PlaneEnsemble([copy.deepcopy(network) for _ in range(members)])
    fit_weights(network, state, path)
    return network


@dataclass(frozen=True)
class PlanePrediction:
    """What a 2D network says about one frame.

    Args:
        plane: ``"head"``, ``"abdomen"`` or ``"femur"``.
        probability: foreground probability on the frame's pixel grid (rows, columns), or None for
            a regression CNN.
        hc_px: the regression CNN's HC in frame pixels, else None.
        window: (top, left, rows, columns) of the second look's window (``head_crop``), or None
            when the frame had one look.
    """

    plane: str
    probability: np.ndarray | None = None
    hc_px: float | None = None
    window: tuple[int, int, int, int] | None = None

    @property
    def mask(self) -> np.ndarray:
        """The structure mask: probability ≥ 0.5.

        Raises:
            InputError: the network gives no segmentation (a regression CNN).
        """
        if self.probability is None:
            raise InputError("this network regresses the HC and gives no segmentation mask")
        return self.probability >= 0.5


def _foreground_on_frame(segmentation: torch.Tensor, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The foreground probability of a one-image batch of logits, warped from the letterbox onto the frame."""
    probability = torch.softmax(segmentation, dim=1)[0, 1].cpu().numpy().astype(np.float32)
    rows, columns = shape
    return cv2.warpAffine(
        probability, matrix, (columns, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT
    )


class PlanePredictor:
    """Run a 2D biometry network on frames of any size.

    Args:
        network: a 2D network of :mod:`fetalbiometry.networks` (see :func:`network_outputs`).
        spatial_size: (rows, columns) the network was trained at.
        device: where it runs.
        zscore: z-score the letterboxed frame, zero padding included, with MONAI's
            ``NormalizeIntensity`` (the regression CNNs' input, as their configs' sample
            transform ``NormalizeIntensityd(keys="image")``); otherwise intensities are / 255 as
            in training.
        plane: the plane class when the network has no classifier.
        flip_averaging: average the foreground probability of the frame and of its left-right
            mirror (test-time augmentation; twice the run time). The mirrored frame is letterboxed
            like any frame, as the flipped training samples were, rather than the letterbox
            mirrored, which would put the padding on the side the network never saw it.
        head_crop: look again at the window around the head (or abdomen) ellipse of the first look
            (:class:`~fetalbiometry.data.hc18_dataset.HeadCrop`); the probability is then the
            second look's inside the window and 0 outside. None: one look. A network trained
            without the windows (``head_crop`` in its training config) has not seen such input.
        bfloat16: run the network in bfloat16 on the CPU (``torch.autocast``); None: where the
            CPU has bfloat16 units (:func:`~fetalbiometry.weights.cpu_has_bfloat16_units`). The
            probabilities are computed in float32 either way.

    Raises:
        InputError: an unknown plane, ``zscore``/``flip_averaging`` that are not booleans (a
            config override written ``false`` rather than ``False`` arrives as a string, which
            Python would take as true), or a ``head_crop`` that is not a ``HeadCrop`` or None.
    """

    def __init__(
        self,
        network: nn.Module,
        spatial_size: Sequence[int],
        device: torch.device | str = "cpu",
        zscore: bool = False,
        plane: str = "head",
        flip_averaging: bool = False,
        head_crop: HeadCrop | None = None,
        bfloat16: bool | None = None,
    ) -> None:
        if plane not in PLANE_CLASSES:
            raise InputError(f"plane must be one of {', '.join(PLANE_CLASSES)}; got {plane!r}")
        for name, value in (("zscore", zscore), ("flip_averaging", flip_averaging)):
            require_bool(name, value)
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.spatial_size = tuple(int(size) for size in spatial_size)
        self.zscore = zscore
        self.plane = plane
        self.flip_averaging = flip_averaging
        self.head_crop = require_head_crop(head_crop)
        self.bfloat16 = cpu_has_bfloat16_units() if bfloat16 is None else bfloat16

    def _outputs(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network's named outputs (:func:`network_outputs`) for a batch, in float32."""
        with cpu_autocast(self.device, self.bfloat16):
            outputs = network_outputs(self.network(image))
        return {name: value.float() for name, value in outputs.items()}

    def _network_input(
        self, frame: np.ndarray, input_size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, np.ndarray, float]:
        """The frame letterboxed to ``input_size`` (default ``spatial_size``) as a batch of one, its matrix and scale."""
        frame = np.asarray(frame)
        if frame.ndim != 2:
            raise InputError(f"expected a 2D frame (rows, columns), got shape {frame.shape}")
        if not np.all(np.isfinite(frame)):
            raise InputError("the frame contains NaN or infinite values")
        scaled, matrix, scale = letterbox(frame.astype(np.float32) / 255.0, input_size or self.spatial_size)
        image = scaled[None]
        if self.zscore:  # the transform the regression configs train with (on the same numpy array)
            image = NormalizeIntensity()(image)
        return torch.from_numpy(np.asarray(image, dtype=np.float32))[None].to(self.device), matrix, scale

    @torch.no_grad()
    def predict(self, frame: np.ndarray) -> PlanePrediction:
        """Predict one frame.

        Args:
            frame: 2D array (rows, columns) of 8-bit intensities.

        Returns:
            the :class:`PlanePrediction`, on ``frame``'s grid.

        Raises:
            InputError: the frame is not 2D or not finite.
        """
        image, matrix, scale = self._network_input(frame)
        outputs = self._outputs(image)
        plane = self.plane
        if "plane" in outputs:
            plane = PLANE_CLASSES[int(outputs["plane"].argmax(dim=1)[0])]
        if "segmentation" not in outputs:
            hc_sample_px = float(outputs["hc"][0, 0]) * float(getattr(self.network, "hc_max", 1.0))
            return PlanePrediction(plane, hc_px=hc_sample_px / scale)
        probability = self._foreground(frame, outputs["segmentation"], matrix)
        if self.head_crop is None or plane == "femur":
            return PlanePrediction(plane, probability=probability)
        return self._look_again(PlanePrediction(plane, probability), frame, outputs["segmentation"], matrix)

    def _foreground(
        self,
        frame: np.ndarray,
        segmentation: torch.Tensor,
        matrix: np.ndarray,
        input_size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """The foreground probability on ``frame``'s grid, averaged with the mirror's if ``flip_averaging``.

        ``input_size`` is the letterbox's that gave ``segmentation`` (default ``spatial_size``).
        """
        shape = np.asarray(frame).shape
        probability = _foreground_on_frame(segmentation, matrix, shape)
        if self.flip_averaging:
            mirrored, mirrored_matrix, _ = self._network_input(np.fliplr(frame), input_size)
            segmentation = self._segmentation(mirrored)
            probability = 0.5 * (probability + np.fliplr(_foreground_on_frame(segmentation, mirrored_matrix, shape)))
        return probability

    def _segmentation(self, image: torch.Tensor) -> torch.Tensor:
        """The segmentation logits of a one-image batch, tile by tile for a tiled finer look.

        An image larger than ``spatial_size`` with ``head_crop.tiled`` is cut into the tiles of
        :meth:`~fetalbiometry.data.hc18_dataset.HeadCrop.tiles`, the crops the network was trained
        on, run as one batch; their foreground probabilities are averaged where they overlap and
        returned as log-probabilities, which a softmax turns back into that average.
        """
        look_size = tuple(image.shape[2:])
        if self.head_crop is None or not self.head_crop.tiled or look_size == self.spatial_size:
            return self._outputs(image)["segmentation"]
        tile_rows, tile_columns = self.spatial_size
        tiles = self.head_crop.tiles(look_size, self.spatial_size)
        batch = torch.cat([image[..., row : row + tile_rows, column : column + tile_columns] for row, column in tiles])
        tile_probabilities = torch.softmax(self._outputs(batch)["segmentation"], dim=1)[:, 1]
        total, count = torch.zeros(look_size), torch.zeros(look_size)
        for (row, column), probability in zip(tiles, tile_probabilities.cpu()):
            total[row : row + tile_rows, column : column + tile_columns] += probability
            count[row : row + tile_rows, column : column + tile_columns] += 1.0
        foreground = (total / count).clamp(1e-6, 1.0 - 1e-6)
        return torch.log(torch.stack((1.0 - foreground, foreground)))[None].to(image.device)

    def _look_again(
        self, first: PlanePrediction, frame: np.ndarray, segmentation: torch.Tensor, matrix: np.ndarray
    ) -> PlanePrediction:
        """The second look of ``head_crop`` at the window around ``first``'s head, or ``first`` if there is none.

        The window is placed by the ellipse of the first look's mask on the network's grid (a
        tenth of the frame's pixels at HC18 size, so a few ms less), mapped onto the frame, and
        letterboxed to ``head_crop``'s :meth:`~fetalbiometry.data.hc18_dataset.HeadCrop.look_input_size`.
        """
        grid_mask = torch.softmax(segmentation, dim=1)[0, 1].cpu().numpy() >= 0.5
        try:
            ellipse = affine_ellipse(fit_ellipse_to_mask(grid_mask), cv2.invertAffineTransform(matrix))
        except (EmptyMaskError, NoMeasurementError):  # nothing to look at again: measure_plane says why
            return first
        window = self.head_crop.window(ellipse, first.probability.shape, self.spatial_size)
        if window is None:
            return first
        top, left, rows, columns = window
        crop = np.asarray(frame)[top : top + rows, left : left + columns]
        input_size = self.head_crop.look_input_size(window, first.probability.shape, self.spatial_size)
        image, matrix, _ = self._network_input(crop, input_size)
        refined = np.zeros_like(first.probability)
        segmentation = self._segmentation(image)
        refined[top : top + rows, left : left + columns] = self._foreground(crop, segmentation, matrix, input_size)
        return PlanePrediction(first.plane, refined, window=window)

    def measure(self, frame: np.ndarray, pixel_size: float) -> tuple[PlanePrediction, PlaneMeasurement]:
        """Predict and measure one frame.

        Args:
            frame: 2D array of 8-bit intensities.
            pixel_size: side of a square pixel of ``frame``, mm.

        Returns:
            (the prediction, its :class:`~fetalbiometry.biometry.PlaneMeasurement`).

        Raises:
            InputError: bad frame or pixel size, or a regression CNN (no mask to measure).
            NoMeasurementError: nothing measurable; the message gives the reason.
        """
        prediction = self.predict(frame)
        return prediction, measure_plane(prediction.mask, prediction.plane, pixel_size)


def _read_biometry_config(bundle_root: Path, network_config: str) -> ConfigParser:
    parser = ConfigParser()
    config_dir = bundle_root / BIOMETRY_CONFIG_DIR
    network_file = Path(network_config)
    if not network_file.is_absolute() and not network_file.is_file():
        network_file = config_dir / network_file
    if not network_file.is_file():
        raise InputError(f"network config not found: {network_config}")
    parser.read_config([config_dir / "inference.json", network_file])
    parser["bundle_root"] = str(bundle_root)
    return parser


def load_plane_predictor(
    model_path: str | Path | None = None,
    network_config: str = SHIPPED_PLANE_NETWORK,
    device: str = "auto",
    flip_averaging: bool | None = None,
    bundle_root: Path = BUNDLE_ROOT,
    **overrides: Any,
) -> PlanePredictor:
    """A predictor for the shipped HC model, or for ``model_path`` trained with ``network_config``.

    Args:
        model_path: a state dict saved by the biometry training, or an ensemble of such
            (:func:`load_plane_network`); None for the shipped model (checksum-verified).
        network_config: the network's config file, a name in ``configs/biometry`` or a path.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        flip_averaging: override the config's ``flip_averaging``.
        bundle_root: the bundle.
        overrides: further config values (e.g. ``plane="abdomen"``).

    Returns:
        the :class:`PlanePredictor` with weights loaded.

    Raises:
        InputError: missing or corrupt model file, or weights that do not fit the network.
    """
    parser = _read_biometry_config(Path(bundle_root), network_config)
    for key, value in overrides.items():
        parser[key] = value
    network = parser.get_parsed_content("network_def")
    if model_path is None:
        shipped = Path(bundle_root) / SHIPPED_PLANE_MODEL
        network = load_plane_network(network, shipped, expected_checksum(bundle_root, SHIPPED_PLANE_MODEL))
    else:
        network = load_plane_network(network, model_path, recorded_checksum(bundle_root, model_path))
    return PlanePredictor(
        network,
        parser.get_parsed_content("spatial_size"),
        resolve_device(device),
        zscore=parser.get_parsed_content("zscore"),
        plane=parser.get_parsed_content("plane"),
        flip_averaging=parser.get_parsed_content("flip_averaging") if flip_averaging is None else flip_averaging,
        head_crop=parser.get_parsed_content("head_crop"),
    )
