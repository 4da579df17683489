"""Inference time and peak memory of the paper's segmentors, as ratios to MONAI's BasicUNet (not a test).

Yang et al. 2020 (``shared/papers/3d-whole-head-hybrid-attention-autocontext.txt``) feed the
network the ultrasound volume down-scaled by 0.4 (Sec. 3.1): ``PAPER_INPUT_SHAPE`` = (176, 103, 155)
voxels (z, y, x), padded to a multiple of 8 as the bundle's ``DivisiblePadd`` does. Every network of
:data:`fetalbiometry.networks.VARIANTS` runs on that input (random intensities: the cost of the
convolutions does not depend on them) in eval mode under ``torch.no_grad``, through the bundle's
inferer (``fetalbiometry.segment3d.training.make_inferer``: whole volume, or 64³ overlap-tiling for
p-USegNet; 2D-USegNet goes slice by slice inside its ``SliceWise2D``).

The machine is shared and noisy, so absolute figures mean little: each network is reported as a
ratio to ``monai.networks.nets.BasicUNet`` of matched width measured in the same run on the same
input. Each network runs in a fresh ``spawn`` subprocess, so memory peaks do not contaminate each
other. Per network:

- time: median of ``--repeats`` forward passes after one warm-up pass;
- floating-point operations: counted during the warm-up pass by ``torch.utils.flop_counter.FlopCounterMode``
  (convolutions and matrix products; 2 per multiply-add), a figure of the network and the input alone that
  no machine noise touches. Where time follows it, a device is compute-bound and a time target below the
  FLOP ratio cannot be met by tuning;
- peak memory: on CPU the growth of the process's peak resident set over the forward passes
  (``VmHWM`` after a reset on Linux, else ``ru_maxrss``); on CUDA the growth of
  ``torch.cuda.max_memory_allocated`` over the allocation before them. Both are taken after the network is built and primed with one pass on its smallest input (which
  loads kernels and starts thread pools), so they measure the memory of inference itself:
  activations, workspace and tiling buffers, not weights or libraries. On CPU the resident set also
  holds what the C allocator keeps after frees, so take memory ratios from full-size runs only: at
  ``--scale 0.25`` a few MiB of noise weigh as much as the activations.

Then it checks two targets of the 3D bundle: the hybrid attention (USegNet-DS-HAS) adds at most 20 %
time over USegNet-DS, and the two-level auto-context (USegNet-DS-HAS-Ctx) takes at most 2.2× the time
of one level (USegNet-DS-HAS).

    .venv/bin/python benchmarks/bench_networks3d.py --out networks3d.md   # the bundle's width, full size
    .venv/bin/python benchmarks/bench_networks3d.py --paper-width          # the paper's width
    .venv/bin/python benchmarks/bench_networks3d.py --scale 0.25 --repeats 1   # a quick check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

PAPER_FEATURES = (32, 64, 64, 64)
PAPER_ATTENTION_CHANNELS = 32
PAPER_ATTENTION_OUT_CHANNELS = 64
BASELINE = "BasicUNet"
MIN_SIZE = 32  # smallest size BasicUNet takes: its instance norms need > 1 voxel after four poolings
MAX_HAS_TIME_RATIO = 1.2  # USegNet-DS-HAS / USegNet-DS
MAX_CONTEXT_TIME_RATIO = 2.2  # USegNet-DS-HAS-Ctx / USegNet-DS-HAS


@dataclass(frozen=True)
class Width:
    """Channel widths of the segmentors (``build_network`` overrides)."""

    features: tuple[int, ...]
    attention_channels: int
    attention_out_channels: int
    convs_after_attention: bool = True

    def describe(self) -> str:
        layout = "" if self.convs_after_attention else ", no convolutions after the UAMs (authors' layout)"
        return (
            f"features {self.features}, attention {self.attention_channels} -> "
            f"{self.attention_out_channels} channels{layout}"
        )


@dataclass(frozen=True)
class Job:
    """One network to measure in a child process."""

    network: str  # a key of VARIANTS, or BASELINE
    width: Width
    shape: tuple[int, ...]  # channel-first spatial shape, MONAI (x, y, z) order
    repeats: int
    threads: int
    device: str


@dataclass(frozen=True)
class Measurement:
    """What a child process measured for one network (memory as growth, see the module docstring)."""

    network: str
    parameters: int
    seconds: float
    peak_mib: float
    flops: int


def bundle_width() -> Width:
    """The widths the bundle ships, read from ``configs/inference.json``."""
    from monai.bundle import ConfigParser

    import fetalbiometry

    parser = ConfigParser()
    parser.read_config(Path(fetalbiometry.BUNDLE_ROOT) / "configs" / "inference.json")
    return Width(
        features=tuple(int(f) for f in parser.get_parsed_content("features")),
        attention_channels=int(parser.get_parsed_content("attention_channels")),
        attention_out_channels=int(parser.get_parsed_content("attention_out_channels")),
        convs_after_attention=bool(parser.get_parsed_content("convs_after_attention")),
    )


def network_input_shape(scale: float, size_divisor: int) -> tuple[int, ...]:
    """``PAPER_INPUT_SHAPE`` times ``scale``, padded to a multiple of ``size_divisor``, in MONAI (x, y, z) order.

    ``PAPER_INPUT_SHAPE`` is in SimpleITK array order (z, y, x); the bundle reads volumes with ITKReader,
    whose channel-first arrays are (x, y, z), so the axial slices of 2D-USegNet lie along the last axis.
    """
    from fetalbiometry.data.synthetic import PAPER_INPUT_SHAPE

    sizes = (max(1, round(scale * size)) for size in reversed(PAPER_INPUT_SHAPE))
    return tuple(-(-size // size_divisor) * size_divisor for size in sizes)


def basic_unet_features(features: Sequence[int]) -> tuple[int, ...]:
    """BasicUNet widths matching a four-level USegNet's ``features`` (f0, f1, f2, f3).

    BasicUNet has five levels (f0..f4) and one width for its last up-sampling (f_up); USegNet has four.
    Matched: the same widths on the shared levels, BasicUNet's extra deepest level (1/16 resolution,
    cheap) as wide as USegNet's deepest, and f_up = f0 like USegNet's last decoder level, i.e.
    (f0, f1, f2, f3, f3, f0). BasicUNet's kernels are all 3³ where USegNet's two deep levels use 5³.
    """
    if len(features) != 4:
        raise ValueError(f"the BasicUNet match is defined for four USegNet levels, got features={tuple(features)}.")
    f0, f1, f2, f3 = features
    return (f0, f1, f2, f3, f3, f0)


def _build(network: str, width: Width):
    """The network to measure, the bundle's inferer for it, and the smallest size per axis it takes."""
    from monai.inferers import SimpleInferer
    from monai.networks.nets import BasicUNet

    from fetalbiometry.networks import VARIANTS, build_network
    from fetalbiometry.segment3d.training import make_inferer

    if network == BASELINE:
        baseline = BasicUNet(spatial_dims=3, in_channels=1, out_channels=2, features=basic_unet_features(width.features))
        return baseline, SimpleInferer(), MIN_SIZE
    spec = VARIANTS[network]
    model = build_network(
        network,
        features=width.features,
        attention_channels=width.attention_channels,
        attention_out_channels=width.attention_out_channels,
        convs_after_attention=width.convs_after_attention,
    )
    return model, make_inferer(spec.patch_size, spec.sliding_window_overlap), 2 ** (len(width.features) - 1)


_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def _proc_status_mib(field: str) -> float:
    """``VmRSS`` (resident set now) or ``VmHWM`` (its peak) of this process, from Linux's /proc."""
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 2**10  # kB
    raise RuntimeError(f"{field} missing from {_PROC_STATUS}")


def _ru_maxrss_mib() -> float:
    """Peak resident set of this process so far (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _restart_peak_rss() -> float:
    """Start a new peak-RSS window; returns the resident set (MiB) the growth is counted from.

    ``ru_maxrss`` cannot be reset and, in a spawned child, starts at the parent's resident set (the
    kernel carries it over the exec), which can hide a smaller peak entirely. On Linux writing 5 to
    /proc/self/clear_refs resets the peak (``VmHWM``) to the current resident set instead.
    """
    try:
        _PROC_CLEAR_REFS.write_text("5")
    except OSError:
        return _ru_maxrss_mib()
    return _proc_status_mib("VmRSS")


def _peak_rss_mib() -> float:
    """Peak resident set (MiB) since :func:`_restart_peak_rss`."""
    try:
        return _proc_status_mib("VmHWM")
    except OSError:
        return _ru_maxrss_mib()


def measure(job: Job) -> Measurement:
    """Time and peak memory of one network; meant to run in a fresh process (see the module docstring)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(job.threads)
    torch.manual_seed(0)
    device = torch.device(job.device)
    cuda = device.type == "cuda"
    model, inferer, smallest_size = _build(job.network, job.width)
    model = model.to(device).eval()
    parameters = sum(parameter.numel() for parameter in model.parameters())
    image = torch.randn((1, 1, *job.shape), device=device)

    def forward() -> float:
        start = time.perf_counter()
        inferer(image, model)
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    with torch.no_grad():
        # the primer loads kernels and starts thread pools; the network alone on its smallest input, not
        # through the inferer, so that it holds (almost) none of the working memory being measured
        model(torch.randn((1, 1) + (smallest_size,) * len(job.shape), device=device))
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
            baseline_mib = torch.cuda.memory_allocated(device) / 2**20
        else:
            baseline_mib = _restart_peak_rss()
        with FlopCounterMode(display=False) as flop_counter:
            forward()  # warm-up, its operations counted
        seconds = statistics.median(forward() for _ in range(job.repeats))
    peak_mib = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _peak_rss_mib()
    return Measurement(job.network, parameters, seconds, peak_mib - baseline_mib, flop_counter.get_total_flops())


def measure_in_fresh_process(job: Job) -> Measurement:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure, job).result()


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}" if reference > 0 else "n/a"


def _target_line(name: str, results: dict[str, Measurement], numerator: str, denominator: str, limit: float) -> str:
    if numerator not in results or denominator not in results:
        return f"- {name}: not measured (needs {numerator} and {denominator})"
    ratio = results[numerator].seconds / results[denominator].seconds
    flop_ratio = results[numerator].flops / results[denominator].flops
    verdict = "PASS" if ratio <= limit else "FAIL"
    return (
        f"- {name}: {numerator} / {denominator} time = {ratio:.2f} (target <= {limit:g}) {verdict}; "
        f"FLOP ratio {flop_ratio:.2f}"
    )


def report(results: dict[str, Measurement], header: Sequence[str]) -> str:
    """Markdown: the settings, one table row per network, then the two target checks."""
    reference = results[BASELINE]
    lines = [*header, ""]
    lines.append(
        "| variant | params | GFLOP | FLOP / BasicUNet | time (s) | time / BasicUNet | peak memory (MiB) "
        "| memory / BasicUNet |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for result in results.values():
        lines.append(
            f"| {result.network} | {result.parameters:,} | {result.flops / 1e9:.1f} | "
            f"{_ratio(result.flops, reference.flops)} | {result.seconds:.3f} | "
            f"{_ratio(result.seconds, reference.seconds)} | {result.peak_mib:.1f} | "
            f"{_ratio(result.peak_mib, reference.peak_mib)} |"
        )
    lines += [
        "",
        "Targets:",
        _target_line("hybrid attention overhead", results, "USegNet-DS-HAS", "USegNet-DS", MAX_HAS_TIME_RATIO),
        _target_line("two-level auto-context", results, "USegNet-DS-HAS-Ctx", "USegNet-DS-HAS", MAX_CONTEXT_TIME_RATIO),
    ]
    return "\n".join(lines) + "\n"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from fetalbiometry.networks import VARIANTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    width = parser.add_mutually_exclusive_group()
    width.add_argument("--features", type=int, nargs=4, default=None, help="encoder widths (default: the bundle's)")
    width.add_argument(
        "--paper-width",
        action="store_true",
        help=f"features {PAPER_FEATURES}, attention {PAPER_ATTENTION_CHANNELS}/{PAPER_ATTENTION_OUT_CHANNELS}",
    )
    parser.add_argument("--attention-channels", type=int, default=None, help="default: the bundle's")
    parser.add_argument("--attention-out-channels", type=int, default=None, help="default: the bundle's")
    parser.add_argument(
        "--authors-decoder",
        action="store_true",
        help="no convolutions after the UAMs, as in the authors' released code (convs_after_attention=False)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes after the warm-up (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in each child")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="VARIANT")
    parser.add_argument("--scale", type=float, default=1.0, help="input size factor, e.g. 0.5 for a quick check")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or args.scale <= 0:
        parser.error("--repeats and --threads must be >= 1 and --scale > 0.")
    if args.paper_width and (args.attention_channels is not None or args.attention_out_channels is not None):
        parser.error("--paper-width sets the attention widths too.")
    return args


def _width(args: argparse.Namespace) -> Width:
    shipped = bundle_width()
    convs_after_attention = shipped.convs_after_attention and not args.authors_decoder
    if args.paper_width:
        return Width(PAPER_FEATURES, PAPER_ATTENTION_CHANNELS, PAPER_ATTENTION_OUT_CHANNELS, convs_after_attention)
    return Width(
        features=tuple(args.features) if args.features else shipped.features,
        attention_channels=shipped.attention_channels if args.attention_channels is None else args.attention_channels,
        attention_out_channels=(
            shipped.attention_out_channels if args.attention_out_channels is None else args.attention_out_channels
        ),
        convs_after_attention=convs_after_attention,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    import torch

    from fetalbiometry.io import atomic_output

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device available", file=sys.stderr)
        return 1
    width = _width(args)
    size_divisor = 2 ** (len(width.features) - 1)  # the bundle's DivisiblePadd k
    shape = network_input_shape(args.scale, size_divisor)
    if min(shape) < MIN_SIZE:
        print(f"--scale {args.scale:g} gives input {shape}; BasicUNet needs >= {MIN_SIZE} per axis", file=sys.stderr)
        return 1
    results: dict[str, Measurement] = {}
    for network in (BASELINE, *args.variants):
        print(f"measuring {network} ...", file=sys.stderr, flush=True)
        results[network] = measure_in_fresh_process(
            Job(network, width, shape, args.repeats, args.threads, args.device)
        )
    memory = "CUDA max_memory_allocated growth" if args.device == "cuda" else "peak RSS growth"
    header = [
        f"# Segmentor inference cost, as ratios to BasicUNet(features={basic_unet_features(width.features)})",
        "",
        f"- input (x, y, z): {shape} (paper input {args.scale:g}x, padded to a multiple of {size_divisor})",
        f"- {width.describe()}",
        f"- device {args.device}, {args.threads} thread(s), median of {args.repeats} after 1 warm-up, "
        f"memory = {memory}, torch {torch.__version__}",
    ]
    markdown = report(results, header)
    print(markdown, end="")
    if args.out is not None:
        with atomic_output(args.out) as temporary:
            temporary.write_text(markdown, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
