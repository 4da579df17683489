"""The element-wise mean of trained weights files (a "weight soup"), for
docs/experiments/2026-12-05-hc-large-head-look.md:

    python docs/experiments/scripts/weight_soup.py OUT.pt A.pt B.pt [C.pt ...]

Every file must hold the same network's state dict (the fine-tunings of one set of weights, so that
their parameters stay close enough to average). Floating-point tensors are averaged; integer
buffers (batch norm's ``num_batches_tracked``) are taken from the first file. Not
``torch.optim.swa_utils.AveragedModel``: that averages the parameters of one model over training
steps, and would need each file loaded into a network first.
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("weights", nargs="+")
    args = parser.parse_args()
    if len(args.weights) < 2:
        parser.error("give at least two weights files")
    states = [torch.load(path, map_location="cpu", weights_only=True) for path in args.weights]
    if any(state.keys() != states[0].keys() for state in states):
        parser.error("the weights files hold different networks")
    soup = {
        name: sum(state[name] for state in states) / len(states) if tensor.is_floating_point() else tensor
        for name, tensor in states[0].items()
    }
    torch.save(soup, args.out)


if __name__ == "__main__":
    main()
