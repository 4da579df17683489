"""What the MTLN costs at the shipped widths and at LinkNet's: a training step, and one frame's
inference in PyTorch and in ONNX Runtime, for docs/experiments/2026-12-06-hc-linknet-widths.md
(the training step also for 2026-12-06-hc-soft-boundary-labels.md):

    PYTHONPATH=. python docs/experiments/scripts/mtln_width_cost.py [--threads 2] [--steps 3] [--repeats 20]

Training: one Adam step on a batch of 8 random 160 x 256 images (the recipe's batch and input), the
loss a plain sum of the outputs' means (the step's cost, not the recipe's loss), after one warm-up
step. Inference: one 160 x 256 image in eval mode, the segmentation output only, under
``torch.inference_mode`` and through the same graph exported to ONNX and run by ONNX Runtime's CPU
provider (its threads not spinning between calls, so that they take no time from PyTorch's); the
runs alternate in a shuffled order (``benchmarks.bench_networks2d.interleaved_medians``), the
median of ``--repeats`` passes after 3 warm-up passes. Every network is timed in
the same run, with its parameter count and float32 size: compare within a run, since the absolute
times of this machine move by up to 3x from day to day.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import numpy as np
import onnxruntime
import torch

from benchmarks.bench_networks2d import interleaved_medians
from fetalbiometry.networks import MTLN

WIDTHS = {"shipped": (32, 32, 64, 128, 256), "LinkNet's (the paper's base network)": (64, 64, 128, 256, 512)}
WARMUP = 3


class SegmentationOutput(torch.nn.Module):
    """The MTLN's segmentation logits alone: what inference uses, as one tensor ONNX can export."""

    def __init__(self, network: MTLN) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.network(image)["segmentation"]


def seconds_per_step(network: MTLN, steps: int) -> float:
    """Mean seconds of one training step on 8 images, after one warm-up step."""
    images = torch.randn(8, 1, 160, 256, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(network.parameters())
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()
        loss = sum(output.mean() for output in network(images).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def onnx_session(model: torch.nn.Module, image: torch.Tensor, threads: int) -> onnxruntime.InferenceSession:
    """``model`` exported to ONNX in memory and loaded by ONNX Runtime's CPU provider."""
    graph = io.BytesIO()
    torch.onnx.export(model, (image,), graph, input_names=["image"], dynamo=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = torch.randn(1, 1, 160, 256, generator=torch.Generator().manual_seed(1))
    runs: dict[str, Callable[[], object]] = {}
    for name, features in WIDTHS.items():
        network = MTLN(features=features, ellipse_tuner=True)
        parameters = sum(p.numel() for p in network.parameters())
        step = seconds_per_step(network, args.steps)
        size = f"{parameters / 1e6:.2f} M parameters ({4 * parameters / 1e6:.1f} MB float32)"
        print(f"{name} {features}: {size}, {step:.2f} s per training step")
        model = SegmentationOutput(network).eval()
        session = onnx_session(model, image, args.threads)
        with torch.inference_mode():
            difference = np.abs(model(image).numpy() - session.run(None, {"image": image.numpy()})[0]).max()
        print(f"  ONNX Runtime against PyTorch: largest logit difference {difference:.1e}")
        runs[f"{name}, PyTorch"] = lambda model=model: model(image)
        runs[f"{name}, ONNX Runtime"] = lambda session=session: session.run(None, {"image": image.numpy()})
    with torch.inference_mode():
        seconds = interleaved_medians(runs, args.repeats, WARMUP)
    reference = next(iter(seconds.values()))
    for name, median in seconds.items():
        print(f"{name}: {1e3 * median:.1f} ms per frame, {median / reference:.2f} x the shipped network in PyTorch")


if __name__ == "__main__":
    main()
