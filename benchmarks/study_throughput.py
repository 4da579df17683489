"""Volumes per minute of ``fetalbiometry.study`` on CPU with 1 and 2 processes (not a test).

Generates a phantom cohort (``fetalbiometry.data.synthetic.write_phantoms``), runs the study
once as ``python -m fetalbiometry.study`` and once as ``torchrun --nproc_per_node=2 -m
fetalbiometry.study``, both with ``--device cpu`` and one thread per process, and prints the
throughput of each and their ratio. Wall-clock times include process start and model loading,
as a user sees them; use more subjects to weigh them less.

    .venv/bin/python benchmarks/study_throughput.py --subjects 8 [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8, help="phantom subjects (3 rescans each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the shipped one)")
    args = parser.parse_args(argv)

    from fetalbiometry.data.synthetic import write_phantoms

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="study_throughput_") as folder:
        root = Path(folder)
        write_phantoms(root / "cohort", dim=3, n=args.subjects, seed=args.seed, rescans=3)
        manifest = root / "cohort" / "manifest.csv"
        n_volumes = sum(1 for line in manifest.read_text().splitlines()[1:] if line.strip())
        study_args = ["-m", "fetalbiometry.study", str(manifest), "--device", "cpu"]
        if args.model is not None:
            study_args += ["--model", str(args.model)]
        seconds = {
            1: _run([sys.executable, *study_args, "--out", str(root / "one")], env),
            2: _run(
                [str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node=2", *study_args]
                + ["--out", str(root / "two")],
                env,
            ),
        }
    rates = {n: 60.0 * n_volumes / s for n, s in seconds.items()}
    for n in (1, 2):
        print(f"{n} process(es): {n_volumes} volumes in {seconds[n]:.1f} s = {rates[n]:.1f} volumes/min")
    print(f"speed-up 2 vs 1 process: {rates[2] / rates[1]:.2f}x (CPU cores: {os.cpu_count()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
