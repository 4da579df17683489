"""Combine trained 2D networks into one ensemble weights file.

::

    python -m fetalbiometry.planes2d.ensemble OUTPUT MEMBER.pt MEMBER.pt [MEMBER.pt ...]

Each MEMBER is a state dict saved by the biometry training (``runs/biometry/<name>/models/model.pt``)
of one network config, trained alone; all members have the same architecture (the same keys and
shapes). OUTPUT is the state dict of a :class:`~fetalbiometry.planes2d.predictor.PlaneEnsemble`
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
from collections.abc import Sequence
from pathlib import Path

import torch

from fetalbiometry.errors import InputError
from fetalbiometry.weights import read_weights, sha256_of
from fetalbiometry.io import atomic_output
from fetalbiometry.planes2d.predictor import combine_members

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fetalbiometry.planes2d.ensemble", description=__doc__.splitlines()[0])
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
