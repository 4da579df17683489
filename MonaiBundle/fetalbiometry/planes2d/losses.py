"""Losses of the 2D biometry networks, one per paper.

- :class:`BoundaryWeightedDiceCELoss` and :class:`MTLNLoss`: Sobhaninia et al. 2019,
  ``shared/papers/mtln-multitask-linknet-hc.txt``, Eqs. 1-6;
- :class:`MultiTaskUNetLoss`: Qazi et al., ``multitask-unet-hc-ac-fl.txt``, Eqs. 1-3;
- :func:`regression_loss`: Zhang et al., ``regression-cnn-hc.txt``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch.nn.modules.loss import _Loss

__all__ = ["BoundaryWeightedDiceCELoss", "MTLNLoss", "MultiTaskUNetLoss", "regression_loss"]


def _class_indices(labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Labels (B, 1, *S) or (B, *S), any numeric type, as (B, *S) integer class indices."""
    if labels.ndim == logits.ndim:
        labels = labels.squeeze(1)
    return labels.long()


def _class_probabilities(labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Labels (B, 1, *S) or (B, *S) as target class probabilities (B, K, *S).

    With two classes a label is the foreground's share of the pixel (a 0/1 mask, or the area
    fractions of a supersampled label, :func:`fetalbiometry.data.hc18_dataset.structure_area_fractions`);
    with more it is a class index, one-hot encoded.
    """
    if logits.shape[1] != 2:
        return F.one_hot(_class_indices(labels, logits), logits.shape[1]).movedim(-1, 1).to(logits.dtype)
    if labels.ndim == logits.ndim:
        labels = labels.squeeze(1)
    foreground = labels.to(logits.dtype).clamp(0.0, 1.0)
    return torch.stack((1.0 - foreground, foreground), dim=1)


class BoundaryWeightedDiceCELoss(_Loss):
    """The MTLN segmentation loss ``L_seg = w * (E + Dice)`` (Sobhaninia et al., Eqs. 2-4).

    The pixel weights ``w`` (:class:`fetalbiometry.planes2d.transforms.BoundaryWeightMapd`, Eq. 5) enter
    both terms:

    - cross entropy, weighted per pixel and averaged over the pixels:
      ``E = mean_x w(x) · Σ_k −g_k(x) log p_k(x)``, where ``g(x)`` is one-hot, or for two classes
      the area fraction of a supersampled label (a target finer than the pixel);
    - a weighted soft Dice over the foreground classes, where each pixel counts ``w(x)`` times in
      the intersection and in both sizes:
      ``Dice = 1 − (2 Σ_x w p g + ε) / (Σ_x w p + Σ_x w g + ε)``, per image and class, averaged.
      With ``w ≡ 1`` it is the soft Dice of Eq. 4; boundary pixels, which decide the fitted
      ellipse, weigh up to ``1 + w0`` times more.

    Args:
        smooth: ε, keeps the Dice defined for empty masks.
    """

    def __init__(self, smooth: float = 1e-5) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Args:
            logits: class logits (B, K, *S), K >= 2 (background first).
            labels: class indices, or with two classes foreground fractions, (B, 1, *S) or (B, *S).
            weight: pixel weights (B, 1, *S) or (B, *S).

        Returns:
            ``E + Dice``, a scalar.
        """
        targets = _class_probabilities(labels, logits)
        if weight.ndim == logits.ndim:
            weight = weight.squeeze(1)
        cross_entropy = (weight * F.cross_entropy(logits, targets, reduction="none")).mean()
        probabilities = torch.softmax(logits, dim=1)[:, 1:]
        truth = targets[:, 1:]
        weight = weight.unsqueeze(1)
        spatial = tuple(range(2, logits.ndim))
        intersection = (weight * probabilities * truth).sum(spatial)
        sizes = (weight * probabilities).sum(spatial) + (weight * truth).sum(spatial)
        dice = 1.0 - (2.0 * intersection + self.smooth) / (sizes + self.smooth)
        return cross_entropy + dice.mean()


class MTLNLoss(_Loss):
    """The MTLN compound loss ``L_T = α1·L_seg + α2·L_ET`` (Sobhaninia et al., Eqs. 1 and 6).

    ``L_seg`` is :class:`BoundaryWeightedDiceCELoss`; ``L_ET`` is the mean squared error between
    the Ellipse Tuner's output and the normalised reference parameters
    (:func:`fetalbiometry.networks.mtln.encode_ellipse`). Defaults are the paper's Table I
    (α1 = 1, α2 = 2). Without ellipse parameters (the single-task ablation) it is ``α1·L_seg``.

    Args:
        segmentation_weight: α1.
        ellipse_weight: α2.
        smooth: ε of the weighted Dice.
    """

    def __init__(self, segmentation_weight: float = 1.0, ellipse_weight: float = 2.0, smooth: float = 1e-5) -> None:
        super().__init__()
        self.segmentation_weight = segmentation_weight
        self.ellipse_weight = ellipse_weight
        self.segmentation_loss = BoundaryWeightedDiceCELoss(smooth)

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        weight: torch.Tensor,
        ellipse: torch.Tensor | None = None,
        ellipse_target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args:
            logits: segmentation logits (B, K, H, W) (the MTLN's ``"segmentation"`` output).
            labels: class indices (B, 1, H, W).
            weight: boundary weight map (B, 1, H, W).
            ellipse: Ellipse Tuner output (B, 5), or None.
            ellipse_target: normalised reference parameters (B, 5); needed with ``ellipse``.

        Returns:
            the total loss, a scalar.

        Raises:
            ValueError: ``ellipse`` given without ``ellipse_target``.
        """
        loss = self.segmentation_weight * self.segmentation_loss(logits, labels, weight)
        if ellipse is None:
            return loss
        if ellipse_target is None:
            raise ValueError("MTLNLoss: ellipse predictions need an ellipse_target.")
        return loss + self.ellipse_weight * F.mse_loss(ellipse, ellipse_target.to(ellipse.dtype))


class MultiTaskUNetLoss(_Loss):
    """The joint loss ``L = λ·L_cls + (1 − λ)·L_seg`` of the multi-task U-Net (Qazi et al., Eq. 3).

    ``L_cls`` is the cross entropy of the plane class (Eq. 1); ``L_seg`` is the Dice loss of Eq. 2,
    ``1 − 2 Σ p q / (Σ p² + Σ q²)`` on the foreground (MONAI ``DiceLoss`` with ``squared_pred``).
    λ = 0.001 gave the best biometry in the paper's Table 1.

    Args:
        classification_weight: λ, in [0, 1].

    Raises:
        ValueError: λ outside [0, 1].
    """

    def __init__(self, classification_weight: float = 0.001) -> None:
        super().__init__()
        if not 0.0 <= classification_weight <= 1.0:
            raise ValueError(f"classification_weight (λ) must be in [0, 1], got {classification_weight}.")
        self.classification_weight = classification_weight
        self.dice = DiceLoss(include_background=False, to_onehot_y=True, softmax=True, squared_pred=True)

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, class_logits: torch.Tensor, plane_class: torch.Tensor
    ) -> torch.Tensor:
        """Args:
            logits: segmentation logits (B, K, H, W).
            labels: class indices of the mask (B, 1, H, W).
            class_logits: plane class logits (B, C).
            plane_class: reference plane class indices (B,).

        Returns:
            the joint loss, a scalar.
        """
        classification = F.cross_entropy(class_logits, plane_class.long())
        segmentation = self.dice(logits, _class_indices(labels, logits).unsqueeze(1))
        return self.classification_weight * classification + (1.0 - self.classification_weight) * segmentation


def regression_loss(name: Literal["mse", "mae", "huber"] = "mse", delta: float = 0.5) -> nn.Module:
    """A loss of the regression CNNs (Zhang et al.): MSE, MAE or Huber.

    Huber with δ: ``0.5·e²`` where ``|e| < δ``, else ``δ·(|e| − 0.5·δ)`` (``torch.nn.HuberLoss``);
    the paper uses δ = 0.5. MSE gave the best HC in their experiments.

    Args:
        name: ``"mse"``, ``"mae"`` or ``"huber"``.
        delta: δ of the Huber loss.

    Returns:
        the loss module (mean over the batch).

    Raises:
        ValueError: unknown name.
    """
    if name == "mse":
        return nn.MSELoss()
    if name == "mae":
        return nn.L1Loss()
    if name == "huber":
        return nn.HuberLoss(delta=delta)
    raise ValueError(f"unknown regression loss {name!r}; use 'mse', 'mae' or 'huber'.")
