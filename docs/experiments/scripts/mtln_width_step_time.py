"""Seconds per training step of the MTLN at the shipped widths and at LinkNet's, for
docs/experiments/2026-12-06-hc-soft-boundary-labels.md:

    python docs/experiments/scripts/mtln_width_step_time.py [--threads 2] [--steps 3]

One Adam step on a batch of 8 random 160 x 256 images (the recipe's batch and input), the loss a
plain sum of the outputs' means (the step's cost, not the recipe's loss), after one warm-up step;
both networks timed in the same run, with their parameter counts and float32 sizes.
"""

from __future__ import annotations

import argparse
import time

import torch

from fetalbiometry.networks import MTLN

WIDTHS = {"shipped": (32, 32, 64, 128, 256), "LinkNet's (the paper's base network)": (64, 64, 128, 256, 512)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = torch.randn(8, 1, 160, 256, generator=torch.Generator().manual_seed(0))
    for name, features in WIDTHS.items():
        network = MTLN(features=features, ellipse_tuner=True)
        optimizer = torch.optim.Adam(network.parameters())
        for step in range(args.steps + 1):
            if step == 1:
                start = time.perf_counter()
            loss = sum(output.mean() for output in network(images).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = (time.perf_counter() - start) / args.steps
        parameters = sum(p.numel() for p in network.parameters())
        print(f"{name} {features}: {parameters / 1e6:.2f} M parameters ({4 * parameters / 1e6:.1f} MB float32), {seconds:.2f} s per step")


if __name__ == "__main__":
    main()
