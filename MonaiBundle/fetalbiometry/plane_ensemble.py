"""Combine trained 2D networks into one ensemble weights file.

::

    python -m fetalbiometry.plane_ensemble OUTPUT MEMBER.pt MEMBER.pt [MEMBER.pt ...]

Each MEMBER is a state dict saved by the biometry training (``runs/biometry/<name>/models/model.pt``)
of one network config, trained alone; all members have the same architecture (the same keys and
shapes). OUTPUT is the state dict of a :class:`~fetalbiometry.plane_model.PlaneEnsemble`
(``members.0.…``, ``members.1.…``). Give it wherever a model file goes (``--model`` of the command
line, ``--ckpt_path`` of ``evaluate.json``) with the members' network config: the predictor runs
every member and averages their probabilities, for the members' time added up. ``docs/biometry.md``
measures the mean of two MTLNs.

A weight average of the members would cost one network's time, but it needs members that share
their training up to a late point; networks trained from scratch do not, so their outputs are
averaged instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from fetalbiometry.errors import InputError
from fetalbiometry.inference import read_weights, sha256_of
from fetalbiometry.io import atomic_output
from fetalbiometry.plane_model import ensemble_size

__all__ = ["combine_members", "main"]


def combine_members(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The :class:`~fetalbiometry.plane_model.PlaneEnsemble` state dict of the members' ``states``.

    Raises:
        InputError: fewer than two members, a member that is itself an ensemble, or members whose
            keys or tensor shapes differ (not one architecture).
    """
    if len(states) < 2:
        raise InputError(f"an ensemble needs at least two members, got {len(states)}")
    first = states[0]
    combined = {}
    for index, state in enumerate(states):
        if ensemble_size(state):
            raise InputError(f"member {index + 1} is already an ensemble; give its members instead")
        shapes = {key: tuple(value.shape) for key, value in state.items()}
        if shapes != {key: tuple(value.shape) for key, value in first.items()}:
            raise InputError(f"member {index + 1} is not the architecture of member 1 (its keys or shapes differ)")
        combined.update({f"members.{index}.{key}": value for key, value in state.items()})
    return combined


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fetalbiometry.plane_ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the ensemble's weights file to write")
    parser.add_argument("members", nargs="+", type=Path, metavar="MEMBER", help="trained weights, two or more")
    args = parser.parse_args(argv)
    try:
        if any(args.output.resolve() == member.resolve() for member in args.members):
            raise InputError(f"{args.output} is one of the members; write the ensemble to a new file")
        combined = combine_members([read_weights(member, checksum=None) for member in args.members])
        with atomic_output(args.output) as temporary:
            torch.save(combined, temporary)
    except InputError as error:
        print(f"plane_ensemble: {error}", file=sys.stderr)
        return 1
    megabytes = args.output.stat().st_size / 1e6
    print(f"wrote {args.output}: {len(args.members)} members, {megabytes:.1f} MB, SHA-256 {sha256_of(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
