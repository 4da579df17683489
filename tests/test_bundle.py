"""Checks of the MONAI bundle (``MonaiBundle/``): metadata, network I/O, exports, train/evaluate/infer, DDP.

The bundle commands run as users run them: ``python -m monai.bundle ...`` from the repository root,
at tiny sizes (32³ phantoms, 4-8 channels, one epoch per level).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml
from monai.bundle import ConfigParser, ckpt_export, onnx_export, verify_metadata, verify_net_in_out

import fetalbiometry
from fetalbiometry.data.synthetic import make_head_volume
from fetalbiometry.segment3d.phantom_dataset import PhantomDataset
from fetalbiometry.errors import InputError
from fetalbiometry.planes2d.predictor import load_plane_predictor
from fetalbiometry.weights import recorded_checksum, sha256_of
from fetalbiometry.segment3d.losses import DeepSupervisedCrossEntropy, LabelCrossEntropyLoss
from fetalbiometry.networks import VARIANTS, AutoContextCascade

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "MonaiBundle" / "configs"
META = CONFIGS / "metadata.json"
SCHEMA = CONFIGS / "schema" / "meta_schema.json"
OFFICIAL_SCHEMA_URL = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
)

TINY_NETWORK = {"features": [4, 8, 8, 8], "attention_out_channels": 8, "attention_channels": 4}
PHANTOM_SPACING_RANGE, TARGET_SPACING = [5.0, 6.0], [6.0, 6.0, 6.0]  # heads of 14-40 weeks on grids of ~32³ voxels
NETWORK_ARGS = [arg for key, value in TINY_NETWORK.items() for arg in (f"--{key}", json.dumps(value))]


def phantom_args(num_train: int = 1, num_val: int = 1) -> list[str]:
    """Command-line overrides for a tiny run on phantoms: one epoch per level, small network."""
    return [
        "--epochs_per_level", "1",
        "--phantom#num_train", str(num_train),
        "--phantom#num_val", str(num_val),
        "--phantom#spacing_range", json.dumps(PHANTOM_SPACING_RANGE),
        "--target_spacing", json.dumps(TARGET_SPACING),
        *NETWORK_ARGS,
    ]  # fmt: skip


def run_bundle(*args: str, launcher: tuple[str, ...] = ("-m", "monai.bundle")) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, *launcher, *args], cwd=REPO, env=env, capture_output=True, encoding="utf-8", timeout=240
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def tiny_network(config: Path = CONFIGS / "inference.json") -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(config))
    parser.update(TINY_NETWORK)
    return parser.get_parsed_content("network_def")


def test_metadata_verifies_offline_against_the_local_schema(monkeypatch, tmp_path) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("verify_metadata tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    verify_metadata(meta_file=str(META), filepath=str(SCHEMA))

    metadata = json.loads(META.read_text(encoding="utf-8"))
    assert metadata["schema"] == OFFICIAL_SCHEMA_URL
    assert metadata["required_packages_version"] == metadata["optional_packages_version"]
    shipped = {f"models/{path.name}" for path in (fetalbiometry.BUNDLE_ROOT / "models").glob("*.pt")}
    assert metadata["model_sha256"].keys() == shipped and "models/hc_model_synthetic_only.pt" in shipped
    for relative_path, checksum in metadata["model_sha256"].items():
        assert sha256_of(fetalbiometry.BUNDLE_ROOT / relative_path) == checksum, relative_path
    assert "RECONSTRUCTION" in json.loads(SCHEMA.read_text(encoding="utf-8"))["description"]

    broken = dict(metadata)
    del broken["version"]
    broken_file = tmp_path / "metadata.json"
    broken_file.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="Failed validating"):
        verify_metadata(meta_file=str(broken_file), filepath=str(SCHEMA))


def test_large_files_list_the_shipped_weights_with_the_metadata_checksums() -> None:
    listed = yaml.safe_load((fetalbiometry.BUNDLE_ROOT / "large_files.yml").read_text(encoding="utf-8"))["large_files"]
    metadata = json.loads(META.read_text(encoding="utf-8"))
    assert {entry["path"]: entry["hash_val"] for entry in listed} == metadata["model_sha256"]
    assert all(entry["hash_type"] == "sha256" and "url" not in entry for entry in listed)  # shipped, never fetched


def test_a_shipped_file_passed_by_its_path_is_checked_like_the_default(tmp_path) -> None:
    metadata = json.loads(META.read_text(encoding="utf-8"))
    bundle = tmp_path / "bundle"
    shutil.copytree(REPO / "MonaiBundle" / "configs", bundle / "configs")
    shutil.copytree(REPO / "MonaiBundle" / "models", bundle / "models")
    for relative, checksum in metadata["model_sha256"].items():
        assert recorded_checksum(bundle, bundle / relative) == checksum
        assert recorded_checksum(bundle, tmp_path / Path(relative).name) is None  # a user's own file
    synthetic_only = fetalbiometry.BUNDLE_ROOT / "models" / "hc_model_synthetic_only.pt"
    assert load_plane_predictor(synthetic_only, "mtln.json", "cpu").head_crop is not None  # checked, loaded
    shipped = bundle / "models" / "hc_model.pt"
    data = bytearray(shipped.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one weight changed: the file still loads, only its checksum tells
    shipped.write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum|SHA-256"):
        load_plane_predictor(shipped, "mtln.json", "cpu", bundle_root=bundle)


def test_metadata_states_the_working_spacing_and_the_packages_the_configs_import() -> None:
    metadata = json.loads(META.read_text(encoding="utf-8"))
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    assert metadata["network_data_format"]["inputs"]["image"]["pixdim"] == parser["target_spacing"]
    train = ConfigParser()
    train.read_config(str(CONFIGS / "train.json"))
    assert train["target_spacing"] == parser["target_spacing"]  # trained where it runs
    required = metadata["required_packages_version"]
    assert {"opencv-python-headless", "scikit-image", "matplotlib", "SimpleITK", "nibabel"} <= set(required)


def test_the_bundle_runs_from_a_copy_of_its_folder_alone(tmp_path) -> None:
    copy = tmp_path / "bundle copy"
    shutil.copytree(fetalbiometry.BUNDLE_ROOT, copy, ignore=shutil.ignore_patterns("runs", "__pycache__", "models"))
    command = [sys.executable, "-c", "import fetalbiometry; print(fetalbiometry.BUNDLE_ROOT)"]
    found = subprocess.run(command, cwd=copy, capture_output=True, encoding="utf-8", check=True).stdout.strip()
    assert Path(found) == copy  # the copy's own package, not the installed one
    probe = [sys.executable, "-c", "from monai.bundle import ConfigParser as P; p = P(); "
             "p.read_config('configs/inference.json'); print(p.get_parsed_content('bundle_root'))"]
    root = subprocess.run(probe, cwd=copy, capture_output=True, encoding="utf-8", check=True).stdout.strip().splitlines()[-1]
    assert Path(root) == copy


@pytest.mark.parametrize("variant", ["USegNet-DS-HAS-Ctx", "2D-USegNet", "3D-DeconvNet"])
def test_network_matches_the_metadata_input_and_output(variant) -> None:
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(META),
        config_file=str(CONFIGS / "inference.json"),
        device="cpu",
        n=2,
        variant=variant,
        **TINY_NETWORK,
    )


def test_every_paper_variant_is_selectable_in_train_config() -> None:
    for variant, spec in VARIANTS.items():
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.json"))
        parser.update({"variant": variant, **TINY_NETWORK})
        network = parser.get_parsed_content("network_def")
        assert isinstance(network, AutoContextCascade) == (spec.context_levels > 1), variant
        assert parser.get_parsed_content("patch_size") == spec.patch_size
        expected_loss = DeepSupervisedCrossEntropy if spec.network.get("deep_supervision") else LabelCrossEntropyLoss
        assert type(parser.get_parsed_content("loss")) is expected_loss, variant
    parser.parse()
    assert parser["run"] == parser["training"]  # `run` and `run training` do the same
    shipped = Path(fetalbiometry.BUNDLE_ROOT) / "models"
    assert Path(parser.get_parsed_content("ckpt_dir")).resolve() != shipped.resolve()  # training never overwrites it


def test_the_patch_network_trains_on_several_patches_per_volume() -> None:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update(
        {
            "variant": "p-USegNet",
            "patch_size": [8, 8, 8],
            "patches_per_volume": 3,
            "batch_size": 2,
            "phantom#num_train": 2,
            "phantom#spacing_range": PHANTOM_SPACING_RANGE,
            "target_spacing": TARGET_SPACING,
        }
    )
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    assert batch["image"].shape == batch["label"].shape == (2 * 3, 1, 8, 8, 8)


@pytest.mark.slow
def test_torchscript_and_onnx_exports_match_the_eager_network(tmp_path) -> None:
    network = tiny_network().eval()
    generator = torch.Generator().manual_seed(0)
    for module in network.modules():  # non-trivial batch-norm statistics, as after training
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    checkpoint = tmp_path / "model.pt"
    torch.save(network.state_dict(), checkpoint)
    common = {"ckpt_file": str(checkpoint), "meta_file": str(META), "config_file": str(CONFIGS / "inference.json")}
    ckpt_export("network_def", filepath=str(tmp_path / "model.ts"), **common, **TINY_NETWORK)
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"}
    onnx_export(
        "network_def",
        filepath=str(tmp_path / "model.onnx"),
        input_shape=[1, 1, 16, 16, 16],
        use_trace=True,
        converter_kwargs={
            "dynamo": False,  # the TorchScript-based exporter: onnxscript is not a dependency
            "input_names": ["image"],
            "output_names": ["pred"],
            "dynamic_axes": {"image": axes, "pred": axes},
        },
        **common,
        **TINY_NETWORK,
    )
    image = torch.rand(1, 1, 24, 16, 32, generator=generator)  # another size than exported with
    with torch.no_grad():
        eager = network(image)
        scripted = torch.jit.load(str(tmp_path / "model.ts"))(image)
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (exported,) = session.run(None, {"image": image.numpy()})
    assert eager.shape == (1, 2, 24, 16, 32)
    assert torch.allclose(scripted, eager, atol=1e-4)
    assert np.abs(exported - eager.numpy()).max() < 1e-4


@pytest.mark.slow
def test_training_evaluation_and_inference_commands(tmp_path) -> None:
    run_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    run_bundle(
        "run", "training", "--meta_file", str(META.relative_to(REPO)),
        "--config_file", str((CONFIGS / "train.json").relative_to(REPO)),
        "--output_dir", str(run_dir), *phantom_args(),
    )  # fmt: skip
    checkpoint = run_dir / "models" / "model.pt"
    state = torch.load(checkpoint, weights_only=True)
    tiny_network(CONFIGS / "train.json").load_state_dict(state)  # strict: the whole cascade, no wrapper prefix
    assert any(k.startswith("levels.1.") for k in state)

    run_bundle(
        "run", "evaluating",
        "--config_file", json.dumps([str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")]),
        "--ckpt_path", str(checkpoint), "--output_dir", str(eval_dir), *phantom_args(),
    )  # fmt: skip
    with open(eval_dir / "metrics.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    test_seed = json.loads((CONFIGS / "evaluate.json").read_text(encoding="utf-8"))["test_seed"]
    assert row["case"] == f"phantom-{test_seed}"  # held-out phantoms: seeds far from training and validation
    truth = PhantomDataset(1, base_seed=test_seed, spacing_range=PHANTOM_SPACING_RANGE).phantom(0).truth
    assert float(row["volume_ref_ml"]) == pytest.approx(truth["volume_ml"], rel=1e-4)  # full resolution, real spacing
    dsc = float(row["dice"])
    assert 0.0 <= dsc <= 1.0 and float(row["jaccard"]) == pytest.approx(dsc / (2.0 - dsc), rel=1e-4, abs=1e-6)
    summary = json.loads((eval_dir / "metrics_summary.json").read_text(encoding="utf-8"))
    assert summary["n_cases"] == 1 and summary["metrics"]["dice"]["mean"] == pytest.approx(dsc, rel=1e-4)

    inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
    inputs.mkdir()
    rotated = [0, 1, 0, -1, 0, 0, 0, 0, 1]
    image = make_head_volume(seed=42, shape=(28, 32, 36), spacing=(4.0, 5.0, 6.0), direction=rotated).image
    sitk.WriteImage(image, str(inputs / "case.nii.gz"))
    run_bundle(
        "run", "--config_file", str((CONFIGS / "inference.json").relative_to(REPO)),
        "--input_dir", str(inputs), "--output_dir", str(outputs), "--ckpt_path", str(checkpoint), *NETWORK_ARGS,
    )  # fmt: skip
    label = sitk.ReadImage(str(outputs / "case_seg.nii.gz"))
    assert label.GetSize() == image.GetSize() and label.GetPixelID() == sitk.sitkUInt8
    for name in ("GetSpacing", "GetOrigin", "GetDirection"):
        assert np.allclose(getattr(label, name)(), getattr(image, name)(), atol=1e-4), name
    assert set(np.unique(sitk.GetArrayViewFromImage(label))) <= {0, 1}


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path) -> None:
    configs = json.dumps([str(CONFIGS / "train.json"), str(CONFIGS / "multi_gpu_train.json")])
    run_bundle(
        "--standalone", "--nproc_per_node=2", "-m", "monai.bundle", "run", "training",
        "--config_file", configs, "--meta_file", str(META), "--output_dir", str(tmp_path),
        *phantom_args(num_train=2, num_val=2),
        launcher=("-m", "torch.distributed.run"),
    )  # fmt: skip
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    tiny_network(CONFIGS / "train.json").load_state_dict(state)
    assert math.isfinite(sum(float(v.float().sum()) for v in state.values()))
