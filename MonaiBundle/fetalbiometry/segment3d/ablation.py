"""The paper's Table 1 re-run on held-out phantoms: every network trained and evaluated with one recipe.

Yang X, Wang X, Wang Y, et al. "Hybrid attention for automatic segmentation of whole fetal head
in prenatal ultrasound volumes", Computer Methods and Programs in Biomedicine, 2020
(``shared/papers/3d-whole-head-hybrid-attention-autocontext.txt``), Sec. 3.2, Tables 1-2.

For each variant the bundle's own commands run in a subprocess, exactly as a user types them::

    python -m monai.bundle run training  --config_file configs/train.json --variant V --output_dir OUT/V ...
    python -m monai.bundle run evaluating --config_file "['configs/train.json','configs/evaluate.json']" \\
        --variant V --ckpt_path OUT/V/models/model.pt --output_dir OUT/V/evaluation ...

Training uses phantoms of seeds ``0 .. num_train - 1`` (validation: the next ``num_val``), the
evaluation the held-out phantoms of seeds ``100000 ..`` (``test_seed`` of ``evaluate.json``), at
full resolution, with DSC, Conf, Jacc, Adb and Hdb in mm. Then it writes ``OUT/table1.md``: each
network's mean ± SD over the test phantoms, its change against USegNet-DS on the same phantoms
(paired, with the Wilcoxon signed-rank p of :mod:`fetalbiometry.paired`; USegNet-DS is the paper's
base model of the ablation) and the paper's own figures beside them::

    python -m fetalbiometry.segment3d.ablation --out out/table1 --epochs-per-level 10

A variant whose training finished (``OUT/V/training.json``) is not trained again, and one whose
``evaluation/metrics_summary.json`` exists is not evaluated again, so an interrupted run resumes. A
network trained with other phantom counts, epochs or patch size is refused, not reused.
``--evaluation NAME`` evaluates the trained networks again into ``OUT/V/NAME`` and writes
``OUT/table1-NAME.md``, e.g. without the largest-component step of the post-processing::

    python -m fetalbiometry.segment3d.ablation --out out/table1 --evaluation raw --set keep_largest_component=false

``--report-only`` only writes the table. A variant that fails is reported and the others go on; the
exit status is then 1.

p-USegNet trains on patches and predicts by overlap-tiling. The paper's 64³ patches cover about
9 % of its 0.4x-downscaled volumes (155 x 103 x 176 voxels); at the bundle's default network input
(48³ for the 64³ phantoms) a 64³ patch would be the whole volume, so ``--patch-size`` (default 24)
keeps that fraction instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from fetalbiometry import BUNDLE_ROOT
from fetalbiometry.io import atomic_output
from fetalbiometry.networks import VARIANTS
from fetalbiometry.paired import paired_change, read_per_case

__all__ = [
    "PUBLISHED_TABLE1",
    "PUBLISHED_TABLE2",
    "TABLE1_VARIANTS",
    "AblationRecipe",
    "comparison_table",
    "main",
    "parameter_count",
    "run_variant",
    "table_path",
]

BASE_VARIANT = "USegNet-DS"
"""The model the paper's ablation of SAM, UAM, HAS and auto-context starts from (Sec. 3.2)."""

PUBLISHED_TABLE1: dict[str, tuple[float, float, float, float, float]] = {
    "p-USegNet": (93.31, 85.53, 87.53, 0.8908, 7.839),
    "2D-USegNet": (94.31, 87.86, 89.27, 0.8023, 6.861),
    "3D-DeconvNet": (94.51, 88.31, 89.62, 0.6804, 6.334),
    "USegNet": (94.83, 89.06, 90.20, 0.6186, 5.400),
    "USegNet-DS": (94.95, 89.33, 90.42, 0.6225, 5.409),
    "USegNet-DS-UAM": (95.57, 90.70, 91.54, 0.5242, 4.785),
    "USegNet-DS-SAM": (95.63, 90.83, 91.64, 0.5362, 4.702),
    "USegNet-DS-HAS": (95.85, 91.30, 92.05, 0.5070, 4.876),
    "USegNet-DS-HAS-Ctx": (96.05, 91.74, 92.42, 0.4793, 4.609),
}
"""The paper's Table 1 (50 real test volumes): DSC %, Conf %, Jacc %, Adb mm, Hdb mm, in the paper's row order."""

PUBLISHED_TABLE2: dict[str, tuple[float, float, float, float, float]] = {
    "SAM-1": (95.44, 90.42, 91.30, 0.5556, 4.939),
    "SAM-12": (95.60, 90.75, 91.59, 0.5380, 5.149),
    "UAM-1": (95.49, 90.51, 91.39, 0.5374, 4.832),
    "UAM-12": (95.54, 90.62, 91.48, 0.5350, 5.024),
}
"""The rows of the paper's Table 2 that are not in Table 1, in the same columns."""

TABLE1_VARIANTS: tuple[str, ...] = tuple(PUBLISHED_TABLE1)
"""The rows of the paper's Table 1, in its order."""

# (metrics.csv / metrics_summary.json key, column title, scale to the paper's unit, decimals)
_COLUMNS: tuple[tuple[str, str, float, int], ...] = (
    ("dice", "DSC [%]", 100.0, 2),
    ("conformity", "Conf [%]", 100.0, 2),
    ("jaccard", "Jacc [%]", 100.0, 2),
    ("adb_mm", "Adb [mm]", 1.0, 3),
    ("hdb_mm", "Hdb [mm]", 1.0, 2),
)

_PAIRED_METRICS = ("dice", "adb_mm")  # the columns also given as a paired change against the base model
_PUBLISHED = {**PUBLISHED_TABLE1, **PUBLISHED_TABLE2}

_CONFIGS = BUNDLE_ROOT / "configs"
SUMMARY_NAME = "metrics_summary.json"
METRICS_NAME = "metrics.csv"
TRAINING_RECORD_NAME = "training.json"


@dataclass(frozen=True)
class AblationRecipe:
    """What every network of the ablation is trained and tested on.

    Attributes:
        num_train: training phantoms (seeds ``0 .. num_train - 1``).
        num_val: validation phantoms, the seeds after the training ones.
        num_test: held-out test phantoms, seeds from ``evaluate.json``'s ``test_seed`` (100000) on.
        epochs_per_level: epochs of each auto-context level (one level for the others).
        patch_size: edge of p-USegNet's cubic patches, in network-input voxels.
        settings: further ``train.json``/``evaluate.json`` keys and their values for every network,
            e.g. ``{"features": [32, 64, 64, 64]}`` or ``{"keep_largest_component": False}``.
        evaluation_name: the folder of each run that receives its evaluation.
    """

    num_train: int = 40
    num_val: int = 4
    num_test: int = 20
    epochs_per_level: int = 10
    patch_size: int = 24
    settings: Mapping[str, Any] = field(default_factory=dict)
    evaluation_name: str = "evaluation"

    def variant_settings(self, variant: str) -> dict[str, Any]:
        """The ``train.json`` keys that build ``variant`` with this recipe's settings."""
        settings = {**self.settings, "variant": variant}
        if VARIANTS[variant].sliding_window:
            settings["patch_size"] = [self.patch_size] * 3
        return settings

    def variant_overrides(self, variant: str) -> list[str]:
        """:meth:`variant_settings` as bundle command-line arguments.

        Each value is written as a Python literal (``repr``): the bundle's command line (``fire``)
        parses those, so that ``False`` arrives as a boolean, where JSON's ``false`` would be a string.
        """
        return [arg for key, value in self.variant_settings(variant).items() for arg in (f"--{key}", repr(value))]

    def train_command(self, variant: str, run_dir: Path) -> list[str]:
        """The ``monai.bundle run training`` command line of ``variant``, writing to ``run_dir``."""
        return [
            sys.executable, "-m", "monai.bundle", "run", "training",
            "--meta_file", str(_CONFIGS / "metadata.json"),
            "--config_file", str(_CONFIGS / "train.json"),
            "--logging_file", str(_CONFIGS / "logging.conf"),
            *self.variant_overrides(variant),
            "--output_dir", str(run_dir),
            "--phantom#num_train", str(self.num_train),
            "--phantom#num_val", str(self.num_val),
            "--epochs_per_level", str(self.epochs_per_level),
            "--val_interval", str(self.epochs_per_level),
        ]  # fmt: skip

    def evaluate_command(self, variant: str, run_dir: Path) -> list[str]:
        """The ``monai.bundle run evaluating`` command line of ``variant``'s trained weights."""
        configs = [str(_CONFIGS / "train.json"), str(_CONFIGS / "evaluate.json")]
        return [
            sys.executable, "-m", "monai.bundle", "run", "evaluating",
            "--meta_file", str(_CONFIGS / "metadata.json"),
            "--config_file", json.dumps(configs),
            "--logging_file", str(_CONFIGS / "logging.conf"),
            *self.variant_overrides(variant),
            "--ckpt_path", str(run_dir / "models" / "model.pt"),
            "--phantom#num_val", str(self.num_test),
            "--output_dir", str(run_dir / self.evaluation_name),
        ]  # fmt: skip


def _run_logged(command: Sequence[str], log_path: Path) -> tuple[int, float]:
    """Run ``command`` with its output in ``log_path``; return its exit status and wall time (s)."""
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    return status, time.monotonic() - start


def parameter_count(variant: str, recipe: AblationRecipe) -> int:
    """Parameters of ``variant`` as ``train.json`` builds it with ``recipe``'s settings."""
    parser = ConfigParser()
    parser.read_config(str(_CONFIGS / "train.json"))
    parser.update(recipe.variant_settings(variant))
    return sum(parameter.numel() for parameter in parser.get_parsed_content("network_def").parameters())


def run_variant(variant: str, recipe: AblationRecipe, run_dir: Path) -> str | None:
    """Train ``variant`` in ``run_dir`` unless it was trained there, then evaluate it.

    A finished training is reused only if its recorded recipe has the same phantom counts, epochs
    and, for the patch network, patch size (the ``settings`` are not compared).

    Returns:
        ``None``, or what failed.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    record_path = run_dir / TRAINING_RECORD_NAME
    if record_path.exists():
        trained = json.loads(record_path.read_text(encoding="utf-8"))["recipe"]
        compared = ["num_train", "num_val", "epochs_per_level"]
        if VARIANTS[variant].sliding_window:
            compared.append("patch_size")
        for name in compared:
            if trained[name] != getattr(recipe, name):
                return (
                    f"trained in {run_dir} with {name}={trained[name]}, not {getattr(recipe, name)}: "
                    "give another --out, or delete that folder to train again"
                )
    else:
        failure = _train(variant, recipe, run_dir)
        if failure is not None:
            return failure
    status, _ = _run_logged(recipe.evaluate_command(variant, run_dir), run_dir / f"{recipe.evaluation_name}.log")
    if status != 0:
        return f"evaluation exited with status {status}, see {run_dir / f'{recipe.evaluation_name}.log'}"
    return None


def _train(variant: str, recipe: AblationRecipe, run_dir: Path) -> str | None:
    """Train ``variant`` in ``run_dir`` and record it in ``training.json``; return ``None`` or what failed."""
    status, seconds = _run_logged(recipe.train_command(variant, run_dir), run_dir / "train.log")
    if status != 0:
        return f"training exited with status {status}, see {run_dir / 'train.log'}"
    record = {
        "variant": variant,
        "parameters": parameter_count(variant, recipe),
        "train_seconds": round(seconds, 1),
        "recipe": asdict(recipe),
    }
    with atomic_output(run_dir / TRAINING_RECORD_NAME) as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return None


def _mean_sd(summary: Mapping[str, Mapping[str, float | None]], key: str, scale: float, decimals: int) -> str:
    figure = summary[key]
    if figure["mean"] is None:
        return "–"
    sd = "" if figure["sd"] is None else f" ± {figure['sd'] * scale:.{decimals}f}"
    return f"{figure['mean'] * scale:.{decimals}f}{sd}"


def comparison_table(out_dir: Path, variants: Sequence[str], evaluation_name: str = "evaluation") -> str:
    """The markdown of ``table1.md``: our figures per variant, the paired change of DSC and Adb, the paper's.

    Rows follow the paper's order (:data:`~fetalbiometry.networks.VARIANTS`); variants without an
    evaluation summary in ``out_dir`` are listed as not run.
    """
    titles = [title for _, title, _, _ in _COLUMNS]
    lines = [
        "| network | params | training (min) | " + " | ".join(titles)
        + f" | ΔDSC vs {BASE_VARIANT} [points] | ΔAdb vs {BASE_VARIANT} [mm] | paper DSC [%] | paper Adb [mm] |",
        "|---|---:|---:|" + "---:|" * (len(_COLUMNS) + 4),
    ]  # fmt: skip
    base_dir = out_dir / BASE_VARIANT / evaluation_name
    paired_columns = [column for column in _COLUMNS if column[0] in _PAIRED_METRICS]
    base = None  # {metric: {case: value}} of the base model, read once for every row
    if (base_dir / SUMMARY_NAME).exists():
        base = {metric: read_per_case(base_dir / METRICS_NAME, metric) for metric in _PAIRED_METRICS}
    for variant in sorted(variants, key=list(VARIANTS).index):
        run_dir = out_dir / variant
        published = _PUBLISHED.get(variant)
        paper = f"{published[0]:.2f} | {published[3]:.4f}" if published else "– | –"
        summary_path = run_dir / evaluation_name / SUMMARY_NAME
        if not summary_path.exists():
            lines.append(f"| {variant} | – | – | " + "not run | " * len(_COLUMNS) + f"– | – | {paper} |")
            continue
        summary = json.loads(summary_path.read_text(encoding="utf-8"))["metrics"]
        record = json.loads((run_dir / TRAINING_RECORD_NAME).read_text(encoding="utf-8"))
        cells = " | ".join(_mean_sd(summary, key, scale, decimals) for key, _, scale, decimals in _COLUMNS)
        changes = ["–", "–"]
        if base is not None and variant != BASE_VARIANT:
            for index, (metric, _, scale, decimals) in enumerate(paired_columns):
                network = read_per_case(run_dir / evaluation_name / METRICS_NAME, metric)
                changes[index] = paired_change(network, base[metric]).describe(scale, decimals)
        minutes = record["train_seconds"] / 60.0
        lines.append(
            f"| {variant} | {record['parameters']:,} | {minutes:.1f} | {cells} | "
            f"{changes[0]} | {changes[1]} | {paper} |"
        )
    return "\n".join(lines) + "\n"


def table_path(out_dir: Path, evaluation_name: str) -> Path:
    """``out_dir/table1.md`` for the default evaluation, ``out_dir/table1-NAME.md`` for another."""
    default = AblationRecipe.evaluation_name
    return out_dir / ("table1.md" if evaluation_name == default else f"table1-{evaluation_name}.md")


def _setting(text: str) -> tuple[str, Any]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=JSON, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{key}: the value {value!r} is not JSON ({error.msg})") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fetalbiometry.segment3d.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs and of table1.md")
    parser.add_argument("--variants", nargs="+", default=list(TABLE1_VARIANTS), choices=list(VARIANTS), metavar="NAME")
    defaults = AblationRecipe()
    parser.add_argument("--num-train", type=int, default=defaults.num_train)
    parser.add_argument("--num-val", type=int, default=defaults.num_val)
    parser.add_argument("--num-test", type=int, default=defaults.num_test)
    parser.add_argument("--epochs-per-level", type=int, default=defaults.epochs_per_level)
    parser.add_argument("--patch-size", type=int, default=defaults.patch_size, help="p-USegNet's patch edge")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        type=_setting,
        default=[],
        metavar="KEY=JSON",
        help="a train.json key for every network, e.g. --set 'features=[32,64,64,64]' (repeatable)",
    )
    parser.add_argument(
        "--evaluation",
        default=defaults.evaluation_name,
        metavar="NAME",
        help="folder of each run for its evaluation (default: %(default)s); the table is table1-NAME.md",
    )
    parser.add_argument("--report-only", action="store_true", help="write the table from the runs already in --out")
    args = parser.parse_args(argv)
    counts = (args.num_train, args.num_val, args.num_test, args.epochs_per_level, args.patch_size)
    if min(counts) < 1:
        parser.error("--num-train, --num-val, --num-test, --epochs-per-level and --patch-size must be at least 1")
    recipe = AblationRecipe(*counts, settings=dict(args.settings), evaluation_name=args.evaluation)
    failures = {}
    for variant in [] if args.report_only else args.variants:
        if (args.out / variant / recipe.evaluation_name / SUMMARY_NAME).exists():
            print(f"{variant}: already evaluated in {args.out / variant}, kept")
            continue
        print(f"{variant}: training and evaluating in {args.out / variant}", flush=True)
        failure = run_variant(variant, recipe, args.out / variant)
        if failure is not None:
            failures[variant] = failure
            print(f"{variant}: {failure}", file=sys.stderr)
    table = comparison_table(args.out, args.variants, recipe.evaluation_name)
    with atomic_output(table_path(args.out, recipe.evaluation_name)) as temporary:
        temporary.write_text(table, encoding="utf-8")
    print(table, end="")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
