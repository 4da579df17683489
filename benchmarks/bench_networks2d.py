"""Per-image CPU inference time of the 2D biometry networks, as ratios to MONAI's BasicUNet (not a test).

Every 2D network of :mod:`fetalbiometry.networks` runs on one image (batch 1) at the input size it
is trained at, in eval mode under ``torch.inference_mode``, with random weights and random
intensities (the cost of the convolutions depends on neither):

- MTLN (Sobhaninia et al. 2019) at 160 x 256, the HC18 frame letterboxed
  (:data:`fetalbiometry.data.hc18_dataset.DEFAULT_SPATIAL_SIZE`): the shipped configuration
  (``configs/biometry/mtln.json``), the same with LinkNet's widths (64 ... 512) as in the paper,
  the mean of two of them (:class:`fetalbiometry.planes2d.predictor.PlaneEnsemble`) and the single-task
  ablation (no Ellipse Tuner);
- the U-Net baseline (:func:`fetalbiometry.networks.unet_baseline`) at 160 x 256, with the widths
  16 ... 256 of the issue's BasicUNet reference model and with the original U-Net's 64 ... 1024;
- the multi-task U-Net (Qazi et al.) at the paper's 256 x 256;
- the regression CNNs (Zhang et al. 2020): the custom 263K and 1M CNNs at 128 x 128 (the input of
  their figure), Reg-VGG16 and Reg-ResNet50 at 224 x 224 (the paper's resizing).

The machine is shared and noisy, so each network is reported as a ratio to
``BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(16, 32, 64, 128, 256, 16))``
(MONAI's defaults otherwise) on the same input size, measured in the same run. All networks live in
one process and their passes are interleaved: each repeat runs every network once, in a shuffled
order, so that a burst of load from elsewhere hits them all alike. Time per network: the median of
``--repeats`` passes after ``--warmup`` passes of every network.

It also times the shipped HC pipeline on one 540 x 800 frame, the size of an HC18 image
(a synthetic head plane, :func:`fetalbiometry.data.synthetic.make_plane`):
:meth:`fetalbiometry.planes2d.predictor.PlanePredictor.predict` (letterbox, network, probability mapped
back onto the frame) and :func:`fetalbiometry.biometry.measure_plane` (ellipse fit, HC, BPD, OFD).
A network with random weights segments no head, so the ellipse fit is timed on the frame's
reference mask, the mask a trained network gives; the pipeline's time is the sum of the two
stages' medians, checked against issue 24's target of 25 ms per image on 2 cores. A third stage
is the second look of the shipped config's ``head_crop``
(:class:`fetalbiometry.data.hc18_dataset.HeadCrop`): the first look's ellipse fit on the network's
grid and a predict on the head's window, letterboxed to the look's input size, which a frame whose
head gets a window adds; the pipeline with it is checked against 45 ms.

    .venv/bin/python -m benchmarks.bench_networks2d --out networks2d.md   # all networks
    .venv/bin/python -m benchmarks.bench_networks2d --networks mtln unet   # a few
    .venv/bin/python -m benchmarks.bench_networks2d --repeats 2 --warmup 1  # a quick check
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn as nn
from monai.bundle import ConfigParser
from monai.networks.nets import BasicUNet

import fetalbiometry
from fetalbiometry.biometry import fit_ellipse_to_mask, measure_plane
from fetalbiometry.data.hc18_dataset import HeadCrop, letterbox
from fetalbiometry.data.synthetic import make_plane
from fetalbiometry.io import atomic_output
from fetalbiometry.networks import MultiTaskUNet, build_hc_regressor, unet_baseline
from fetalbiometry.planes2d.predictor import BIOMETRY_CONFIG_DIR, SHIPPED_PLANE_NETWORK, PlaneEnsemble, PlanePredictor

BASELINE = "BasicUNet"
BASELINE_FEATURES = (16, 32, 64, 128, 256, 16)  # the reference BasicUNet ("features 16...256")
LINKNET_FEATURES = (64, 64, 128, 256, 512)  # MTLN's default: LinkNet's widths, as in the MTLN paper
HC18_FRAME_SHAPE = (540, 800)  # rows, columns of an HC18 image
PIPELINE = "shipped HC pipeline"
ONE_LOOK_TARGET_MS = 25.0  # issue 24: "one look ≤ 25 ms per frame [...] on 2 cores"
TWO_LOOKS_TARGET_MS = 45.0  # issue 24: "the finer look ≤ 45 ms on 2 cores"
SECOND_LOOK = "second look (head_crop)"


@dataclass(frozen=True)
class Network:
    """One 2D network to time.

    Args:
        name: the ``--networks`` name (for the BasicUNet references: name and input size).
        description: what it is, for the table.
        input_size: (rows, columns) of its input.
        build: makes it, with random weights.
    """

    name: str
    description: str
    input_size: tuple[int, int]
    build: Callable[[], nn.Module]


@dataclass(frozen=True)
class Row:
    """One line of the table: a network's size and its median time per image."""

    network: str
    description: str
    input_size: tuple[int, int]
    parameters: int
    weights_mb: float
    seconds: float


def shipped_config(**overrides: Any) -> ConfigParser:
    """The shipped HC model's network config (``configs/biometry/mtln.json``), with ``overrides``."""
    config_dir = Path(fetalbiometry.BUNDLE_ROOT) / BIOMETRY_CONFIG_DIR
    parser = ConfigParser()
    parser.read_config([config_dir / "inference.json", config_dir / SHIPPED_PLANE_NETWORK])
    for key, value in overrides.items():
        parser[key] = value
    return parser


def networks() -> dict[str, Network]:
    """The 2D networks of the bundle by ``--networks`` name, at their input sizes (module docstring)."""
    shipped = shipped_config()
    hc18_size = tuple(int(size) for size in shipped.get_parsed_content("spatial_size"))
    widths = tuple(int(width) for width in shipped.get_parsed_content("features"))
    catalogue = [
        Network(
            "mtln",
            f"MTLN shipped, features {widths}, Ellipse Tuner",
            hc18_size,
            lambda: shipped_config().get_parsed_content("network_def"),
        ),
        Network(
            "mtln-paper",
            f"MTLN, features {LINKNET_FEATURES}, Ellipse Tuner",
            hc18_size,
            lambda: shipped_config(features=list(LINKNET_FEATURES)).get_parsed_content("network_def"),
        ),
        Network(
            "mtln-ensemble",
            f"mean of 2 MTLNs as shipped (PlaneEnsemble), features {widths}",
            hc18_size,
            lambda: PlaneEnsemble([shipped_config().get_parsed_content("network_def", lazy=False) for _ in range(2)]),
        ),
        Network(
            "mtln-single-task",
            f"MTLN, features {widths}, no Ellipse Tuner",
            hc18_size,
            lambda: shipped_config(ellipse_tuner=False).get_parsed_content("network_def"),
        ),
        Network(
            "unet",
            f"U-Net baseline, features {BASELINE_FEATURES}",
            hc18_size,
            lambda: unet_baseline(features=BASELINE_FEATURES),
        ),
        Network("unet-original", "U-Net baseline, original U-Net widths", hc18_size, unet_baseline),
        Network("multitask-unet", "multi-task U-Net (plane classifier)", (256, 256), MultiTaskUNet),
        *(
            Network(name, description, (128, 128), partial(build_hc_regressor, name, spatial_size=(128, 128)))
            for name, description in (("cnn-263k", "regression CNN 263K"), ("cnn-1m", "regression CNN 1M"))
        ),
        Network("vgg16", "Reg-VGG16", (224, 224), partial(build_hc_regressor, "vgg16")),
        Network("resnet50", "Reg-ResNet50", (224, 224), partial(build_hc_regressor, "resnet50")),
    ]
    return {network.name: network for network in catalogue}


def basic_unet() -> BasicUNet:
    """The reference network: MONAI's BasicUNet with the issue's widths."""
    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=BASELINE_FEATURES)


def weights_megabytes(model: nn.Module) -> float:
    """Size of the model's state dict as ``torch.save`` writes it, in MB (10^6 bytes)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 1e6


def interleaved_medians(runs: Mapping[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds of each callable; every repeat calls each once, in a new shuffled order.

    Args:
        runs: what to time, by name.
        repeats: timed calls of each.
        warmup: untimed calls of each first (thread pools, allocator, kernel selection).

    Returns:
        the median seconds per call, by name.
    """
    order = list(runs)
    for _ in range(warmup):
        for name in order:
            runs[name]()
    samples: dict[str, list[float]] = {name: [] for name in order}
    shuffler = random.Random(0)
    for _ in range(repeats):
        shuffler.shuffle(order)
        for name in order:
            start = time.perf_counter()
            runs[name]()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in samples.items()}


def _size_key(name: str, size: Sequence[int]) -> str:
    return f"{name} {size[0]}x{size[1]}"


def _pipeline_stages(
    network: nn.Module, spatial_size: Sequence[int], head_crop: HeadCrop, seed: int
) -> dict[str, Callable[[], object]]:
    """The stages of the shipped pipeline on one HC18-sized head frame (see the module docstring)."""
    phantom = make_plane("head", seed, shape=HC18_FRAME_SHAPE)
    frame = sitk.GetArrayFromImage(phantom.image)
    reference_mask = sitk.GetArrayFromImage(phantom.mask).astype(bool)
    pixel_size = float(phantom.truth["pixel_size_mm"])
    predictor = PlanePredictor(network, spatial_size)
    measure_plane(reference_mask, "head", pixel_size)  # fails loudly here if this frame cannot be measured
    # min_zoom 1: a window for any head, so that the second look is timed whatever the phantom's size
    head_crop = dataclasses.replace(head_crop, min_zoom=1.0)
    head = fit_ellipse_to_mask(reference_mask)
    top, left, rows, columns = head_crop.window(head, frame.shape, spatial_size)
    window = frame[top : top + rows, left : left + columns]
    grid_mask = letterbox(reference_mask.astype(np.float32), spatial_size)[0] >= 0.5
    look_size = head_crop.look_input_size((top, left, rows, columns), frame.shape, spatial_size)
    window_predictor = PlanePredictor(network, look_size)  # the window, letterboxed as the second look sees it

    def second_look() -> object:
        fit_ellipse_to_mask(grid_mask)  # the first look's ellipse on the network's grid places the window
        return window_predictor.predict(window)

    return {
        f"{PIPELINE}: predict": lambda: predictor.predict(frame),
        f"{PIPELINE}: ellipse fit": lambda: measure_plane(reference_mask, "head", pixel_size),
        f"{PIPELINE}: {SECOND_LOOK}": second_look,
    }


def measure_all(names: Sequence[str], repeats: int, warmup: int, seed: int) -> tuple[list[Row], dict[str, float]]:
    """Time the chosen networks, a BasicUNet at each of their input sizes, and the shipped pipeline.

    Returns:
        (one :class:`Row` per network, the BasicUNets first; the pipeline stages' median seconds).
    """
    catalogue = networks()
    chosen = [catalogue[name] for name in names]
    sizes = list(dict.fromkeys(network.input_size for network in chosen))
    entries = [Network(_size_key(BASELINE, size), "MONAI BasicUNet (reference)", size, basic_unet) for size in sizes]
    entries += chosen
    models: dict[str, nn.Module] = {}
    runs: dict[str, Callable[[], object]] = {}
    for entry in entries:
        print(f"building {entry.name} ...", file=sys.stderr, flush=True)
        model = models[entry.name] = entry.build().eval()
        image = torch.randn((1, 1, *entry.input_size))
        runs[entry.name] = lambda model=model, image=image: model(image)
    shipped = catalogue["mtln"]
    head_crop = shipped_config().get_parsed_content("head_crop")
    network = models["mtln"] if "mtln" in models else shipped.build()
    runs.update(_pipeline_stages(network, shipped.input_size, head_crop, seed))
    print(f"timing {len(runs)} runs x {repeats} repeats ...", file=sys.stderr, flush=True)
    with torch.inference_mode():
        seconds = interleaved_medians(runs, repeats, warmup)
    rows = [
        Row(
            entry.name,
            entry.description,
            entry.input_size,
            sum(parameter.numel() for parameter in models[entry.name].parameters()),
            weights_megabytes(models[entry.name]),
            seconds[entry.name],
        )
        for entry in entries
    ]
    return rows, {key: value for key, value in seconds.items() if key.startswith(PIPELINE)}


def report(rows: Sequence[Row], stages: Mapping[str, float], header: Sequence[str]) -> str:
    """Markdown: the settings, one table row per network, then the shipped pipeline and its target."""
    reference = {row.input_size: row.seconds for row in rows if row.network.startswith(BASELINE)}
    lines = [*header, ""]
    lines.append("| network | what | input (rows x cols) | params | weights (MB) | ms / image | time / BasicUNet |")
    lines.append("|---|---|---|---:|---:|---:|---:|")
    for row in rows:
        lines.append(
            f"| {row.network} | {row.description} | {row.input_size[0]} x {row.input_size[1]} | {row.parameters:,} | "
            f"{row.weights_mb:.2f} | {1e3 * row.seconds:.1f} | {row.seconds / reference[row.input_size]:.2f} |"
        )
    one_look_ms = 1e3 * sum(value for name, value in stages.items() if not name.endswith(SECOND_LOOK))
    two_looks_ms = 1e3 * sum(stages.values())
    frame_rows, frame_columns = HC18_FRAME_SHAPE
    lines += ["", f"{PIPELINE} on one {frame_rows} x {frame_columns} frame (MTLN shipped, random weights):"]
    lines += [f"- {name.removeprefix(PIPELINE + ': ')}: {1e3 * value:.1f} ms" for name, value in stages.items()]
    lines.append(
        "  (predict: letterbox, network, probability mapped back; ellipse fit: measure_plane on the reference mask;"
        " second look: the first look's ellipse fit on the network grid and a predict on the head's window)"
    )
    for what, total_ms, target_ms in (
        ("one look", one_look_ms, ONE_LOOK_TARGET_MS),
        ("with the second look", two_looks_ms, TWO_LOOKS_TARGET_MS),
    ):
        verdict = "PASS" if total_ms <= target_ms else "FAIL"
        target = f"target <= {target_ms:g} ms on 2 cores"
        lines.append(f"- total, {what}: {total_ms:.1f} ms per image ({target}) {verdict}")
    return "\n".join(lines) + "\n"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = list(networks())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--networks",
        nargs="+",
        choices=names,
        default=names,
        metavar="NETWORK",
        help=f"default: all ({', '.join(names)})",
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed passes of each network (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes of each network first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic head frame of the pipeline")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1 and --warmup >= 0.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows, stages = measure_all(list(dict.fromkeys(args.networks)), args.repeats, args.warmup, args.seed)
    command = shlex.join(["python", "-m", "benchmarks.bench_networks2d", *(sys.argv[1:] if argv is None else argv)])
    header = [
        f"# 2D biometry networks: CPU time per image, as ratios to BasicUNet(features={BASELINE_FEATURES})",
        "",
        f"- command: `{command}`",
        f"- cpu, {torch.get_num_threads()} thread(s), batch 1, eval mode, torch.inference_mode, median of "
        f"{args.repeats} interleaved passes after {args.warmup} warm-up pass(es), torch {torch.__version__}",
        "- random weights and random inputs: the time does not depend on them",
    ]
    markdown = report(rows, stages, header)
    print(markdown, end="")
    if args.out is not None:
        with atomic_output(args.out) as temporary:
            temporary.write_text(markdown, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
