"""Auto-Context cascade of segmentors (Sec. 2.5, Eq. 5, Fig. 2b).

Yang X, Wang X, Wang Y, et al. "Hybrid attention for automatic segmentation of whole fetal head
in prenatal ultrasound volumes", Computer Methods and Programs in Biomedicine, 2020
(``shared/papers/3d-whole-head-hybrid-attention-autocontext.txt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, Union

import torch
import torch.nn as nn

__all__ = ["AutoContextCascade"]


def _main_output(output: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
    """The full-resolution logits of a segmentor's output (the first item of a deep-supervision list)."""
    if isinstance(output, torch.Tensor):
        return output
    return output[0]


class AutoContextCascade(nn.Module):
    """Segmentors stacked so that level k sees the image and the prediction of level k-1 (Eq. 5).

    ``Y_k = G_k(J(X, Y_{k-1}))`` where ``J`` is the element-wise sum of the image ``X`` and the
    foreground probability map ``Y_{k-1}`` (softmax of level k-1's logits); ``Y_0 = 0``, so level 1
    sees the image alone, and the sum is balanced when image intensities are scaled to [0, 1].
    The paper uses two levels of the same USegNet-DS-HAS.

    The levels are trained one after the other, each with the lower ones frozen (Sec. 2.5):
    :meth:`freeze_levels_below` selects the level to train (:attr:`train_level`). The levels below
    it then have ``requires_grad=False``, stay in eval mode (batch-norm statistics fixed) even when
    the cascade is put in training mode, and run under ``torch.no_grad``. ``forward`` runs levels
    1..``train_level`` and returns the output of level ``train_level``: in training mode its deep
    supervision list when it has one, in eval mode its logits. By default ``train_level`` is the
    last level, so inference runs the whole cascade and returns the last level's logits.

    Args:
        levels: the segmentors ``G_1, ..., G_K``; each maps an image-shaped tensor to class logits
            (or, in training mode, a list with the logits first).
        foreground_channel: the class channel whose probability is passed up the cascade.
    """

    def __init__(self, levels: Sequence[nn.Module], foreground_channel: int = 1) -> None:
        super().__init__()
        if len(levels) < 1:
            raise ValueError("an auto-context cascade needs at least one level.")
        self.levels = nn.ModuleList(levels)
        self.foreground_channel = foreground_channel
        self.train_level = len(levels)

    def freeze_levels_below(self, level: int) -> None:
        """Train ``level`` (1-based) next: freeze levels 1..level-1, unfreeze the others.

        Args:
            level: the level to train, 1..number of levels.

        Raises:
            ValueError: ``level`` is out of range.
        """
        if not 1 <= level <= len(self.levels):
            raise ValueError(f"level must be in 1..{len(self.levels)}, got {level}.")
        self.train_level = level
        for index, segmentor in enumerate(self.levels):
            segmentor.requires_grad_(index >= level - 1)
        self.train(self.training)

    def train(self, mode: bool = True) -> AutoContextCascade:
        """Set training mode, keeping the frozen levels below :attr:`train_level` in eval mode."""
        super().train(mode)
        for index, segmentor in enumerate(self.levels):
            if index < self.train_level - 1:
                segmentor.eval()
        return self

    def join(self, image: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``J(X, Y)``: element-wise sum of the image and the foreground probability map (Eq. 5).

        Args:
            image: shape (B, C, *S).
            logits: class logits of the previous level, shape (B, K, *S).

        Returns:
            the next level's input, shape (B, C, *S).
        """
        probability = torch.softmax(logits, dim=1)
        return image + probability[:, self.foreground_channel : self.foreground_channel + 1]

    def forward(self, image: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        """Args:
            image: shape (B, C, *S).

        Returns:
            the output of level :attr:`train_level` (see the class description).
        """
        level_input = image
        output: Union[torch.Tensor, List[torch.Tensor]] = image
        for index, segmentor in enumerate(self.levels):
            if index < self.train_level - 1:
                with torch.no_grad():
                    level_input = self.join(image, _main_output(segmentor(level_input)))
            elif index == self.train_level - 1:
                output = segmentor(level_input)
        return output
