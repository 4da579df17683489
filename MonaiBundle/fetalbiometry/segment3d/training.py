"""Training recipe pieces that the bundle configs call (``MonaiBundle/configs/train.json``).

Yang X, Wang X, Wang Y, et al. "Hybrid attention for automatic segmentation of whole fetal head
in prenatal ultrasound volumes", Computer Methods and Programs in Biomedicine, 2020
(``shared/papers/3d-whole-head-hybrid-attention-autocontext.txt``), Sections 2.3, 2.5, 3.1.

The configs hold the recipe; these functions keep its variant-dependent choices (loss, inferer)
and the level-by-level auto-context training readable there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

import torch.nn as nn
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.handlers import LrScheduleHandler
from monai.inferers import Inferer, SimpleInferer, SlidingWindowInferer
from torch.nn.modules.loss import _Loss
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from fetalbiometry.segment3d.losses import DeepSupervisedCrossEntropy, LabelCrossEntropyLoss
from fetalbiometry.networks import VARIANTS, AutoContextCascade

__all__ = ["make_inferer", "make_loss", "train_auto_context", "trainable_parameters"]

logger = logging.getLogger(__name__)


def make_loss(variant: str) -> _Loss:
    """The training loss of a variant: Eq. 2 with deep supervision, else plain cross entropy.

    The L2 term of Eq. 2 is the optimizer's ``weight_decay``.

    Args:
        variant: a key of :data:`fetalbiometry.networks.VARIANTS`.

    Returns:
        :class:`DeepSupervisedCrossEntropy` or :class:`LabelCrossEntropyLoss`.
    """
    if VARIANTS[variant].network.get("deep_supervision", False):
        return DeepSupervisedCrossEntropy()
    return LabelCrossEntropyLoss()


def make_inferer(patch_size: Sequence[int] | None, overlap: float = 0.5) -> Inferer:
    """Whole-volume inference, or overlap-tiling with patches for the patch-based p-USegNet (Sec. 3.2).

    Args:
        patch_size: the patch the network was trained on, or ``None`` for whole volumes.
        overlap: overlap of neighbouring tiles, as a fraction of ``patch_size``.

    Returns:
        ``SimpleInferer`` or ``SlidingWindowInferer(roi_size=patch_size, overlap=overlap)``.
    """
    if patch_size is None:
        return SimpleInferer()
    return SlidingWindowInferer(roi_size=tuple(patch_size), sw_batch_size=1, overlap=overlap)


def trainable_parameters(network: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``network`` that require gradients (those of the level being trained)."""
    return [parameter for parameter in network.parameters() if parameter.requires_grad]


def train_auto_context(
    trainer: SupervisedTrainer,
    network: nn.Module,
    make_optimizer: Callable[[Iterable[nn.Parameter]], Optimizer],
    make_scheduler: Callable[[Optimizer], LRScheduler] | None = None,
    minutes_per_level: float | None = None,
) -> None:
    """Train an auto-context cascade level after level, each with the levels below frozen (Sec. 2.5).

    "we train the network in level k after finishing the training of level k - 1". For every level
    the trainer gets a fresh optimizer over that level's parameters and runs its whole schedule
    (its ``max_epochs``, 30 per level in the paper) again, with its handlers: validation sees the
    level being trained, and a final checkpoint handler saves the whole network at the end of each
    level. A network without cascade is trained once.

    Args:
        trainer: the configured trainer; its ``network`` may wrap ``network`` (e.g. in DDP).
        network: the bare network, an :class:`AutoContextCascade` or a single segmentor.
        make_optimizer: builds an optimizer from parameters (e.g. a partial ``torch.optim.Adam``).
        make_scheduler: builds a learning-rate schedule for a level's optimizer, stepped after every
            epoch and started again with each level (e.g. a partial ``CosineAnnealingLR`` with
            ``T_max`` = epochs per level); ``None`` keeps the learning rate constant (the paper
            states only its initial value). A schedule built once in the config could not follow
            the new optimizer of each level, hence this argument.
        minutes_per_level: stop a level's schedule early, after the iteration that passes this many
            minutes (``None``: run every epoch). The level then ends as it would at its last epoch
            (its final checkpoint is saved), so a run on a time budget still yields a whole cascade.
    """
    levels = len(network.levels) if isinstance(network, AutoContextCascade) else 1
    for level in range(1, levels + 1):
        if isinstance(network, AutoContextCascade):
            network.freeze_levels_below(level)
        trainer.optimizer = make_optimizer(trainable_parameters(network))
        schedule = None
        if make_scheduler is not None:
            schedule = LrScheduleHandler(make_scheduler(trainer.optimizer), print_lr=False)
            schedule.attach(trainer)
        logger.info(f"training level {level} of {levels}")
        trainer.state.epoch = trainer.state.iteration = 0  # a level stopped early must not resume the next one
        deadline = None if minutes_per_level is None else time.monotonic() + 60.0 * minutes_per_level
        if deadline is not None:
            trainer.add_event_handler(Events.ITERATION_COMPLETED, _terminate_after, deadline)
        trainer.run()
        if deadline is not None:
            trainer.remove_event_handler(_terminate_after, Events.ITERATION_COMPLETED)
        if schedule is not None:
            trainer.remove_event_handler(schedule, Events.EPOCH_COMPLETED)


def _terminate_after(engine: SupervisedTrainer, deadline: float) -> None:
    """Stop ``engine``'s run once ``time.monotonic()`` has passed ``deadline``."""
    if time.monotonic() > deadline:
        logger.info(f"time budget reached at epoch {engine.state.epoch}, iteration {engine.state.iteration}")
        engine.terminate()
