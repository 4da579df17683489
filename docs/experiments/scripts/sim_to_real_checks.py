"""The checks behind docs/experiments/2026-12-05-sim-to-real-amniotic-sac.md,
docs/experiments/2026-12-05-sim-to-real-scalp-first-trimester.md,
docs/experiments/2026-12-05-sim-to-real-skull-sides-early-heads.md,
docs/experiments/2026-12-05-sim-to-real-skull-band.md,
docs/experiments/2026-12-05-sim-to-real-intensity-augmentation.md and the realism-noise paragraph
of docs/phantoms.md, which no other repository command prints.

``splits``: an HC18 evaluation's figures (``per_image.csv`` of ``evaluating`` on all 799 frames)
on the validation frames of the HC18 subject split, on the other frames and on the test split:

    python docs/experiments/scripts/sim_to_real_checks.py splits out/s2r-v3-hc18 out/s2r-v4-hc18

``sizes``: the same evaluation's ADF and DF by reference HC (mm), and how much of the mean ADF the
frames off by more than 10 mm make:

    python docs/experiments/scripts/sim_to_real_checks.py sizes out/s2r-v2-hc18

``framing``: how much of HC18's 540 rows its heads span (the reference HC's mean diameter), for
the heads under and over 100 mm, from its CSV:

    python docs/experiments/scripts/sim_to_real_checks.py framing

``realism``: the polar phantoms' realism row (``fetalbiometry.data.realism``) for head planes of
seeds 0-89 and 1000-1089 and, where the generator has it, seeds 0-89 with the amniotic sac off
(the same random draws):

    python docs/experiments/scripts/sim_to_real_checks.py realism --hc18 ../shared/data/hc18

``skull``: where the mean skull echo peaks and falls against the outline
(``realism.skull_echo_position``) by head circumference, on the whole outline and by part of the head
(``realism.HEAD_PARTS``), on 200 HC18 frames (every fourth) and on 60 polar head planes (seed i at
10 + i / 2 weeks); ``--scalp-level L`` images the phantoms with the scalp at display level L (150:
as soft tissue, before 0.13.0; 130: 0.13.0's), all else as now. The figures of the 0.13.0 entry
(2026-12-05-sim-to-real-scalp-first-trimester.md) came from this check at commit bfaec57 (whole
outline only, planes of seeds 0-39 at 20-38 weeks):

    python docs/experiments/scripts/sim_to_real_checks.py skull [--scalp-level 150]

``surroundings``: the grey levels 3-10 mm outside the head (``realism.REGIONS_MM["outside"]``),
10th, 25th, 50th and 75th percentiles, on 30 HC18 frames (every fourth) of each of three head sizes
and on 16 polar head planes of each of three ranges of age (seed i at evenly spaced ages):

    python docs/experiments/scripts/sim_to_real_checks.py surroundings

``inner``: how far a model's HC follows the inner reach of the skull echo: its DF on 24 polar head
planes of 20-34 weeks (seeds 300000-300023), as drawn and with the skull 0.8 mm thicker inwards (the
outline, the truth, unchanged):

    python docs/experiments/scripts/sim_to_real_checks.py inner --model MonaiBundle/models/hc_model_synthetic_only.pt

``outline``: the same peak and fall against the outline a model draws (its fitted ellipse), on the
same 200 HC18 frames and on the polar head planes of seeds 100000-100039 (not trained on): where
the model puts the outline against the echo on real frames and on phantoms; then, on the HC18
frames, against the sonographers' ellipse and the model's, and on the phantoms against their true
outline, for the top and bottom of the head (seen from the ellipse's centre within 45° of the
image's vertical, where the beam meets the skull square on) and for its sides; each line also gives
the profile's grey level at its peak:

    python docs/experiments/scripts/sim_to_real_checks.py outline --model MonaiBundle/models/hc_model_synthetic_only.pt

``overlay``: six HC18 heads of 240 mm and more (every twelfth), the sonographers' ellipse (green)
and a model's (red), written to ``--out``:

    python docs/experiments/scripts/sim_to_real_checks.py overlay --model MonaiBundle/models/hc_model_synthetic_only.pt --out docs/images/sim-to-real-late-heads.png
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
from pathlib import Path

import numpy as np
import SimpleITK as sitk

import fetalbiometry.data.anatomy as anatomy
from fetalbiometry.biometry.ellipse import ramanujan_circumference
from fetalbiometry.data.hc18 import read_annotation, read_frame, training_records
from fetalbiometry.data.realism import (
    HEAD_PARTS,
    PROFILE_EDGES_MM,
    Frame,
    head_part,
    hc18_frames,
    measure,
    region_values,
    skull_echo_position,
    skull_profile,
)
from fetalbiometry.data.synthetic import make_plane
from fetalbiometry.planes2d.commands import measure_frame
from fetalbiometry.planes2d.evaluation import read_evaluation, summarize_planes
from fetalbiometry.planes2d.predictor import load_plane_predictor
from fetalbiometry.planes2d.training import hc18_splits

_CENTRES_MM = (PROFILE_EDGES_MM[:-1] + PROFILE_EDGES_MM[1:]) / 2.0  # the profile's bins
_ROW_KEYS = ("snr", "skull_median", "brain_median", "outside_median", "skull_w1", "brain_w1", "outside_w1")


def splits(evaluation_dirs: list[Path], hc18_dir: Path) -> None:
    parts = hc18_splits(hc18_dir, 0.25, 0.1, 0)
    validation = {record.filename for record in parts["validation"]}
    test = {record.filename for record in parts["test"]}
    for directory in evaluation_dirs:
        results = read_evaluation(directory / "per_image.csv")
        for part, keep in (("validation", validation.__contains__), ("not validation", lambda n: n not in validation), ("test", test.__contains__)):
            summary = summarize_planes([result for result in results if keep(result.name)])
            adf, dsc, df, hd = (summary[key] for key in ("adf_mm", "dsc_percent", "df_mm", "hd_mm"))
            print(
                f"{directory} {part}: {summary['measured']} / {summary['images']} measured, "
                f"ADF {adf['mean']:.2f} ± {adf['sd']:.2f} mm (median {adf['median']:.2f}, worst {adf['max']:.1f}), "
                f"DSC {dsc['mean']:.2f} ± {dsc['sd']:.2f} %, DF {df['mean']:.2f} ± {df['sd']:.2f} mm, "
                f"HD {hd['mean']:.2f} ± {hd['sd']:.2f} mm"
            )


def sizes(evaluation_dirs: list[Path]) -> None:
    for directory in evaluation_dirs:
        measured = [result for result in read_evaluation(directory / "per_image.csv") if result.adf_mm is not None]
        for low, high in ((0, 70), (70, 90), (90, 120), (120, 175), (175, 260), (260, 400)):
            subset = [result for result in measured if low <= result.reference_mm < high]
            adf = sum(result.adf_mm for result in subset) / len(subset)
            df = sum(result.df_mm for result in subset) / len(subset)
            print(f"{directory} HC {low}-{high} mm: {len(subset)} frames, mean ADF {adf:.1f} mm, mean DF {df:+.1f} mm")
        gross = [result.adf_mm for result in measured if result.adf_mm > 10.0]
        print(f"{directory}: {len(gross)} frames off by > 10 mm make {sum(gross) / len(measured):.1f} mm of the mean ADF")


def framing(hc18_dir: Path) -> None:
    records = training_records(hc18_dir)
    for name, keep in (("HC < 100 mm", lambda hc: hc < 100.0), ("HC >= 100 mm", lambda hc: hc >= 100.0)):
        fill = [r.hc_mm / math.pi / r.pixel_size_mm / 540.0 for r in records if keep(r.hc_mm)]
        print(f"{name}: {len(fill)} frames span {min(fill):.2f}-{max(fill):.2f} of the rows (median {statistics.median(fill):.2f})")


def _polar_planes(seeds: range) -> list[Frame]:
    planes = (make_plane("head", seed, (540, 800), image_model="polar") for seed in seeds)
    return [Frame(sitk.GetArrayFromImage(p.image), float(p.truth["pixel_size_mm"]), p.structure) for p in planes]


def realism(hc18_dir: Path) -> None:
    reference = measure("HC18", hc18_frames(hc18_dir, 100))
    runs = [("seeds 0-89", range(90)), ("seeds 1000-1089", range(1000, 1090))]
    for name, seeds in runs:
        row = measure(name, _polar_planes(seeds)).row(reference)
        print(name, {key: round(float(row[key]), 2) for key in _ROW_KEYS})
    if hasattr(anatomy, "_SAC_PROBABILITY_AT_14_WEEKS"):
        anatomy._SAC_PROBABILITY_AT_14_WEEKS = 0.0  # the same draws, no sac drawn
        row = measure("no sac", _polar_planes(range(90))).row(reference)
        print("seeds 0-89, sac off", {key: round(float(row[key]), 2) for key in _ROW_KEYS})


def _skull_by_size(name: str, frames_and_hc: list[tuple[Frame, float]]) -> None:
    bins = ((0, 120), (120, 175), (175, 260), (260, 400))
    for low, high in bins:
        profiles = [skull_profile(frame) for frame, hc in frames_and_hc if low <= hc < high]
        if profiles:
            profile_sum, profile_count = (sum(parts) for parts in zip(*profiles))
            peak, fall = skull_echo_position(profile_sum, profile_count)
            profile = profile_sum / np.maximum(profile_count, 1)
            inner = np.mean(profile[(_CENTRES_MM > -3.0) & (_CENTRES_MM < -2.0)])
            print(f"{name} HC {low}-{high} mm: {len(profiles)} frames, peak {peak:+.2f} mm (grey {np.max(profile):.0f}), "
                  f"fall {fall:+.2f} mm, grey 2-3 mm inside {inner:.0f}")


def skull(hc18_dir: Path, scalp_level: float | None) -> None:
    records = training_records(hc18_dir)[::4]
    hc18 = [(Frame(read_frame(r), r.pixel_size_mm, read_annotation(r).ellipse_px), r.hc_mm) for r in records]
    if scalp_level is not None:
        anatomy.ECHO_LEVEL["scalp"] = scalp_level
    planes = (make_plane("head", seed, (540, 800), ga_weeks=10.0 + seed / 2.0) for seed in range(60))
    phantoms = [Frame(sitk.GetArrayFromImage(p.image), float(p.truth["pixel_size_mm"]), p.structure) for p in planes]
    sized = [(f, ramanujan_circumference(f.ellipse.a * f.pixel_mm, f.ellipse.b * f.pixel_mm)) for f in phantoms]
    name = f"phantoms (scalp level {anatomy.ECHO_LEVEL['scalp']:g})"
    for part in (None, *HEAD_PARTS):
        for source, frames in (("HC18", hc18), (name, sized)):
            kept = frames if part is None else [(head_part(f, part), hc) for f, hc in frames]
            _skull_by_size(source if part is None else f"{source} {part}", kept)


def surroundings(hc18_dir: Path) -> None:
    def show(name: str, frames: list[Frame]) -> None:
        outside = np.concatenate([region_values(frame)["outside"] for frame in frames])
        print(f"{name}: {len(frames)} frames, outside p10 / p25 / p50 / p75:", np.percentile(outside, [10, 25, 50, 75]).round(0))

    records = training_records(hc18_dir)
    for low, high in ((0, 100), (100, 175), (175, 400)):
        chosen = [r for r in records if low <= r.hc_mm < high][::4][:30]
        show(f"HC18 HC {low}-{high} mm", [Frame(read_frame(r), r.pixel_size_mm, read_annotation(r).ellipse_px) for r in chosen])
    for low, high in ((10, 14), (18, 24), (30, 40)):
        planes = [make_plane("head", seed, (540, 800), ga_weeks=low + (high - low) * seed / 16) for seed in range(16)]
        show(f"phantoms {low}-{high} weeks", [Frame(sitk.GetArrayFromImage(p.image), float(p.truth["pixel_size_mm"]), p.structure) for p in planes])


def inner(model: Path) -> None:
    predictor = load_plane_predictor(model, device="cpu")
    from_seed = anatomy.HeadAnatomy.from_seed
    for extra_mm in (0.0, 0.8):

        def thicker(seed: int, *args, **kwargs) -> anatomy.HeadAnatomy:
            head = from_seed(seed, *args, **kwargs)
            return dataclasses.replace(head, skull_thickness_mm=head.skull_thickness_mm + extra_mm)

        anatomy.HeadAnatomy.from_seed = thicker  # make_plane thickens the planes' skull further, by its factor
        errors = []
        for seed in range(24):
            plane = make_plane("head", 300000 + seed, (540, 800), ga_weeks=20.0 + 0.6 * seed)
            pixel_mm = float(plane.truth["pixel_size_mm"])
            measured = measure_frame(predictor, sitk.GetArrayFromImage(plane.image), pixel_mm).measurement
            if measured is not None:
                errors.append(measured.ellipse.to_mm(pixel_mm).circumference - plane.truth["hc_mm"])
        print(f"{model} skull +{extra_mm} mm: {len(errors)} / 24 measured, DF {np.mean(errors):+.2f} ± {np.std(errors):.2f} mm")
    anatomy.HeadAnatomy.from_seed = from_seed


def outline(hc18_dir: Path, model: Path) -> None:
    predictor = load_plane_predictor(model, device="cpu")

    def drawn(images: list[tuple[np.ndarray, float, float]]) -> list[tuple[Frame, float] | None]:
        """(frame with the model's ellipse, reference HC) of each (image, pixel size, HC); None if unmeasured."""
        measured = [(measure_frame(predictor, image, pixel_mm).measurement, image, pixel_mm, hc) for image, pixel_mm, hc in images]
        return [None if m is None else (Frame(image, pixel_mm, m.ellipse), hc) for m, image, pixel_mm, hc in measured]

    records = training_records(hc18_dir)[::4]
    hc18_drawn = drawn([(read_frame(r), r.pixel_size_mm, r.hc_mm) for r in records])
    hc18_model = [item for item in hc18_drawn if item is not None]
    hc18_reference = [
        (Frame(item[0].image, item[0].pixel_mm, read_annotation(r).ellipse_px), r.hc_mm)
        for r, item in zip(records, hc18_drawn)
        if item is not None
    ]
    _skull_by_size("HC18, model's outline", hc18_model)
    phantoms = _polar_planes(range(100000, 100040))
    sizes_mm = [ramanujan_circumference(f.ellipse.a * f.pixel_mm, f.ellipse.b * f.pixel_mm) for f in phantoms]
    phantoms_drawn = drawn([(f.image, f.pixel_mm, hc) for f, hc in zip(phantoms, sizes_mm)])
    _skull_by_size("phantoms, model's outline", [item for item in phantoms_drawn if item is not None])
    _skull_by_size("phantoms, true outline", list(zip(phantoms, sizes_mm)))
    for part in HEAD_PARTS:
        for name, frames in (("HC18 {}, sonographers' outline", hc18_reference), ("HC18 {}, model's outline", hc18_model),
                             ("phantoms {}, true outline", list(zip(phantoms, sizes_mm)))):
            _skull_by_size(name.format(part), [(head_part(f, part), hc) for f, hc in frames])


def overlay(hc18_dir: Path, model: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse as EllipsePatch

    predictor = load_plane_predictor(model, device="cpu")
    records = [r for r in training_records(hc18_dir) if r.hc_mm >= 240.0][::12][:6]
    figure, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    for ax, record in zip(axes.flat, records):
        image = read_frame(record)
        measured = measure_frame(predictor, image, record.pixel_size_mm).measurement
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        title = f"{record.filename}, HC {record.hc_mm:.0f} mm"
        drawn = [(read_annotation(record).ellipse_px, "lime")]
        if measured is not None:
            drawn.append((measured.ellipse, "red"))
            title += f", DF {measured.ellipse.to_mm(record.pixel_size_mm).circumference - record.hc_mm:+.1f} mm"
        for ellipse, colour in drawn:
            centre, width, height = (ellipse.cx, ellipse.cy), 2 * ellipse.a, 2 * ellipse.b
            ax.add_patch(EllipsePatch(centre, width, height, angle=math.degrees(ellipse.theta), fill=False, color=colour, lw=0.7))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(out, dpi=60)
    print(f"wrote {out}")


_CHECKS = {  # name: the check, run with the parsed arguments
    "splits": lambda args: splits(args.evaluation_dirs, args.hc18),
    "sizes": lambda args: sizes(args.evaluation_dirs),
    "framing": lambda args: framing(args.hc18),
    "realism": lambda args: realism(args.hc18),
    "skull": lambda args: skull(args.hc18, args.scalp_level),
    "surroundings": lambda args: surroundings(args.hc18),
    "inner": lambda args: inner(args.model),
    "outline": lambda args: outline(args.hc18, args.model),
    "overlay": lambda args: overlay(args.hc18, args.model, args.out),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=tuple(_CHECKS))
    parser.add_argument("evaluation_dirs", nargs="*", type=Path)
    parser.add_argument("--hc18", type=Path, default=Path(os.environ.get("HC18_DIR", "../shared/data/hc18")))
    parser.add_argument("--scalp-level", type=float, default=None)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.check in ("inner", "outline", "overlay") and args.model is None:
        parser.error(f"{args.check} needs --model")
    if args.check == "overlay" and args.out is None:
        parser.error("overlay needs --out")
    _CHECKS[args.check](args)


if __name__ == "__main__":
    main()
