"""Losses for training the 3D whole-fetal-head segmenter.

Yang X, Wang X, Wang Y, et al. "Hybrid attention for automatic segmentation of whole fetal head
in prenatal ultrasound volumes", Computer Methods and Programs in Biomedicine, 2020
(``shared/papers/3d-whole-head-hybrid-attention-autocontext.txt``), Sec. 2.3, Eq. 2.
"""


from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DeepSupervisionLoss
from torch.nn.modules.loss import _Loss

__all__ = ["DeepSupervisedCrossEntropy", "LabelCrossEntropyLoss"]


class LabelCrossEntropyLoss(_Loss):
    """Cross entropy between class logits and a label map of class indices.

    ``torch.nn.CrossEntropyLoss`` wants (B, *S) integer targets; MONAI pipelines carry labels as
    one-channel (B, 1, *S) tensors, often float. This accepts both.

    Args:
        class_weights: optional weight per class, as in ``torch.nn.functional.cross_entropy``.
    """

    def __init__(self, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("class_weights", class_weights)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Args:
            logits: shape (B, K, *S).
            labels: class indices, shape (B, 1, *S) or (B, *S).

        Returns:
            the mean cross entropy (a scalar).
        """
        if labels.ndim == logits.ndim:
            labels = labels.squeeze(1)
        return F.cross_entropy(logits, labels.long(), weight=self.class_weights)


class DeepSupervisedCrossEntropy(DeepSupervisionLoss):
    """The deeply supervised loss of Eq. 2 without its weight penalty.

    ``L = CE(main, Y) + Σ_m CE(aux_m, S_m(Y))``: cross entropy on the main output plus, with equal
    weights, on each side-branch output against the ground truth ``S_m(Y)`` downscaled to its
    size (1/2, 1/4) by nearest-neighbour interpolation. This is
    :class:`monai.losses.DeepSupervisionLoss` with ``weight_mode="same"`` around
    :class:`LabelCrossEntropyLoss`; a single tensor gives the plain cross entropy.

    The L2 penalty ``λ‖W‖²`` of Eq. 2 is not part of the loss: pass it as the optimizer's
    ``weight_decay``, which adds ``weight_decay · W`` to the gradient, i.e. ``weight_decay = 2λ``.

    Args:
        class_weights: optional weight per class for the cross entropy.
    """

    def __init__(self, class_weights: torch.Tensor | None = None) -> None:
        super().__init__(LabelCrossEntropyLoss(class_weights), weight_mode="same")

    def forward(self, input: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Args:
            input: logits (B, K, *S), or the list ``[main, aux_1/2, aux_1/4, ...]``.
            target: class indices, shape (B, 1, *S), any numeric type.

        Returns:
            the summed cross entropy (a scalar).
        """
        # MONAI downsizes the target with F.interpolate, which needs a floating-point tensor
        return super().forward(input, target.float())
