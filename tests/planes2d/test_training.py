"""Training the 2D biometry networks: the bundle's network configs, synthetic planes, plane datalists.

The bundle runs in-process (``monai.bundle.run``, what ``python -m monai.bundle run`` calls) at tiny
sizes: two HC18 images or three phantoms, one epoch, no offline augmentation.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn as nn
from monai.bundle import ConfigParser
from monai.bundle import run as run_bundle
from monai.transforms import NormalizeIntensityd

from fetalbiometry.biometry import Ellipse, PLANE_CLASSES, Rectangle, ellipse_to_mask, ramanujan_circumference
from fetalbiometry.biometry.calipers import ellipse_from_diameters
from fetalbiometry.data import hc18
from fetalbiometry.data.hc18_dataset import (
    MTLN_AUGMENTATIONS,
    HC18PlaneDataset,
    affine_rectangle,
    letterbox,
    make_plane_sample,
    structure_area_fractions,
    structure_to_mask,
)
from fetalbiometry.data.plane_dataset import SyntheticPlaneDataset, read_plane_datalist
from fetalbiometry.data.synthetic import make_plane
from fetalbiometry.errors import InputError
from fetalbiometry.planes2d.losses import MultiTaskUNetLoss, regression_loss
from fetalbiometry.planes2d.data import CombinedPlanes, DatalistPlanes, HC18Planes, PhantomPlanes, SyntheticPlanes
from fetalbiometry.planes2d.evaluation import PlaneCase, datalist_case, evaluate_case
from fetalbiometry.planes2d.predictor import PlanePredictor, load_plane_predictor, network_outputs
from fetalbiometry.planes2d.training import PlaneLoss, hc18_splits
from fetalbiometry.planes2d.transforms import BoundaryWeightMapd

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "MonaiBundle" / "configs"
HC18_DIR = Path(os.environ.get("HC18_DIR", REPO / ".." / "shared" / "data" / "hc18"))
IDENTITY_ONLY = "$(fetalbiometry.data.hc18_dataset.IDENTITY,)"
TINY_MULTITASK = [8, 8, 16, 16, 16, 16]
TINY_SYNTHETIC = {"training": 3, "validation": 3, "test": 3}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks run faster on one thread than on threads that wait for a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bundle(run_id: str, network: str | list[str], output_dir: Path, epochs: int = 1, **override) -> None:
    """``python -m monai.bundle run RUN_ID`` with train.json (+ evaluate.json) and the network file(s)."""
    files = [CONFIGS / "biometry" / "train.json"]
    files += [CONFIGS / "biometry" / "evaluate.json"] if run_id == "evaluating" else []
    files += [CONFIGS / "biometry" / name for name in ([network] if isinstance(network, str) else network)]
    run_bundle(
        run_id,
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=[str(path) for path in files],
        logging_file=str(CONFIGS / "logging.conf"),
        output_dir=str(output_dir),
        epochs=epochs,
        batch_size=2,
        **override,
    )


def needs_hc18() -> None:
    if not (HC18_DIR / hc18.TRAINING_CSV).is_file():
        pytest.skip(f"HC18 not found at {HC18_DIR} (set HC18_DIR)")


# --- the network files, trained and evaluated as users run them ------------------------------------


@pytest.mark.parametrize(
    "network, overrides",
    [
        ("unet.json", {"features": [8, 8, 16, 16, 16, 8]}),
        ("mtln.json", {"features": [8, 8, 16, 16, 16]}),
        ("regression.json", {}),
    ],
)
def test_hc18_network_trains_evaluates_and_loads(tmp_path, network, overrides):
    needs_hc18()
    hc18_args = {"hc18_dir": str(HC18_DIR), "max_images": 2, "augmentations": IDENTITY_ONLY, **overrides}
    bundle("training", network, tmp_path, **hc18_args)
    model = tmp_path / "models" / "model.pt"
    assert model.is_file()
    bundle("evaluating", network, tmp_path, **hc18_args)
    summary = json.loads((tmp_path / "evaluation" / "summary.json").read_text(encoding="utf-8"))
    assert summary["images"] == 2
    predictor = load_plane_predictor(model, network, device="cpu", **overrides)
    assert predictor.spatial_size == ((128, 128) if network == "regression.json" else (160, 256))
    if network == "regression.json":
        # inference.json sets hc_max to 1.0: the training set's maximum comes with the weights
        expected = HC18PlaneDataset(hc18_splits(HC18_DIR)["training"][:2], (128, 128)).max_hc_px()
        assert float(predictor.network.hc_max) == pytest.approx(expected, rel=1e-6) and expected > 100.0
        assert predictor.zscore and summary["dsc_percent"] is None and summary["adf_mm"] is not None
    else:
        assert summary["measured"] + len(summary["no_measurement"]) == 2


def test_multitask_unet_trains_on_synthetic_planes(tmp_path):
    args = {"features": TINY_MULTITASK, "synthetic_lengths": TINY_SYNTHETIC}
    bundle("training", "multitask_unet.json", tmp_path, **args)
    bundle("evaluating", "multitask_unet.json", tmp_path, **args)
    rows = (tmp_path / "evaluation" / "per_image.csv").read_text(encoding="utf-8").splitlines()
    # the test planes are the held-out seeds 200000.. in class order
    expected = [[f"{kind}-{200000 + index}", kind] for index, kind in enumerate(PLANE_CLASSES)]
    assert [row.split(",")[:2] for row in rows[1:]] == expected
    model = tmp_path / "models" / "model.pt"
    predictor = load_plane_predictor(model, "multitask_unet.json", device="cpu", features=TINY_MULTITASK)
    assert predictor.network.size_divisor == 32
    frame = sitk.GetArrayFromImage(make_plane("femur", 7).image)
    assert predictor.predict(frame).plane in PLANE_CLASSES


def test_synthetic_only_mtln_trains_without_hc18_and_is_measured_on_it(tmp_path):
    """``mtln_synthetic_only.json``: phantom heads through the HC18 recipe; HC18 is only the test set."""
    networks = ["mtln.json", "mtln_synthetic_only.json", "intensity_augmentation.json"]
    lengths = {"training": 2, "validation": 1, "test": 0}
    args = {"features": [8, 8, 16, 16, 16], "phantom_lengths": lengths, "frame_shape": [135, 200]}
    args |= {"augmentations": IDENTITY_ONLY, "label_supersampling": 2, "cache_workers": 1, "ema_decay": 0.9}
    bundle("training", networks, tmp_path, hc18_dir=str(tmp_path / "no-hc18-here"), **args)
    assert (tmp_path / "models" / "model.pt").is_file()
    needs_hc18()
    bundle("evaluating", networks, tmp_path, hc18_dir=str(HC18_DIR), max_images=2, **args)
    summary = json.loads((tmp_path / "evaluation" / "summary.json").read_text(encoding="utf-8"))
    assert summary["images"] == 2
    rows = (tmp_path / "evaluation" / "per_image.csv").read_text(encoding="utf-8").splitlines()
    assert all(row.split(",")[0].endswith(".png") for row in rows[1:])


def test_intensity_augmentation_changes_the_training_images_only_and_keeps_their_range():
    """``intensity_augmentation.json``: blur, gamma, bias field, gain and noise drawn per fetch, labels as cached."""
    files = ["train.json", "mtln.json", "mtln_synthetic_only.json"]

    def parsed(extra: list[str]) -> ConfigParser:
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / "biometry" / name) for name in files + extra])
        parser.update({"phantom_lengths": {"training": 2, "validation": 0, "test": 0}, "augmentations": IDENTITY_ONLY})
        return parser

    plain = parsed([]).get_parsed_content("train_loader").dataset
    augmented = parsed(["intensity_augmentation.json"]).get_parsed_content("train_loader").dataset
    cached = [plain[index] for index in range(len(plain))]  # no transform: the cached samples themselves
    draws = [[augmented[index] for index in range(len(augmented))] for _ in range(8)]
    changed = 0
    for samples in draws:
        for sample, original in zip(samples, cached):
            image = torch.as_tensor(sample["image"])
            assert image.shape == original["image"].shape and 0.0 <= float(image.min()) <= float(image.max()) <= 1.0
            np.testing.assert_array_equal(np.asarray(sample["label"]), np.asarray(original["label"]))
            changed += not np.allclose(image.numpy(), original["image"])
    assert 0 < changed < len(cached) * len(draws)  # each transform has its probability: some fetches stay as cached


def test_mtln_with_phantoms_trains_on_hc18_frames_and_phantom_heads(tmp_path):
    """``mtln_with_phantoms.json``: the HC18 training frames and phantom heads, HC18 validation."""
    needs_hc18()
    files = [CONFIGS / "biometry" / name for name in ("train.json", "mtln.json", "mtln_with_phantoms.json")]
    parser = ConfigParser()
    parser.read_config([str(path) for path in files])
    parser.update({"hc18_dir": str(HC18_DIR), "max_images": 2, "phantom_planes": 3, "augmentations": IDENTITY_ONLY})
    hc18_samples, phantom_samples = (len(parser.get_parsed_content(key)) for key in ("hc18_samples", "phantom_samples"))
    assert hc18_samples >= 2 and phantom_samples >= 3  # + second-look windows of small heads
    assert len(parser.get_parsed_content("train_dataset")) == hc18_samples + phantom_samples
    assert [case.name for case in parser.get_parsed_content("validation_cases")] == [
        record.filename for record in hc18_splits(HC18_DIR)["validation"][:2]
    ]


def test_all_frames_trains_on_every_hc18_frame_without_validation(tmp_path):
    """``all_frames.json``: the final training on all of HC18's frames, the last epoch's weights kept."""
    needs_hc18()
    networks = ["mtln.json", "all_frames.json"]
    files = [CONFIGS / "biometry" / "train.json", *(CONFIGS / "biometry" / name for name in networks)]
    parser = ConfigParser()
    parser.read_config([str(path) for path in files])
    parser.update({"hc18_dir": str(HC18_DIR)})
    assert [record.filename for record in parser.get_parsed_content("training_records")] == [
        record.filename for record in hc18.training_records(HC18_DIR)
    ]
    assert parser.get_parsed_content("validation_cases") == []
    args = {"features": [8, 8, 16, 16, 16], "hc18_dir": str(HC18_DIR), "max_images": 2, "augmentations": IDENTITY_ONLY}
    bundle("training", networks, tmp_path, **args)
    assert (tmp_path / "models" / "model.pt").is_file()


def test_multitask_unet_trains_on_hc18_heads_with_synthetic_abdomens_and_femurs(tmp_path):
    """``multitask_unet_hc18.json``: the real heads of the HC18 split, the other planes synthetic."""
    needs_hc18()
    networks = ["multitask_unet.json", "multitask_unet_hc18.json"]
    args = {"features": TINY_MULTITASK, "hc18_dir": str(HC18_DIR), "max_images": 2, "augmentations": IDENTITY_ONLY}
    bundle("training", networks, tmp_path, **args)
    bundle("evaluating", networks, tmp_path, **args)
    rows = (tmp_path / "evaluation" / "per_image.csv").read_text(encoding="utf-8").splitlines()
    heads = [[record.filename, "head"] for record in hc18_splits(HC18_DIR)["test"][:2]]
    synthetic = [["abdomen-200000", "abdomen"], ["femur-200001", "femur"]]
    assert [row.split(",")[:2] for row in rows[1:]] == heads + synthetic
    model = tmp_path / "models" / "model.pt"
    predictor = load_plane_predictor(model, "multitask_unet.json", "cpu", features=TINY_MULTITASK)
    assert predictor.predict(hc18.read_frame(hc18_splits(HC18_DIR)["test"][0])).plane in PLANE_CLASSES


def test_combined_planes_concatenate_their_sources_part_by_part():
    seeds = {"training": 0, "validation": 10, "test": 20}
    heads = SyntheticPlanes({"training": 2, "validation": 1, "test": 1}, seeds, kinds=["head"])
    other_seeds = {part: seed + 30 for part, seed in seeds.items()}
    others = SyntheticPlanes({"training": 3, "validation": 2, "test": 2}, other_seeds, kinds=["abdomen", "femur"])
    combined = CombinedPlanes([heads, others])
    samples = combined.samples("training", (64, 96))
    assert [int(samples[index]["plane"]) for index in range(len(samples))] == [0, 0, 1, 2, 1]
    assert [case.name for case in combined.cases("test")] == ["head-20", "abdomen-50", "femur-51"]
    with pytest.raises(ValueError, match="at least two"):
        CombinedPlanes([heads])


def test_hc18_planes_augment_only_the_training_heads():
    needs_hc18()
    splits = hc18_splits(HC18_DIR)
    planes = HC18Planes(splits, MTLN_AUGMENTATIONS, max_images=2)
    assert 2 < len(planes.samples("training", (160, 256))) <= 2 * len(MTLN_AUGMENTATIONS)
    assert len(planes.samples("validation", (160, 256))) == 2
    assert [case.name for case in planes.cases("test")] == [record.filename for record in splits["test"][:2]]
    assert {case.plane for case in planes.cases("test")} == {"head"}
    with pytest.raises(ValueError, match="each of"):
        HC18Planes({"training": splits["training"]})


def test_resumable_training_picks_up_after_the_last_saved_epoch(tmp_path):
    """``resumable.json``: a run stopped after epoch 1 of 2, started again, goes on from its saved state."""
    networks = ["multitask_unet.json", "resumable.json"]
    args = {"features": TINY_MULTITASK, "synthetic_lengths": TINY_SYNTHETIC, "epochs": 2}
    bundle("training", networks, tmp_path, **args, **{"trainer#max_epochs": 1})  # stopped after epoch 1
    resume_dir, model = tmp_path / "resume", tmp_path / "models" / "model.pt"
    assert [path.name for path in resume_dir.iterdir()] == ["resume_checkpoint_epoch=1.pt"]
    first = torch.load(resume_dir / "resume_checkpoint_epoch=1.pt", weights_only=True)
    assert set(first) == {"network", "optimizer", "lr_scheduler", "validation", "trainer"}
    epoch_length = first["trainer"]["epoch_length"]
    assert first["trainer"]["iteration"] == epoch_length and first["lr_scheduler"]["T_max"] == 2
    # A best validation no epoch can beat: restored, it keeps epoch 1's weights; a fresh start would overwrite them.
    first["validation"]["best_failed"] = -1
    torch.save(first, resume_dir / "resume_checkpoint_epoch=1.pt")
    weights_after_epoch_1 = model.read_bytes()
    bundle("training", networks, tmp_path, **args)
    second = torch.load(resume_dir / "resume_checkpoint_epoch=2.pt", weights_only=True)
    assert second["trainer"]["iteration"] == 2 * epoch_length
    assert second["lr_scheduler"]["last_epoch"] == 2
    assert second["validation"]["best_failed"] == -1 and model.read_bytes() == weights_after_epoch_1


def test_initial_weights_start_training_from_a_saved_model(tmp_path):
    """``--initial_weights PATH`` fine-tunes: the trained network starts from that state dict."""
    from fetalbiometry.networks import MTLN

    saved = MTLN(features=[8, 8, 16, 16, 16])
    torch.save(saved.state_dict(), tmp_path / "start.pt")
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "biometry" / "train.json"), str(CONFIGS / "biometry" / "mtln.json")])
    parser.update({"features": [8, 8, 16, 16, 16], "device": "cpu", "initial_weights": str(tmp_path / "start.pt")})
    network = parser.get_parsed_content("network")
    for name, value in saved.state_dict().items():
        assert torch.equal(network.state_dict()[name], value), name


def test_multitask_unet_trains_on_a_datalist(tmp_path):
    datalist = write_datalist(tmp_path / "data")
    planes = DatalistPlanes(datalist, MTLN_AUGMENTATIONS)
    # each training frame with the flips and rotations that keep its structure in the image
    assert 3 < len(planes.samples("training", (160, 256))) <= 27
    assert len(planes.samples("validation", (160, 256))) == len(planes.cases("validation")) == 3
    with pytest.raises(InputError, match="no test entries"):
        planes.cases("test")
    args = {"features": TINY_MULTITASK, "datalist": str(datalist), "augmentations": IDENTITY_ONLY}
    bundle("training", "multitask_unet.json", tmp_path / "run", **args)
    assert (tmp_path / "run" / "models" / "model.pt").is_file()


@pytest.mark.parametrize(
    "network, outputs",
    [
        ("mtln.json", {"segmentation", "ellipse"}),
        ("unet.json", {"segmentation"}),
        ("regression.json", {"hc"}),
        ("multitask_unet.json", {"segmentation", "plane"}),
    ],
)
def test_network_files_give_what_inference_reads(network, outputs):
    parser = ConfigParser()
    parser.read_config([CONFIGS / "biometry" / "inference.json", CONFIGS / "biometry" / network])
    spatial_size = parser.get_parsed_content("spatial_size")
    assert all(size % 32 == 0 for size in spatial_size)  # MTLN and the multi-task U-Net pool 5 times
    with torch.no_grad():
        result = network_outputs(parser.get_parsed_content("network_def").eval()(torch.zeros(1, 1, *spatial_size)))
    assert set(result) == outputs and parser.get_parsed_content("plane") == "head"
    assert parser.get_parsed_content("zscore") == (network == "regression.json")


# --- loss wiring -------------------------------------------------------------------------------------


def test_plane_loss_wires_the_multitask_and_regression_losses():
    samples = SyntheticPlaneDataset(3, base_seed=11, spatial_size=(64, 96))
    batch = {key: torch.as_tensor(np.stack([samples[i][key] for i in range(3)])) for key in ("label", "plane")}
    logits = torch.randn(3, 2, 64, 96, generator=torch.Generator().manual_seed(0))
    plane_logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 0.0, 5.0]])
    output = {"segmentation": logits, "plane": plane_logits}
    loss = MultiTaskUNetLoss(0.25)
    wired = PlaneLoss(loss, ["output:segmentation", "target:label", "output:plane", "target:plane"])(output, batch)
    assert batch["plane"].tolist() == [0, 1, 2] and batch["plane"].dtype == torch.int64
    assert wired == pytest.approx(float(loss(logits, batch["label"], plane_logits, batch["plane"])))
    assert wired.item() != pytest.approx(float(loss(logits, batch["label"], plane_logits, torch.tensor([0, 2, 2]))))

    regression = PlaneLoss(regression_loss("huber", 0.5), ["output:hc", "target:hc_normalized"])
    value = regression(torch.tensor([[0.5], [1.5]]), {"hc_normalized": torch.tensor([[0.25], [0.25]])})
    assert value.item() == pytest.approx((0.5 * 0.25**2 + 0.5 * (1.25 - 0.25)) / 2)  # Huber δ = 0.5


# --- synthetic planes --------------------------------------------------------------------------------


def test_synthetic_planes_are_balanced_exact_and_deterministic():
    dataset = SyntheticPlaneDataset(6, base_seed=40, spatial_size=(160, 256))
    samples = [dataset[i] for i in range(6)]
    assert [int(s["plane"]) for s in samples] == [0, 1, 2, 0, 1, 2]
    for index, sample in enumerate(samples):
        phantom = make_plane(PLANE_CLASSES[index % 3], 40 + index)
        mask = sitk.GetArrayFromImage(phantom.mask)
        # 160 x 240 phantoms fit 160 x 256 at scale 1: the label is the phantom's mask, zero-padded
        assert np.array_equal(sample["label"][0, :, :240], mask) and not sample["label"][0, :, 240:].any()
        measure = {"head": "hc_mm", "abdomen": "ac_mm", "femur": "fl_mm"}[PLANE_CLASSES[index % 3]]
        assert sample["hc_mm"] == phantom.truth[measure]
        assert sample["hc_px"] * sample["pixel_size"] == pytest.approx(phantom.truth[measure], rel=1e-9)
    again = SyntheticPlaneDataset(6, base_seed=40, spatial_size=(160, 256))[4]
    assert np.array_equal(again["image"], samples[4]["image"]) and again["filename"] == "abdomen-44"


def test_synthetic_label_follows_the_letterbox():
    phantom = make_plane("femur", 5)
    sample = SyntheticPlaneDataset(3, base_seed=3, spatial_size=(96, 128))[2]
    scaled_mask, _, scale = letterbox(sitk.GetArrayFromImage(phantom.mask).astype(np.float32), (96, 128))
    label = sample["label"][0] > 0
    reference = scaled_mask > 0.5
    assert scale == pytest.approx(128 / 240)
    assert 2 * (label & reference).sum() / (label.sum() + reference.sum()) > 0.9
    assert sample["hc_px"] == pytest.approx(phantom.truth["fl_px"] * scale)


def test_synthetic_parts_do_not_share_seeds():
    planes = SyntheticPlanes({"training": 4, "validation": 2, "test": 2}, {"training": 0, "validation": 10, "test": 20})
    assert [case.name for case in planes.cases("validation")] == ["head-10", "abdomen-11"]
    with pytest.raises(ValueError, match="overlap"):
        SyntheticPlanes({"training": 20, "validation": 2, "test": 2}, {"training": 0, "validation": 10, "test": 30})


def test_affine_rectangle_maps_the_corners():
    rectangle = Rectangle((40.0, 30.0), 50.0, 6.0, 0.3)
    matrix = 0.6 * np.array([[math.cos(1.0), -math.sin(1.0)], [math.sin(1.0), math.cos(1.0)]]) @ np.diag([-1.0, 1.0])
    affine = np.hstack([matrix, [[7.0], [-2.0]]])
    mapped = affine_rectangle(rectangle, affine)
    expected = rectangle.corners @ matrix.T + [7.0, -2.0]
    assert {tuple(np.round(p, 9)) for p in mapped.corners} == {tuple(np.round(p, 9)) for p in expected}
    with pytest.raises(ValueError, match="similarity"):
        affine_rectangle(rectangle, np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0]]))


# --- datalists ---------------------------------------------------------------------------------------


def write_datalist(folder: Path) -> Path:
    """Phantom frames as a datalist: heads by calipers, abdomens by mask, femurs by end points."""
    (folder / "frames").mkdir(parents=True)
    parts = {"training": [], "validation": [], "test": []}
    for index in range(6):
        kind = PLANE_CLASSES[index % 3]
        phantom = make_plane(kind, 500 + index)
        truth = phantom.truth
        cv2.imwrite(str(folder / "frames" / f"{index}.png"), sitk.GetArrayFromImage(phantom.image))
        entry = {"image": f"frames/{index}.png", "pixel_size": truth["pixel_size_mm"], "plane": kind}
        if kind == "abdomen":
            cv2.imwrite(str(folder / "frames" / f"{index}_mask.png"), sitk.GetArrayFromImage(phantom.mask) * 255)
            entry["label"] = f"frames/{index}_mask.png"
        elif kind == "femur":
            entry["calipers"] = {"fl": [[truth["x1_px"], truth["y1_px"]], [truth["x2_px"], truth["y2_px"]]]}
        else:
            e = phantom.structure
            axes = [np.array([math.cos(e.theta), math.sin(e.theta)]), np.array([-math.sin(e.theta), math.cos(e.theta)])]
            ofd, bpd = ([list(np.array([e.cx, e.cy]) + s * r * d) for s in (-1, 1)] for r, d in zip((e.a, e.b), axes))
            entry["calipers"] = {"ofd": ofd, "bpd": bpd}
        parts["training" if index < 3 else "validation"].append(entry)
    path = folder / "datalist.json"
    path.write_text(json.dumps(parts, default=float), encoding="utf-8")
    return path


def test_datalist_references_match_the_truth(tmp_path):
    parts = read_plane_datalist(write_datalist(tmp_path))
    assert [len(parts[part]) for part in ("training", "validation", "test")] == [3, 3, 0]
    for index, plane in enumerate(parts["training"] + parts["validation"]):
        truth = make_plane(PLANE_CLASSES[index % 3], 500 + index).truth
        measure = {"head": "hc_mm", "abdomen": "ac_mm", "femur": "fl_mm"}[plane.plane]
        # calipers give the exact ellipse and length; the abdomen mask is fitted (pixel-quantised)
        tolerance = 0.01 if plane.plane == "abdomen" else 1e-9
        assert plane.value_mm == pytest.approx(truth[measure], rel=tolerance), plane.name
        case = datalist_case(plane)
        assert case.reference_mm == plane.value_mm and case.frame.shape == (160, 240)
        assert (case.reference_ellipse_px is None) == (plane.plane == "femur")
    femur, pixel_size = parts["training"][2].structure, parts["training"][2].pixel_size_mm
    assert femur.width * pixel_size == pytest.approx(2.0 + 0.05 * femur.length * pixel_size)  # mm
    phantom_mask = sitk.GetArrayFromImage(make_plane("femur", 502).mask)
    assert np.array_equal(structure_to_mask(femur, (160, 240)), phantom_mask)


def test_caliper_ellipse_is_analytic():
    along, across = np.array([math.cos(0.4), math.sin(0.4)]), np.array([-math.sin(0.4), math.cos(0.4)])
    centre = np.array([100.0, 90.0])
    ofd = [centre - 80.0 * along, centre + 80.0 * along]
    bpd = [centre + 60.0 * across, centre - 60.0 * across]
    ellipse = ellipse_from_diameters(ofd, bpd)
    assert [ellipse.cx, ellipse.cy, ellipse.a, ellipse.b] == pytest.approx([100.0, 90.0, 80.0, 60.0])
    assert ellipse.theta == pytest.approx(0.4)
    assert ellipse.circumference == pytest.approx(ramanujan_circumference(80.0, 60.0))
    swapped = ellipse_from_diameters(bpd, ofd)  # TAD/APAD in either order: the same ellipse
    assert [swapped.a, swapped.b, swapped.theta] == pytest.approx([80.0, 60.0, 0.4])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image": "frames/missing.png"}, "not found"),
        ({"plane": "thorax"}, "plane must be one of"),
        ({"pixel_size": 0}, "pixel_size must be a positive"),
        ({"pixel_size": "0.1"}, "pixel_size must be a positive"),
        ({"calipers": {"ofd": [[0, 0], [10, 0]]}}, "must be ofd and bpd"),
        ({"calipers": {"ofd": [[0, 0], [10, 0]], "bpd": [[5, -3], [5, 3], [5, 4]]}}, "two points"),
        ({"calipers": {"ofd": [[0, 0], [10, 0]], "bpd": [[0, 0], [10, 1]]}}, "perpendicular"),
        ({"calipers": {"ofd": [[0, 0], [10, 0]], "bpd": [[9, -3], [9, 3]]}}, "middles"),
        ({"calipers": {"ofd": [[0, 0], [0, 0]], "bpd": [[5, -3], [5, 3]]}}, "coincide"),
        ({"label": "frames/0.png"}, "either a label mask or calipers"),
        ({"pixelsize": 0.1}, "unknown key"),
    ],
)
def test_bad_datalist_entries_are_named(tmp_path, change, message):
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "0.png"), np.zeros((40, 60), np.uint8))
    entry = {"image": "frames/0.png", "pixel_size": 0.1, "plane": "head"}
    entry["calipers"] = {"ofd": [[10, 20], [50, 20]], "bpd": [[30, 5], [30, 35]]}
    entry.update(change)
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [entry]}), encoding="utf-8")
    with pytest.raises(InputError, match=message) as error:
        read_plane_datalist(path)
    assert "training[0]" in str(error.value)


def test_bad_datalist_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_plane_datalist(tmp_path / "none.json")
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "0.png"), np.zeros((40, 60), np.uint8))
    cv2.imwrite(str(tmp_path / "frames" / "small.png"), np.zeros((20, 60), np.uint8))
    line = np.zeros((40, 60), np.uint8)
    line[20, 10:50] = 255
    cv2.imwrite(str(tmp_path / "frames" / "line.png"), line)
    path = tmp_path / "datalist.json"
    abdomen = {"image": "frames/0.png", "pixel_size": 0.1, "plane": "abdomen"}
    for content, message in [
        ({"train": []}, "expected a JSON object with parts"),
        ({"training": {}}, "must be a list"),
        ({"test": [{**abdomen, "label": "frames/0.png"}]}, "empty"),
        ({"test": [{**abdomen, "label": "frames/small.png"}]}, "60 x 20"),
        ({"test": [{**abdomen, "plane": "femur", "label": "frames/line.png"}]}, "one pixel wide"),
    ]:
        path.write_text(json.dumps(content), encoding="utf-8")
        with pytest.raises(InputError, match=message):
            read_plane_datalist(path)


# --- regression: units and z-scoring -----------------------------------------------------------------


class ConstantRegressor(nn.Module):
    """Outputs a fixed normalised HC; ``hc_max`` as a buffer, like :class:`~fetalbiometry.networks.HCRegressor`."""

    def __init__(self, normalized_hc: float, hc_max: float) -> None:
        super().__init__()
        self.normalized_hc = normalized_hc
        self.register_buffer("hc_max", torch.tensor(hc_max))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.full((image.shape[0], 1), self.normalized_hc)


def test_regression_target_and_prediction_are_inverse():
    """A network that outputs exactly the training target gives back the reference HC in mm."""
    ellipse, pixel_size, hc_max = Ellipse(410.0, 262.0, 190.0, 150.0, 0.6), 0.12, 600.0
    frame = (ellipse_to_mask(ellipse, (540, 800)) * 200).astype(np.uint8)
    sample = make_plane_sample(frame, ellipse, pixel_size, (128, 128))
    target = sample["hc_px"] / hc_max  # the config's hc_normalized
    assert sample["hc_px"] == pytest.approx(ellipse.circumference * 128 / 800)
    predictor = PlanePredictor(ConstantRegressor(target, hc_max), (128, 128), zscore=True)
    reference_mm = ellipse.circumference * pixel_size
    result = evaluate_case(predictor, PlaneCase("frame", frame, pixel_size, "head", reference_mm, ellipse))
    # sample-grid pixels (x hc_max) -> frame pixels (/ letterbox scale 128/800) -> mm (x pixel size)
    assert predictor.predict(frame).hc_px == pytest.approx(target * hc_max / (128 / 800), rel=1e-6)
    assert result.value_mm == pytest.approx(reference_mm, rel=1e-6) and result.adf_mm < 1e-3
    assert result.dsc_percent is None and result.hd_mm is None


def test_zscore_at_inference_equals_the_training_transform():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (300, 500)).astype(np.uint8)
    sample = make_plane_sample(frame, Ellipse(250.0, 150.0, 100.0, 80.0, 0.2), 0.1, (128, 128))
    trained = np.asarray(NormalizeIntensityd(keys="image")(sample)["image"])
    predictor = PlanePredictor(nn.Identity(), (128, 128), zscore=True)
    inferred = predictor._network_input(frame)[0][0].numpy()
    assert np.array_equal(trained, inferred)
    assert abs(float(inferred.mean())) < 1e-5 and float(inferred.std()) == pytest.approx(1.0, abs=1e-4)


def test_supersampled_labels_give_the_area_inside_the_reference_ellipse() -> None:
    ellipse = Ellipse(40.3, 30.7, 17.35, 11.2, 0.4)
    shape = (64, 96)
    hard = structure_area_fractions(ellipse, shape, 1)
    soft = structure_area_fractions(ellipse, shape, 8)
    np.testing.assert_array_equal(hard, structure_to_mask(ellipse, shape))
    assert soft.dtype == np.float32 and 0.0 <= soft.min() and soft.max() <= 1.0
    fractional = (soft > 0.0) & (soft < 1.0)
    assert fractional.any() and not ((hard > 0) ^ (soft >= 0.5))[~fractional].any()
    area = math.pi * ellipse.a * ellipse.b
    assert abs(soft.sum() - area) < 0.2 * abs(hard.sum() - area) + 0.5
    assert abs(soft.sum() - area) / area < 0.005
    with pytest.raises(InputError, match="supersampling"):
        structure_area_fractions(ellipse, shape, 0)


def test_a_sample_with_supersampled_labels_keeps_the_boundary_weights() -> None:
    frame = (np.random.default_rng(0).random((120, 180)) * 255).astype(np.uint8)
    ellipse = Ellipse(90.0, 60.0, 40.0, 30.0, 0.3)
    hard = make_plane_sample(frame, ellipse, 0.2, (64, 96))
    soft = make_plane_sample(frame, ellipse, 0.2, (64, 96), label_supersampling=4)
    assert set(np.unique(hard["label"])) == {0.0, 1.0}
    assert len(np.unique(soft["label"])) > 2
    weight = BoundaryWeightMapd(keys="label")
    np.testing.assert_allclose(weight(soft)["weight"], weight({"label": soft["label"] > 0.5})["weight"])


def test_phantom_planes_are_annotated_frames_framed_like_hc18_and_the_same_in_parallel():
    lengths, seeds = {"training": 2, "validation": 1, "test": 0}, {"training": 0, "validation": 100, "test": 200}
    framing = {"shape": (135, 200), "ga_range": (20.0, 30.0), "fill_range": (0.6, 0.8)}
    serial = PhantomPlanes(lengths, seeds, **framing)
    parallel = PhantomPlanes(lengths, seeds, **framing, num_workers=2)
    assert [plane.name for plane in serial.parts["training"]] == ["head-0", "head-1"]
    for one, other in zip(serial.parts["training"], parallel.parts["training"]):
        np.testing.assert_array_equal(one.read_frame(), other.read_frame())
        assert one.structure == other.structure and one.frame_shape == (135, 200)
        # the head's mean size at its drawn age spans 0.6-0.8 of the rows, give or take its own z-score
        assert 0.45 < 2.0 * math.sqrt(one.structure.a * one.structure.b) / 135 < 1.0
    assert [case.name for case in serial.cases("validation")] == ["head-100"]
    with pytest.raises(ValueError, match="overlap"):
        PhantomPlanes({"training": 200, "validation": 1, "test": 0}, seeds)
