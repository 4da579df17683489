"""Training pieces shared by the 2D biometry networks (``configs/biometry/train.json``).

The networks differ in their outputs and losses, not in how they are trained, so one MONAI
``SupervisedTrainer`` serves them all:

- :func:`prepare_plane_batch` hands the trainer the image as input and the whole sample dict
  (label, boundary weights, ellipse, HC, plane class) as target;
- :class:`PlaneLoss` reads its loss's arguments by name from the network's outputs
  (:func:`~fetalbiometry.planes2d.predictor.network_outputs`) and from that target dict, so that MTLN's
  ``L_T`` (Eq. 1), the multi-task U-Net's joint loss (Eq. 3), DiceCE and the regression losses are
  wired in the config, not in code;
- :class:`PlaneValidation` measures the network the way it will be used, with the HC18 figures of
  :mod:`fetalbiometry.planes2d.evaluation` on the validation frames at full resolution, and keeps the
  weights with the best validation ADF: the trainer's, or their running average
  (:class:`WeightAveraging`) when the config asks for one (``ema_decay``);
- :class:`ResumableTraining` saves the whole training state after every epoch and picks it up
  when the same run is started again (``configs/biometry/resumable.json``).

The HC18 data are split by subject (:func:`hc18_splits`): a fixed test part, never trained on nor
used to choose a model, then a validation part for model choice, and the rest for training.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from ignite.engine import Engine, Events
from monai.data import Dataset
from monai.handlers import CheckpointLoader, CheckpointSaver
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm import tqdm

from fetalbiometry.data.hc18 import HC18Record, split_by_subject, training_records
from fetalbiometry.io import atomic_output
from fetalbiometry.planes2d.evaluation import PlaneCase, evaluate_planes, summarize_planes
from fetalbiometry.planes2d.predictor import PlanePredictor, load_plane_network, network_outputs

__all__ = [
    "PlaneLoss",
    "PlaneValidation",
    "ResumableTraining",
    "WeightAveraging",
    "cached",
    "hc18_splits",
    "load_trained",
    "prepare_plane_batch",
]

logger = logging.getLogger(__name__)


def hc18_splits(
    root: str | Path, test_fraction: float = 0.25, validation_fraction: float = 0.1, seed: int = 0
) -> dict[str, list[HC18Record]]:
    """The HC18 training set split by subject into ``training``, ``validation`` and ``test``.

    The test subjects are drawn first, from all subjects, with ``seed``; the validation subjects
    from the rest. The same folder and arguments always give the same split, so the test part is
    fixed for every network trained and evaluated with these defaults.

    Args:
        root: HC18 folder in the official layout.
        test_fraction: fraction of all subjects held out for the test.
        validation_fraction: fraction of all subjects held out for model choice.
        seed: random seed.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``, no subject in two parts.
    """
    remaining, test = split_by_subject(training_records(root), test_fraction, seed)
    training, validation = split_by_subject(remaining, validation_fraction / (1.0 - test_fraction), seed + 1)
    return {"training": training, "validation": validation, "test": test}


def cached(dataset: Sequence[Mapping[str, Any]], progress: bool = True, num_workers: int = 0) -> Dataset:
    """Every sample of ``dataset`` computed once and kept in memory.

    The MTLN augmentation is offline (fixed flips and rotations), so the samples, boundary weight
    maps included, do not change from epoch to epoch; random transforms drawn at each fetch go over
    the cache (``train.json``'s ``train_transforms``). MONAI's ``CacheDataset`` caches the output of
    a transform chain over a list of items; here the items are made by a dataset class
    (:class:`~fetalbiometry.data.hc18_dataset.HC18PlaneDataset`), so they are read out directly,
    by ``num_workers`` processes of a ``DataLoader`` when more than 0.
    """
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=_as_is)
    return Dataset(list(tqdm(loader, total=len(dataset), desc="caching", disable=not progress)))


def _as_is(sample: Any) -> Any:
    """A ``collate_fn`` that leaves each sample as the dataset made it (a module function: it crosses processes)."""
    return sample


def load_trained(network: nn.Module, path: str | Path) -> nn.Module:
    """``network`` with the state dict saved at ``path`` by :class:`PlaneValidation` (``weights_only``).

    A file that holds an ensemble (:mod:`fetalbiometry.planes2d.ensemble`) gives a
    :class:`~fetalbiometry.planes2d.predictor.PlaneEnsemble` of copies of ``network``
    (:func:`~fetalbiometry.planes2d.predictor.load_plane_network`).
    """
    return load_plane_network(network, path)


def prepare_plane_batch(
    batchdata: Mapping[str, Any], device: torch.device | str | None = None, non_blocking: bool = False, **kwargs: Any
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``prepare_batch`` for MONAI engines: (image, every sample entry as the target), on ``device``."""
    targets = {
        key: value.to(device=device, non_blocking=non_blocking) if isinstance(value, torch.Tensor) else value
        for key, value in batchdata.items()
    }
    return targets["image"], targets


class PlaneLoss(nn.Module):
    """A loss whose arguments are taken by name from the network outputs and the sample.

    ``arguments`` lists, in the loss's order, names of the form ``"output:KEY"`` (an entry of
    :func:`~fetalbiometry.planes2d.predictor.network_outputs`) or ``"target:KEY"`` (an entry of the sample
    dict). For the MTLN loss ``L_T = α1·L_seg + α2·L_ET`` (Sobhaninia et al., Eq. 1)::

        PlaneLoss(MTLNLoss(), ["output:segmentation", "target:label", "target:weight",
                               "output:ellipse", "target:ellipse"])

    Args:
        loss: the loss module.
        arguments: where each positional argument of ``loss`` comes from.

    Raises:
        ValueError: an argument name without the ``output:`` or ``target:`` prefix.
    """

    def __init__(self, loss: nn.Module, arguments: Sequence[str]) -> None:
        super().__init__()
        for argument in arguments:
            if argument.partition(":")[0] not in ("output", "target"):
                raise ValueError(f"loss argument {argument!r} must start with 'output:' or 'target:'.")
        self.loss = loss
        self.arguments = tuple(arguments)

    def forward(self, output: torch.Tensor | dict[str, torch.Tensor], target: Mapping[str, Any]) -> torch.Tensor:
        sources = {"output": network_outputs(output), "target": target}
        values = []
        for argument in self.arguments:
            source, _, key = argument.partition(":")
            value = sources[source][key]
            values.append(value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value)
        return self.loss(*values)


class WeightAveraging:
    """An exponential moving average of a network's weights, updated after every training iteration.

    ``θ_avg ← d_n · θ_avg + (1 − d_n) · θ`` at the n-th update, batch-norm statistics included
    (``torch.optim.swa_utils.AveragedModel``), with the warm-up of TensorFlow's
    ``ExponentialMovingAverage(num_updates=n)``: ``d_n = min(decay, (1 + n) / (10 + n))``. Without
    it the average of a short training still holds its first, untrained weights: at 0.999 and 690
    iterations an epoch, 0.999^2070 = 13 % of them after three epochs, and that average measured
    no validation frame at all (docs/experiments/2026-12-04-ema-weights.md). The average smooths
    the epoch-to-epoch swings of the validation figures that a single set of weights shows.

    Args:
        network: the trained network.
        decay: the largest weight of the average at an update, in (0, 1); e.g. 0.999 averages over
            about the last 1,000 iterations once warmed up.

    Raises:
        ValueError: ``decay`` outside (0, 1).
    """

    def __init__(self, network: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must be between 0 and 1, got {decay}.")
        self.network = network
        self.decay = decay
        self.averaged = AveragedModel(network, avg_fn=self._average, use_buffers=True)

    def _average(self, averaged: torch.Tensor, current: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        """One EMA step with the warm-up decay ``d_n`` (``AveragedModel``'s ``avg_fn``)."""
        decay = min(self.decay, (1.0 + float(updates)) / (10.0 + float(updates)))
        return decay * averaged + (1.0 - decay) * current

    @property
    def module(self) -> nn.Module:
        """The network with the averaged weights (same class and state-dict keys as ``network``)."""
        return self.averaged.module

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        self.averaged.update_parameters(self.network)


class PlaneValidation:
    """Validate a 2D network with the figures of :mod:`fetalbiometry.planes2d.evaluation`; keep its best weights.

    Every ``interval`` epochs the trainer's network is wrapped by ``make_predictor`` and run on the
    validation frames at full resolution (:func:`~fetalbiometry.planes2d.evaluation.evaluate_planes`).
    The weights are saved to ``save_path`` when they do better than all before: fewer failed frames
    (without a measurement, or given the wrong plane class by a network with a classifier), then a
    lower mean ADF. The figures go to the log and to ``engine.state.metrics`` (``val_adf_mm``,
    ``val_dsc_percent``, ``val_hd_mm``, ``val_no_measurement``, ``val_wrong_plane``). Without
    validation frames (a final training on all the data, ``all_frames.json``) the weights are saved
    at every validation, so the file holds those of the last epoch.

    Args:
        cases: validation frames with their references (e.g. ``hc18_case`` of each validation record).
        make_predictor: builds a :class:`~fetalbiometry.planes2d.predictor.PlanePredictor` around a network.
        save_path: where the best state dict goes (written atomically).
        interval: epochs between validations.
        averaged: when given, its averaged weights are validated and saved instead of the trainer's
            (attached to the trainer with this handler).
    """

    def __init__(
        self,
        cases: Sequence[PlaneCase],
        make_predictor: Callable[[nn.Module], PlanePredictor],
        save_path: str | Path,
        interval: int = 1,
        averaged: WeightAveraging | None = None,
    ) -> None:
        self.cases = list(cases)
        self.make_predictor = make_predictor
        self.save_path = Path(save_path)
        self.interval = interval
        self.averaged = averaged
        self.best: tuple[int, float] = (len(self.cases) + 1, math.inf)

    def attach(self, engine: Engine) -> None:
        if self.averaged is not None:
            self.averaged.attach(engine)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        if self.averaged is not None:
            network = self.averaged.module
        else:
            network = getattr(engine.network, "module", engine.network)  # unwrap DistributedDataParallel
        if not self.cases:
            self._save(network)
            logger.info(f"epoch {engine.state.epoch}: no validation frames; weights saved to {self.save_path}")
            return
        results = evaluate_planes(self.make_predictor(network), self.cases, progress=False)
        network.train()
        summary = summarize_planes(results)
        figures = {
            f"val_{key}": summary[key]["mean"] if summary[key] else math.nan
            for key in ("adf_mm", "dsc_percent", "hd_mm")
        }
        figures["val_no_measurement"] = len(summary["no_measurement"])
        wrong_plane = [result.predicted_plane != result.plane for result in results]
        figures["val_wrong_plane"] = sum(wrong_plane)
        engine.state.metrics.update(figures)
        # A frame given the wrong plane class is measured as the wrong length (an AC reported as an HC):
        # it fails, like a frame without a measurement. A frame that is both counts once.
        failed = sum(bool(result.no_measurement) or wrong for result, wrong in zip(results, wrong_plane))
        score = (failed, figures["val_adf_mm"])
        improved = score < self.best
        if improved:
            self.best = score
            self._save(network)
        logger.info(
            f"epoch {engine.state.epoch}: "
            + ", ".join(f"{key} {value:.3f}" for key, value in figures.items())
            + (f" (best, saved to {self.save_path})" if improved else "")
        )

    def state_dict(self) -> dict[str, Any]:
        """The best validation so far, for :class:`ResumableTraining`."""
        return {"best_failed": self.best[0], "best_adf_mm": self.best[1]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the best validation of :meth:`state_dict`, so a resumed run keeps the better weights."""
        self.best = (int(state["best_failed"]), float(state["best_adf_mm"]))

    def _save(self, network: nn.Module) -> None:
        with atomic_output(self.save_path) as temporary:
            torch.save(network.state_dict(), temporary)


class ResumableTraining:
    """Save a training's state after every epoch; restore the latest when the same run starts again.

    A training longer than a working session (the 2D networks at LinkNet's widths take about 5 h
    on two CPU cores) can then be stopped and started again with the same command. MONAI's
    :class:`~monai.handlers.CheckpointSaver` writes ``resume_checkpoint_epoch=N.pt`` into
    ``checkpoint_dir`` (each sitting keeps its last) and :class:`~monai.handlers.CheckpointLoader`
    restores the newest at the start of the run: the trainer's epoch and iteration, and ``objects``
    (give the network, optimizer, learning-rate scheduler and :class:`PlaneValidation`, so that a
    resumed run keeps its best weights). An ``ema_decay`` running average is not saved: a resumed
    run starts it again. This handler exists because those two need the trainer in their
    ``save_dict``, which a bundle config cannot name while it builds the trainer's handlers: it
    adds the engine when attached. A resumed run draws its shuffles and augmentations anew, so it
    does not repeat an uninterrupted run batch for batch.

    Args:
        checkpoint_dir: where the checkpoints go.
        objects: name → object with ``state_dict`` / ``load_state_dict``; not ``"trainer"``.
    """

    def __init__(self, checkpoint_dir: str | Path, objects: Mapping[str, Any]) -> None:
        if "trainer" in objects:
            raise ValueError("'trainer' is added by ResumableTraining itself.")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.objects = dict(objects)

    def latest(self) -> Path | None:
        """The checkpoint of the highest epoch in ``checkpoint_dir``, or None."""
        checkpoints = self.checkpoint_dir.glob("resume_checkpoint_epoch=*.pt")
        return max(checkpoints, key=lambda path: int(path.stem.rsplit("=", 1)[1]), default=None)

    def attach(self, engine: Engine) -> None:
        state = {**self.objects, "trainer": engine}
        latest = self.latest()
        if latest is not None:
            logger.info(f"resuming from {latest}")
            CheckpointLoader(str(latest), state, map_location="cpu").attach(engine)
        CheckpointSaver(str(self.checkpoint_dir), state, file_prefix="resume", save_interval=1, n_saved=1).attach(engine)
