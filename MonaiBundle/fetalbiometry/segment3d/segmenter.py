"""Segment the whole fetal head in a 3D ultrasound volume with the bundle's network.

:class:`Segmenter` is what ``fetalbiometry segment``, the study runner and the Slicer module
call. The network and the spacing it works at come from the bundle's ``configs/inference.json``
(one source of truth with ``python -m monai.bundle run``); the shipped weights are checked against
the SHA-256 in ``configs/metadata.json`` and loaded with ``weights_only=True``.

The volume goes through the bundle's own preprocessing
(:class:`~fetalbiometry.segment3d.transforms.SegmentorInput`), so the network sees what it was
trained on whatever the scanner exported: it is reoriented to RAS and resampled to the bundle's
``target_spacing`` in mm on an axis-aligned grid, its intensities are normalised and it is padded
for the poolings. The head's probability is then resampled back onto exactly the input's grid
(spacing, origin and direction, oblique included) before it is thresholded, which for two classes
is the arg-max (the paper resamples its result to full resolution for evaluation). With
``keep_largest_component`` (the default) only the largest connected region of the label is kept:
the whole fetal head is one connected object, so every other region is a false positive. This step
is ours, not the paper's."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk
import torch
import torch.nn as nn
from monai.bundle import ConfigParser
from monai.inferers import Inferer
from monai.transforms import KeepLargestConnectedComponent

from fetalbiometry import BUNDLE_ROOT
from fetalbiometry.errors import require_bool
from fetalbiometry.segment3d.inputs import check_segmentable
from fetalbiometry.segment3d.transforms import SegmentorInput, check_target_spacing, image_to_tensor, tensor_to_label
from fetalbiometry.weights import (
    cpu_autocast,
    cpu_has_bfloat16_units,
    expected_checksum,
    load_weights,
    recorded_checksum,
    resolve_device,
    runs_in_cpu_bfloat16,
)

logger = logging.getLogger(__name__)

SHIPPED_MODEL = "models/model.pt"
HEAD_CLASS = 1
"""Class index of the whole fetal head in the network's output (0 is the background)."""


@dataclass(frozen=True)
class BundleModel:
    """What the bundle's inference config says about the network that ``model.pt`` belongs to."""

    network: nn.Module
    target_spacing: tuple[float, float, float]
    inferer: Inferer
    keep_largest_component: bool


def load_bundle_model(bundle_root: Path = BUNDLE_ROOT) -> BundleModel:
    """Instantiate the network and its inference settings from ``configs/inference.json``."""
    parser = ConfigParser()
    parser.read_config(bundle_root / "configs" / "inference.json")
    parser["bundle_root"] = str(bundle_root)
    return BundleModel(
        network=parser.get_parsed_content("network_def"),
        target_spacing=check_target_spacing(parser.get_parsed_content("target_spacing")),
        inferer=parser.get_parsed_content("inferer"),
        keep_largest_component=require_bool(
            "keep_largest_component", parser.get_parsed_content("keep_largest_component")
        ),
    )


class Segmenter:
    """Whole-fetal-head segmentation of one volume at a time.

    On a CPU with bfloat16 units (:func:`~fetalbiometry.weights.cpu_has_bfloat16_units`) the
    network runs under ``torch.autocast`` in bfloat16: 2 times faster on a 96³ grid on 2 cores,
    the same head volumes to within 0.21 % on the 16 validation phantoms
    (docs/experiments/2026-12-04-3d-physical-scale.md). The probabilities are computed in float32
    either way.

    Args:
        model: the network and its inference settings (see :func:`load_bundle_model`).
        device: where the network runs; it falls back to the CPU if CUDA runs out of memory.
        bfloat16: run the network in bfloat16 on the CPU; None: where the CPU has bfloat16 units.
    """

    def __init__(self, model: BundleModel, device: torch.device, bfloat16: bool | None = None) -> None:
        self.model = model
        self.device = device
        self.network = model.network.to(device).eval()
        self.bfloat16 = cpu_has_bfloat16_units() if bfloat16 is None else bfloat16

    @classmethod
    def from_bundle(
        cls, model_path: str | Path | None = None, device: str = "auto", bundle_root: Path = BUNDLE_ROOT
    ) -> Segmenter:
        """Load the shipped model (checksum-verified) or ``model_path`` for the bundle's network."""
        model = load_bundle_model(bundle_root)
        if model_path is None:
            load_weights(model.network, bundle_root / SHIPPED_MODEL, expected_checksum(bundle_root, SHIPPED_MODEL))
        else:
            load_weights(model.network, Path(model_path), recorded_checksum(bundle_root, model_path))
        return cls(model, resolve_device(device))

    @property
    def precision(self) -> str:
        """``"bfloat16"`` or ``"float32"``: what the network runs in on the current device."""
        return "bfloat16" if runs_in_cpu_bfloat16(self.device, self.bfloat16) else "float32"

    @torch.no_grad()
    def _class_scores(self, network_input: torch.Tensor) -> torch.Tensor:
        batch = torch.as_tensor(network_input)[None].to(self.device)
        with cpu_autocast(self.device, self.bfloat16):
            logits = self.model.inferer(batch, self.network)[0]
        return torch.softmax(logits.float(), dim=0).cpu()

    def segment(self, image: sitk.Image) -> sitk.Image:
        """Label (uint8, 1 = whole fetal head) on exactly ``image``'s grid."""
        check_segmentable(image)
        pipeline = SegmentorInput(self.model.target_spacing)  # one object: MONAI inverts its own ops
        network_input = pipeline(image_to_tensor(image))
        try:
            scores = self._class_scores(network_input)
        except torch.cuda.OutOfMemoryError:
            logger.warning("GPU out of memory: falling back to the CPU")
            torch.cuda.empty_cache()
            self.device = torch.device("cpu")
            self.network.to(self.device)
            scores = self._class_scores(network_input)
        # only the head's probability goes back to the input grid: with two classes, p > 0.5 is the arg-max
        head_probability = pipeline.restore(scores[HEAD_CLASS : HEAD_CLASS + 1], network_input)[0]
        label = (head_probability > 0.5).to(torch.uint8)
        if self.model.keep_largest_component:
            label = KeepLargestConnectedComponent(applied_labels=[1])(label[None])[0]
        return tensor_to_label(label, image)
