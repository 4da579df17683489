"""Tests of the 3D Slicer module that run without Slicer.

They cover what can be checked outside Slicer: ``FetalHeadSegLib`` (the command lines, the
background process and its cancel, reading results back, the metrics on the reference grid,
the table rows), the ``.ui`` file against the widget names the module uses, the CMake files
against the files the module needs, and that the module file compiles. The end-to-end run
inside Slicer is the module's own self-test (``FetalHeadSegTest``).
"""

from __future__ import annotations

import ast
import json
import math
import os
import py_compile
import re
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "FetalHeadSeg"
MODULE_FILE = MODULE_DIR / "FetalHeadSeg.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "FetalHeadSeg.ui"
sys.path.insert(0, str(MODULE_DIR))

from FetalHeadSegLib import process, results  # noqa: E402
from FetalHeadSegLib.process import BackgroundProcess, CommandError, Device, follow  # noqa: E402


def _bundle_env() -> dict[str, str]:
    return process.command_environment(process.find_bundle_root(MODULE_DIR))


def _alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie (dead, not yet reaped by its parent) counts as gone. Linux only."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# --- (a) the real `fetalbiometry segment` through the module's process runner --------------------


def _segment_available() -> bool:
    help_run = subprocess.run(
        process.fetalbiometry_command(sys.executable, "segment", "--help"),
        env=_bundle_env(),
        capture_output=True,
        timeout=120,
    )
    return help_run.returncode == 0


def _model_path(folder: Path) -> Path | None:
    """None (the shipped model) if the bundle has one, else random weights of the bundle's network.

    The test checks the plumbing (files in, label on the input's grid, volume read back), which
    does not depend on what the weights learnt.
    """
    import torch
    from fetalbiometry.segment3d import segmenter as inference

    if (process.find_bundle_root(MODULE_DIR) / inference.SHIPPED_MODEL).is_file():
        return None
    torch.manual_seed(0)
    path = folder / "random-weights.pt"
    torch.save(inference.load_bundle_model().network.state_dict(), path)
    return path


def _phantom_image() -> sitk.Image:
    """The synthetic head phantom, or a bright ball if the phantom generator is not available."""
    try:
        from fetalbiometry.data.synthetic import make_head_volume
    except ImportError:
        z, y, x = np.mgrid[:48, :48, :48]
        ball = ((x - 24) ** 2 + (y - 22) ** 2 + (z - 25) ** 2 <= 15**2).astype(np.float32) * 200.0
        image = sitk.GetImageFromArray(ball)
        image.SetSpacing((2.0, 2.0, 2.5))
        image.SetOrigin((-40.0, 12.5, 3.0))
        return image
    return make_head_volume(seed=0).image


def test_segment_command_writes_label_on_input_grid(tmp_path):
    if not _segment_available():
        pytest.skip("`fetalbiometry segment` is not available yet")
    from fetalbiometry.io import write_image

    image = _phantom_image()
    input_path = write_image(image, tmp_path / "input.nrrd")
    output_path = tmp_path / "head-label.nrrd"
    command = process.segment_command(sys.executable, input_path, output_path, Device.CPU, _model_path(tmp_path))

    lines: list[str] = []
    follow(BackgroundProcess(command, env=_bundle_env()), on_line=lines.append)

    label = sitk.ReadImage(str(output_path))
    assert label.GetSize() == image.GetSize()
    np.testing.assert_allclose(label.GetSpacing(), image.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(label.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(label.GetDirection(), image.GetDirection(), atol=1e-6)
    assert set(np.unique(sitk.GetArrayViewFromImage(label))) <= {0, 1}
    # The volume the command prints and the one the module reads back agree.
    printed = [float(m.group(1)) for line in lines if (m := re.search(r"head volume: ([\d.]+) mL", line))]
    assert len(printed) == 1
    assert results.head_volume_ml(output_path) == pytest.approx(printed[0], abs=0.01)


# --- (b) the background process: streaming, errors, cancel ---------------------------------------


def test_output_streams_before_the_command_ends(tmp_path):
    # The command prints a line, then waits for a file that the test writes only once that
    # line has arrived: the line must come through while the command still runs.
    go = tmp_path / "go"
    code = (
        "import os, sys, time; print('first'); deadline = time.time() + 30\n"
        "while not os.path.exists(sys.argv[1]) and time.time() < deadline: time.sleep(0.02)\n"
        "print('second')"
    )
    background = BackgroundProcess([sys.executable, "-c", code, str(go)], env=_bundle_env())
    assert _wait_until(lambda: "first" in background.new_lines(), timeout=20.0)
    assert background.returncode is None
    go.write_text("")
    assert follow(background) == ["first", "second"]


def test_failed_command_raises_its_one_line_error():
    code = textwrap.dedent(
        """
        import sys
        print("loading")
        print("fetalbiometry: error: no measurement: the ellipse is cut by the border", file=sys.stderr)
        sys.exit(1)
        """
    )
    seen: list[str] = []
    with pytest.raises(CommandError, match=r"^no measurement: the ellipse is cut by the border$"):
        follow(BackgroundProcess([sys.executable, "-c", code]), on_line=seen.append)
    assert seen[0] == "loading"


def test_no_measurement_exit_code_is_a_result_only_where_accepted():
    from fetalbiometry.errors import NO_RESULT_EXIT_CODE as NO_MEASUREMENT_EXIT_CODE

    assert process.NO_MEASUREMENT_EXIT_CODE == NO_MEASUREMENT_EXIT_CODE
    code = (
        "import json, sys; print(json.dumps({'plane': 'head', 'no_measurement': 'no HC: empty mask'}, indent=2)); "
        f"sys.exit({process.NO_MEASUREMENT_EXIT_CODE})"
    )
    accepted = (0, process.NO_MEASUREMENT_EXIT_CODE)
    output = follow(BackgroundProcess([sys.executable, "-c", code]), success_codes=accepted)
    assert results.parse_measurement("\n".join(output)) == results.NoPlaneMeasurement("head", "no HC: empty mask")
    with pytest.raises(CommandError):
        follow(BackgroundProcess([sys.executable, "-c", code]))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from Linux /proc")
def test_cancel_ends_the_whole_process_tree():
    # The child starts a grandchild that ignores SIGTERM, prints its pid and waits; cancel must
    # end both (SIGTERM to the group, then SIGKILL for what is left).
    code = textwrap.dedent(
        """
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"])
        print(grandchild.pid, flush=True)
        time.sleep(60)
        """
    )
    background = BackgroundProcess([sys.executable, "-c", code])
    lines: list[str] = []
    assert _wait_until(lambda: lines.extend(background.new_lines()) or "ready" in lines, timeout=10.0)
    grandchild = int(next(line for line in lines if line.isdigit()))
    assert _alive(background.pid) and _alive(grandchild)

    started = time.monotonic()
    background.cancel()
    assert time.monotonic() - started < 10.0
    assert _wait_until(lambda: not _alive(background.pid) and not _alive(grandchild), timeout=5.0)
    assert background.done or _wait_until(lambda: background.done, timeout=5.0)
    with pytest.raises(CommandError, match="cancelled"):
        follow(background)


def test_progress_fraction_reads_tqdm_bars():
    assert process.progress_fraction(" 40%|████      | 2/5 [00:01<00:02,  1.2it/s]") == pytest.approx(0.4)
    assert process.progress_fraction("100%|██████████| 5/5") == pytest.approx(1.0)
    assert process.progress_fraction("head volume: 40% smaller") is None


def test_error_message_prefers_the_command_error_line():
    assert process.error_message(["a", "fetalbiometry: error: bad input", "b"]) == "bad input"
    assert process.error_message(["Traceback", "ValueError: x", ""]) == "ValueError: x"
    assert process.error_message([], returncode=3) == "the command ended with exit code 3"


# --- command lines, environment, dependencies -------------------------------------------------------


def test_command_lines_are_the_fetalbiometry_cli():
    python = "/opt/Slicer/bin/PythonSlicer"
    head = [python, "-m", "fetalbiometry.cli"]
    assert process.segment_command(python, "in.nrrd", "out.nrrd", Device.CUDA) == head + [
        "segment", "in.nrrd", "out.nrrd", "--device", "cuda"
    ]
    assert process.segment_command(python, "in.nrrd", "out.nrrd", model_path=Path("m.pt"))[-2:] == ["--model", "m.pt"]
    assert process.measure_command(python, "plane.png", 0.15) == head + [
        "measure", "plane.png", "--pixel-size", "0.15", "--json"
    ]
    with pytest.raises(ValueError):
        process.measure_command(python, "plane.png", 0.0)
    assert process.study_command(python, "m.csv", "out", Device.CPU) == head + [
        "study", "m.csv", "--out", "out", "--device", "cpu"
    ]
    assert process.study_command(python, "m.csv", "out", resume=True, model_path="m.pt")[-3:] == [
        "--resume", "--model", "m.pt"
    ]
    assert process.evaluate_command(python, "p.nrrd", "r.nrrd") == head + ["evaluate", "p.nrrd", "r.nrrd", "--json"]
    expected = head + ["synth", "3d", "out", "-n", "1", "--seed", "3", "--spacing", "0.8"]
    assert process.synth_command(python, "out", seed=3) == expected


def test_device_choices_are_the_cli_device_choices():
    from fetalbiometry import cli

    subcommands = next(a for a in cli.build_parser()._actions if a.dest == "command").choices
    device = next(a for a in subcommands["segment"]._actions if a.dest == "device")
    assert {d.value for d in Device} == set(device.choices)
    assert all(d.label() for d in Device)


def test_environment_puts_the_bundle_first_on_pythonpath(tmp_path):
    env = process.command_environment(tmp_path / "MonaiBundle", {"PYTHONPATH": "/elsewhere", "HOME": "/home/u"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "MonaiBundle"), "/elsewhere"]
    assert env["HOME"] == "/home/u" and env["PYTHONUNBUFFERED"] == "1"
    assert process.command_environment("b", {})["PYTHONPATH"] == "b"


def test_bundle_is_found_in_source_tree_and_installed_layout(tmp_path):
    assert process.find_bundle_root(MODULE_DIR) == REPO / "MonaiBundle"
    installed = tmp_path / "qt-scripted-modules"
    (installed / "MonaiBundle" / "fetalbiometry").mkdir(parents=True)
    (installed / "MonaiBundle" / "fetalbiometry" / "cli.py").write_text("")
    assert process.find_bundle_root(installed) == installed / "MonaiBundle"
    with pytest.raises(FileNotFoundError):
        process.find_bundle_root(tmp_path / "nowhere")


def test_bundle_requirements_are_pyproject_dependencies():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert sorted(declared, key=str.lower) == sorted(
        (process.pip_requirement(name) for name in process.BUNDLE_REQUIREMENTS), key=str.lower
    )
    assert process.pip_requirement("monai") == "monai>=1.4,<1.7"


@pytest.mark.parametrize(
    ("version", "specifier", "expected"),
    [
        ("1.5.2", ">=1.4,<1.7", True),
        ("1.7.0", ">=1.4,<1.7", False),
        ("1.3.9", ">=1.4,<1.7", False),
        ("2.13.0+cu128", ">=2.3", True),  # a local build label is ignored
        ("2.2.2+cpu", ">=2.3", False),
        ("1.26", ">=1.26", True),  # missing parts count as 0
        ("0.4.11", ">=0.4.11", True),
        ("0.4.10", ">=0.4.11", False),
        ("1.6.0rc1", "<1.7", True),
        ("5.4.0", "==5.4", True),
        ("5.4.1", "!=5.4.1", False),
    ],
)
def test_version_satisfies(version, specifier, expected):
    assert process.version_satisfies(version, specifier) is expected


def test_unreadable_versions_and_specifiers_are_refused():
    with pytest.raises(ValueError, match="unsupported version specifier '~=1.4'"):
        process.version_satisfies("1.4", "~=1.4")
    with pytest.raises(ValueError, match="cannot read the version 'dev'"):
        process.version_satisfies("dev", ">=1")


def test_unmet_requirements_checks_versions_not_only_presence():
    versions = {name: "99.0" for name in process.BUNDLE_REQUIREMENTS}
    assert process.unmet_requirements(process.Action.SEGMENT, versions.get) == ["monai>=1.4,<1.7"]
    # A monai another extension left behind in Slicer's shared Python, too old, counts as missing.
    versions.update(monai="1.3.0", torch="2.1.0+cu118")
    assert process.unmet_requirements(process.Action.EVALUATE, versions.get) == ["torch>=2.3", "monai>=1.4,<1.7"]
    versions.update(monai="1.5.1", torch="2.13.0+cu128")
    assert process.unmet_requirements(process.Action.MEASURE_PLANE, versions.get) == []
    del versions["scipy"]
    assert process.unmet_requirements(process.Action.SAMPLE_DATA, versions.get) == ["scipy>=1.11"]
    assert process.installed_version("no-such-distribution-fetalheadseg") is None
    assert process.installed_version("numpy") == np.__version__


def test_packages_slicer_ships_are_read_from_the_module_without_metadata(monkeypatch):
    import importlib.metadata

    def no_metadata(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", no_metadata)
    assert process.installed_version("numpy") == np.__version__  # Slicer's own build: no dist-info
    assert process.installed_version("scipy") is None
    assert set(process.SLICER_PROVIDED) <= set(process.BUNDLE_REQUIREMENTS)


# Each action's command: the cli handler and the package modules it imports at the start.
_ACTION_COMMANDS = {
    process.Action.SAMPLE_DATA: "cmd_synth",
    process.Action.SEGMENT: "cmd_segment",
    process.Action.EVALUATE: "cmd_evaluate",
    process.Action.MEASURE_PLANE: "cmd_measure",
    process.Action.STUDY: "cmd_study",
}


#: Bundle configs an action's command parses: their "$import ..." lines load package modules too.
_ACTION_CONFIGS = {
    process.Action.SEGMENT: ["inference.json"],
    process.Action.STUDY: ["inference.json"],
}


def _config_imports(action: process.Action) -> list[str]:
    names = []
    for config in _ACTION_CONFIGS.get(action, []):
        text = (REPO / "MonaiBundle" / "configs" / config).read_text(encoding="utf-8")
        names += re.findall(r'"\$import ([\w.]+)', text)
        names += [f"{module}.{name}" for module, name in re.findall(r'"\$from ([\w.]+) import (\w+)', text)]
    return names


def _imports(tree: ast.AST, module_level_only: bool) -> set[str]:
    """Absolute import names in a tree; with ``module_level_only``, not those inside functions."""
    names: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        if not (module_level_only and in_function):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return names


def _package_module(name: str) -> Path | None:
    path = REPO / "MonaiBundle" / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _third_party_imports(handler: str, module_level_only: bool, also: Sequence[str] = ()) -> set[str]:
    """Top-level third-party modules a cli handler's command imports, following the package's modules.

    With ``module_level_only`` only the imports that run when a module loads count (a lower
    bound of what the command needs); otherwise every import in the modules it reaches (an upper bound).
    """
    cli_tree = ast.parse((REPO / "MonaiBundle" / "fetalbiometry" / "cli.py").read_text(encoding="utf-8"))
    function = next(n for n in ast.walk(cli_tree) if isinstance(n, ast.FunctionDef) and n.name == handler)
    pending = [*_imports(function, False), "fetalbiometry.cli", *also]
    seen: set[str] = set()
    third_party: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        top = name.split(".")[0]
        if top != "fetalbiometry":
            if top not in sys.stdlib_module_names:
                third_party.add(top)
            continue
        parts = name.split(".")  # a package's __init__ runs before any of its modules
        pending += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = _package_module(name)
        if path is not None:
            pending += _imports(ast.parse(path.read_text(encoding="utf-8")), module_level_only or path.name == "cli.py")
    return third_party


def _distributions(import_names: set[str]) -> set[str]:
    import importlib.metadata

    owners = importlib.metadata.packages_distributions()
    return {owners[name][0].lower() for name in import_names if name in owners}


@pytest.mark.parametrize("action", list(_ACTION_COMMANDS))
def test_each_action_installs_what_its_command_imports_and_nothing_else(action):
    declared = {name.lower() for name in process.ACTION_REQUIREMENTS[action]}
    handler, configured = _ACTION_COMMANDS[action], _config_imports(action)
    needed = _distributions(_third_party_imports(handler, module_level_only=True, also=configured))
    reachable = _distributions(_third_party_imports(handler, module_level_only=False, also=configured))
    if "monai" in reachable:
        reachable.add("torch")  # MONAI imports PyTorch
    assert needed <= declared, f"{action}: the command imports {sorted(needed - declared)} at load time"
    assert declared <= reachable, f"{action}: {sorted(declared - reachable)} is installed but never imported"


def test_no_action_installs_pytorch_without_need_and_none_installs_unused_packages():
    assert "torch" not in process.ACTION_REQUIREMENTS[process.Action.SAMPLE_DATA]
    assert process.ACTION_REQUIREMENTS[process.Action.HEAD_VOLUME] == ()
    used = {name for names in process.ACTION_REQUIREMENTS.values() for name in names}
    assert used <= set(process.BUNDLE_REQUIREMENTS)
    assert {"itk", "fire", "jsonschema", "pyyaml"}.isdisjoint(used)


def test_unsupported_slicer_gives_one_clear_line():
    assert process.unsupported_slicer_message((5, 10), (3, 12)) is None
    assert process.unsupported_slicer_message((6, 0), (3, 12)) is None
    message = process.unsupported_slicer_message((5, 8), (3, 9))
    assert message.startswith("FetalHeadSeg needs Slicer 5.10 or newer (Python 3.10+); this is Slicer 5.8 with Python 3.9.")
    assert "\n" not in message
    assert process.unsupported_slicer_message((5, 10), (3, 9)) is not None
    requires = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    assert requires == ">=" + ".".join(map(str, process.MINIMUM_PYTHON_VERSION))


def test_lib_imports_without_slicer_qt_or_fetalbiometry():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import FetalHeadSegLib.process, FetalHeadSegLib.results; "
        "print(sorted(m for m in ('slicer', 'qt', 'vtk', 'ctk', 'fetalbiometry', 'torch') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code, str(MODULE_DIR)], capture_output=True, encoding="utf-8", check=True)
    assert run.stdout.strip() == "[]"


# --- (c) metrics on the reference grid and the table rows ------------------------------------------


def _image(mask: np.ndarray, spacing=(0.5, 0.5, 0.5), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _box(shape=(20, 20, 24), start=(5, 5, 5), size=(10, 10, 10)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[tuple(slice(s, s + n) for s, n in zip(start, size))] = 1
    return mask


def _evaluate(prediction: sitk.Image, reference: sitk.Image, folder: Path) -> results.AgreementMetrics:
    """What the Measure button does with a reference: write the inputs, run `fetalbiometry evaluate`, parse."""
    prediction_path, reference_path = folder / "prediction.nrrd", folder / "reference.nrrd"
    sitk.WriteImage(prediction, str(prediction_path))
    sitk.WriteImage(reference, str(reference_path))
    on_reference, reference_mask = results.write_evaluation_inputs(prediction_path, reference_path, folder)
    command = process.evaluate_command(sys.executable, on_reference, reference_mask)
    output = follow(BackgroundProcess(command, env=_bundle_env()))
    return results.parse_agreement("\n".join(output))


def test_metrics_of_shifted_boxes(tmp_path):
    # Two 10³-voxel cubes, the prediction shifted by 2 voxels along x (array axis 2), 0.5 mm voxels:
    # overlap 8·10·10 = 800 → DSC = 1600/2000, Jaccard = 800/1200, conformity = (3·0.8 − 2)/0.8;
    # every boundary voxel is within 2 voxels (1 mm) of the other boundary, and the moved faces
    # are exactly that far; each cube holds 1000 · 0.125 mm³ = 0.125 mL.
    reference = _image(_box())
    prediction = _image(_box(start=(5, 5, 7)))
    metrics = _evaluate(prediction, reference, tmp_path)
    assert metrics.dice == pytest.approx(0.8)
    assert metrics.jaccard == pytest.approx(2 / 3)
    assert metrics.conformity == pytest.approx(0.5)
    assert metrics.hdb_mm == pytest.approx(1.0)
    assert 0.0 < metrics.adb_mm < metrics.hdb_mm
    assert metrics.volume_pred_ml == pytest.approx(0.125)
    assert metrics.volume_ref_ml == pytest.approx(0.125)
    assert results.head_volume_ml(prediction) == pytest.approx(0.125)


def test_head_volume_is_the_volume_command_figure():
    from fetalbiometry.metrics import label_volume_ml

    label = _image(_box() * 2, spacing=(0.3, 0.7, 1.1))
    assert results.head_volume_ml(label) == pytest.approx(label_volume_ml(label))


def test_prediction_on_another_grid_is_resampled_onto_the_reference(tmp_path):
    # The same cube sampled on a grid twice as fine whose voxel centres are offset by 0.1 mm:
    # every reference voxel centre falls inside the fine voxel that carries its own value.
    reference = _image(_box(), spacing=(1.0, 1.0, 1.0))
    fine_grid = sitk.Image((48, 40, 40), sitk.sitkUInt8)
    fine_grid.SetSpacing((0.5, 0.5, 0.5))
    fine_grid.SetOrigin((0.1, 0.1, 0.1))
    fine = sitk.Resample(reference, fine_grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, sitk.sitkUInt8)
    assert fine.GetSize() != reference.GetSize()

    on_reference = results.resample_to_reference(fine, reference)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(on_reference), _box())

    metrics = _evaluate(fine, reference * 3, tmp_path)  # label 3: every voxel > 0 counts as head
    assert metrics.dice == pytest.approx(1.0)
    assert metrics.hdb_mm == pytest.approx(0.0)
    assert metrics.volume_ref_ml == pytest.approx(1.0)  # 1000 voxels of 1 mm³


def test_agreement_json_is_what_evaluate_prints():
    from fetalbiometry.metrics import SegmentationMetrics

    assert list(results.AgreementMetrics.__dataclass_fields__) == list(SegmentationMetrics.__dataclass_fields__)
    with pytest.raises(ValueError, match="no hdb_mm"):
        results.parse_agreement('{"dice": 1, "jaccard": 1, "conformity": 1, "adb_mm": 0, "volume_pred_ml": 1, "volume_ref_ml": 1}')
    with pytest.raises(ValueError, match="printed no JSON"):
        results.parse_agreement("fetalbiometry: error: grids differ")


def test_segmentation_rows():
    metrics = results.AgreementMetrics(0.8, 2 / 3, 0.5, 0.4, 1.0, 0.125, 0.13)
    rows = results.segmentation_rows(123.456789, metrics)
    assert [(r.quantity, r.unit) for r in rows] == [
        ("Head volume", "mL"),
        ("Dice", ""),
        ("Jaccard", ""),
        ("Conformity", ""),
        ("Adb", "mm"),
        ("Hdb", "mm"),
        ("Head volume (on reference grid)", "mL"),
        ("Reference volume", "mL"),
    ]
    assert rows[0].cells == ("Head volume", "123.457", "mL")
    assert rows[2].cells == ("Jaccard", "0.666667", "")
    assert [r.quantity for r in results.segmentation_rows(1.0)] == ["Head volume"]
    assert results.TableRow("Hdb", math.inf, "mm").cells == ("Hdb", "inf", "mm")


# --- 2D biometry ---------------------------------------------------------------------------------

HEAD_RESULT = {
    "plane": "head",
    "hc_mm": 175.25,
    "ellipse": {"cx": 10.0, "cy": 5.0, "a": 4.0, "b": 2.0, "theta": 0.0},
    "ga_weeks_hadlock": 20.1,
    "ga_weeks_intergrowth": 20.4,
    "centile": 45.0,
}


def test_parse_head_measurement_among_log_lines():
    output = "loading model\n" + json.dumps(HEAD_RESULT, indent=2) + "\ndone"
    measurement = results.parse_measurement(output)
    assert measurement.plane == "head" and measurement.measure_name == "HC"
    assert measurement.value_mm == 175.25
    assert measurement.ellipse_mm == (10.0, 5.0, 4.0, 2.0, 0.0)
    assert [row.cells for row in results.measurement_rows(measurement)] == [
        ("Plane", "head", ""),
        ("HC", "175.25", "mm"),
        ("GA (Hadlock)", "20.1", "weeks"),
        ("GA (INTERGROWTH-21st)", "20.4", "weeks"),
        ("Centile", "45", ""),
    ]
    assert results.measurement_summary(measurement) == (
        "HC 175.2 mm | GA 20.1 wk (Hadlock) | GA 20.4 wk (INTERGROWTH-21st) | centile 45"
    )


def test_parse_femur_and_invalid_measurements():
    femur = results.parse_measurement(json.dumps({"plane": "femur", "fl_mm": 32.0, "femur_endpoints": [[1, 2], [3, 4]]}))
    assert femur.measure_name == "FL" and femur.femur_endpoints_mm == ((1.0, 2.0), (3.0, 4.0))
    assert [row.quantity for row in results.measurement_rows(femur)] == ["Plane", "FL"]
    for bad in ("no json here", '{"plane": "hand"}', '{"plane": "head", "hc_mm": 1}', '{"plane": "abdomen", "hc_mm": 1}'):
        with pytest.raises(ValueError):
            results.parse_measurement(bad)


def test_parse_no_measurement_gives_the_reason():
    reason = "no AC: the abdomen is cut by the image border"
    output = json.dumps({"plane": "abdomen", "no_measurement": reason}, indent=2)
    refused = results.parse_measurement("loading model\n" + output)
    assert refused == results.NoPlaneMeasurement("abdomen", reason)
    assert refused.measure_name == "AC"
    assert [row.cells for row in results.measurement_rows(refused)] == [
        ("Plane", "abdomen", ""),
        ("No measurement", reason, ""),
    ]
    assert results.measurement_summary(refused) == f"no measurement: {reason}"
    with pytest.raises(ValueError):
        results.parse_measurement('{"plane": "hand", "no_measurement": "x"}')


def test_ellipse_and_femur_outlines_in_voxel_and_ras_space():
    measurement = results.parse_measurement(json.dumps(HEAD_RESULT))
    ijk = results.measurement_outline_ijk(measurement, pixel_size_mm=0.5, n=8)
    # t = 0 is the end of the a axis: (cx + a, cy) mm = (14, 5) mm = (28, 10) pixels.
    np.testing.assert_allclose(ijk[0], [28.0, 10.0, 0.0])
    # Every point lies on the ellipse ((x − cx)/a)² + ((y − cy)/b)² = 1 in pixels.
    np.testing.assert_allclose(((ijk[:, 0] - 20) / 8) ** 2 + ((ijk[:, 1] - 10) / 4) ** 2, 1.0)
    assert np.all(ijk[:, 2] == 0)

    ijk_to_ras = np.array([[-0.5, 0, 0, 100.0], [0, -0.5, 0, 50.0], [0, 0, 1.0, -3.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(results.ijk_to_ras(ijk[:1], ijk_to_ras), [[86.0, 45.0, -3.0]])

    femur = results.PlaneMeasurement("femur", 32.0, femur_endpoints_mm=((1.0, 2.0), (3.0, 4.0)))
    np.testing.assert_allclose(results.measurement_outline_ijk(femur, 0.5), [[2, 4, 0], [6, 8, 0]])
    # The module's outline is the package's ellipse convention (it does not import the package in Slicer).
    from fetalbiometry.biometry.ellipse import Ellipse, ellipse_outline

    tilted = (12.0, 7.0, 5.0, 3.0, 0.7)
    np.testing.assert_allclose(results.ellipse_outline_mm(tilted, 36), ellipse_outline(Ellipse(*tilted), 36))
    with pytest.raises(ValueError):
        results.ijk_to_ras(ijk, np.eye(3))


def test_slice_png_keeps_uint8_and_rescales_other_types(tmp_path):
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(results.write_slice_png(pixels, tmp_path / "a.png"))))
    np.testing.assert_array_equal(written, pixels)

    floats = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(results.write_slice_png(floats, tmp_path / "b.png"))))
    assert written.shape == (3, 4) and written.dtype == np.uint8
    assert written.min() == 0 and written.max() == 255 and np.all(np.diff(written.ravel()) >= 0)
    with pytest.raises(ValueError):
        results.write_slice_png(np.zeros((2, 2, 2)), tmp_path / "c.png")


def test_phantom_files_come_from_the_synth_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="wrote no manifest.csv"):
        results.phantom_files(tmp_path)
    (tmp_path / "manifest.csv").write_text("subject,image,reference,expert_volume_ml\n")
    with pytest.raises(FileNotFoundError, match="lists no phantom"):
        results.phantom_files(tmp_path)
    (tmp_path / "manifest.csv").write_text("subject,image,reference\ns0,imagesTr/s0.nii.gz,labelsTr/s0.nii.gz\n")
    with pytest.raises(FileNotFoundError, match="which does not exist"):
        results.phantom_files(tmp_path)
    for folder in ("imagesTr", "labelsTr"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "s0.nii.gz").write_bytes(b"")
    assert results.phantom_files(tmp_path) == (tmp_path / "imagesTr/s0.nii.gz", tmp_path / "labelsTr/s0.nii.gz")


def test_study_outputs(tmp_path):
    (tmp_path / "figures").mkdir()
    for name in ("volumes.csv", "subjects.csv", "summary.json", "figures/volumes.png", "figures/bland_altman.png"):
        (tmp_path / name).write_text("x")
    with pytest.raises(FileNotFoundError, match="report.html"):
        results.study_outputs(tmp_path)
    (tmp_path / "report.html").write_text("<html/>")
    outputs = results.study_outputs(tmp_path)
    assert outputs.subjects_csv == tmp_path / "subjects.csv"
    assert [p.name for p in outputs.plots] == ["bland_altman.png", "volumes.png"]


# --- (d) the widgets the module uses exist in the .ui file ------------------------------------------


def _module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"))


def _ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI_FILE).getroot().iter("widget")}


def test_every_ui_widget_used_by_the_module_is_in_the_ui_file():
    used = {
        node.attr
        for node in ast.walk(_module_tree())
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ui"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }
    assert {"segmentButton", "cancelButton", "logTextEdit", "progressBar"} <= used
    assert used - set(_ui_widgets()) == set()


def test_ui_parameter_names_are_the_parameter_node_fields():
    parameter_class = next(
        node for node in ast.walk(_module_tree()) if isinstance(node, ast.ClassDef) and node.name == "FetalHeadSegParameterNode"
    )
    fields = {node.target.id for node in parameter_class.body if isinstance(node, ast.AnnAssign)}
    bound = {
        prop.findtext("string"): name
        for name, widget in _ui_widgets().items()
        for prop in widget.findall("property")
        if prop.get("name") == "SlicerParameterName"
    }
    assert set(bound) == fields
    # Scene-aware widgets get the scene through the .ui connections.
    node_selectors = {name for name, w in _ui_widgets().items() if w.get("class") == "qMRMLNodeComboBox"}
    receivers = {c.findtext("receiver") for c in ET.parse(UI_FILE).getroot().iter("connection")}
    assert node_selectors <= receivers


# --- (e) the CMake files list what the module needs -------------------------------------------------


def _cmake_list(text: str, variable: str, module_name: str) -> list[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} is not set"
    return [item.replace("${MODULE_NAME}", module_name) for item in match.group(1).split()]


def test_module_cmake_lists_every_file_the_module_needs():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    module_name = re.search(r"set\(MODULE_NAME (\w+)\)", text).group(1)
    assert module_name == "FetalHeadSeg"
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS", module_name)
    resources = _cmake_list(text, "MODULE_PYTHON_RESOURCES", module_name)
    python_files = {
        str(p.relative_to(MODULE_DIR)) for p in MODULE_DIR.rglob("*.py") if "Testing" not in p.parts and "__pycache__" not in p.parts
    }
    resource_files = {str(p.relative_to(MODULE_DIR)) for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()}
    assert set(scripts) == python_files
    assert set(resources) == resource_files
    assert "WITH_GENERIC_TESTS" in text and "add_subdirectory(Testing)" in text
    # The whole bundle ships next to the module.
    assert 'GLOB_RECURSE _bundle_files' in text and '"${CMAKE_CURRENT_SOURCE_DIR}/../MonaiBundle"' in text
    assert (REPO / "MonaiBundle" / "fetalbiometry" / "cli.py").is_file()
    testing = (MODULE_DIR / "Testing" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "add_subdirectory(Python)" in testing
    unittest = (MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt").read_text(encoding="utf-8")
    script = re.search(r"slicer_add_python_unittest\(SCRIPT (\S+)\)", unittest).group(1)
    assert (MODULE_DIR / "Testing" / "Python" / script.replace("${CMAKE_CURRENT_SOURCE_DIR}/", "").replace(
        "${MODULE_NAME}", module_name
    )).resolve() == MODULE_FILE


def test_extension_cmake():
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    for required in (
        "project(FetalHeadSeg)",
        'set(EXTENSION_CATEGORY "Segmentation")',
        'set(EXTENSION_DEPENDS "PyTorch")',
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        "add_subdirectory(FetalHeadSeg)",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
        "include(${Slicer_EXTENSION_CPACK})",
    ):
        assert required in text
    for variable in ("CONTRIBUTORS", "DESCRIPTION"):
        assert re.search(rf'set\(EXTENSION_{variable} "[^"]+"', text), variable
    # Real URLs or none: the project has no public repository yet, so no URL is made up.
    for url_variable in ("HOMEPAGE", "ICONURL", "SCREENSHOTURLS"):
        assert re.search(rf'set\(EXTENSION_{url_variable} ""\)', text), url_variable
    assert not re.search(r"https?://(www\.)?(github\.com|raw\.githubusercontent\.com)/FetalHeadSeg", text)
    module_text = MODULE_FILE.read_text(encoding="utf-8")
    assert "github.com/FetalHeadSeg" not in module_text
    # One Slicer floor: CMake, the module's check and the docs agree.
    floor = re.search(r'set\(FetalHeadSeg_MINIMUM_SLICER_VERSION "(\d+)\.(\d+)"\)', text)
    assert tuple(map(int, floor.groups())) == process.MINIMUM_SLICER_VERSION
    docs = (REPO / "docs" / "slicer.md").read_text(encoding="utf-8")
    assert "Requires Slicer {}.{} or newer".format(*process.MINIMUM_SLICER_VERSION) in docs


def test_extension_index_entry_follows_the_catalog_schema():
    # Slicer's Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json: required $schema,
    # category, scm_url; no other keys than these.
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
    entry = json.loads((REPO / "FetalHeadSeg.json").read_text(encoding="utf-8"))
    assert entry["$schema"] == (
        "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#"
    )
    assert set(entry) <= allowed and {"$schema", "category", "scm_url"} <= set(entry)
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert f'set(EXTENSION_CATEGORY "{entry["category"]}")' in text
    assert entry["build_dependencies"] == re.search(r'set\(EXTENSION_DEPENDS "([^"]+)"\)', text).group(1).split()
    assert entry["scm_type"] in ("git", "local") and entry["build_subdirectory"] == "."
    if entry["scm_type"] == "local":  # until there is a public repository: this source tree
        assert (REPO / entry["scm_url"] / "CMakeLists.txt").is_file()
    assert 1 <= entry.get("tier", 1) <= 5


_STUB_SLICER = """
# Stand-in for Slicer's CMake package: the two variables and the macros the extension uses.
set(Slicer_VERSION_MAJOR 5)
set(Slicer_VERSION_MINOR 10)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.10/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR ${Slicer_QTSCRIPTEDMODULES_LIB_DIR})
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
"""
_STUB_USE_SLICER = """
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  foreach(file ${MY_SCRIPTS} ${MY_RESOURCES})
    install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/${file} DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/stub-module)
  endforeach()
endmacro()
macro(slicer_add_python_unittest)
endmacro()
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_installs_the_bundle_next_to_the_module(tmp_path):
    stub = tmp_path / "stub-slicer"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(_STUB_SLICER)
    (stub / "UseSlicer.cmake").write_text(_STUB_USE_SLICER)
    (stub / "Empty.cmake").write_text("")
    build, prefix = tmp_path / "build", tmp_path / "install"
    def ships(path: Path) -> bool:  # local training runs and build leftovers stay behind
        parts = path.relative_to(REPO / "MonaiBundle").parts
        leftover = any(part == "__pycache__" or part.endswith(".egg-info") for part in parts) or path.suffix == ".pyc"
        return path.is_file() and parts[0] != "runs" and not leftover

    bundle_files = {p.relative_to(REPO / "MonaiBundle") for p in (REPO / "MonaiBundle").rglob("*") if ships(p)}

    def cmake(*args: str) -> None:
        run = subprocess.run(["cmake", *args], capture_output=True, encoding="utf-8", timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr

    cmake("-S", str(REPO), "-B", str(build), f"-DSlicer_DIR={stub}", "-DBUILD_TESTING=OFF")
    cmake("--build", str(build))
    cmake("--install", str(build), "--prefix", str(prefix))

    modules = "lib/Slicer-5.10/qt-scripted-modules"
    for root in (build / modules / "MonaiBundle", prefix / modules / "MonaiBundle"):
        copied = {p.relative_to(root) for p in root.rglob("*") if p.is_file()}
        assert bundle_files <= copied
        assert not any(part == "__pycache__" or part.endswith(".egg-info") for p in copied for part in p.parts)
        assert not any(p.parts[0] == "runs" for p in copied)
    assert (prefix / modules / "MonaiBundle" / "fetalbiometry" / "cli.py").is_file()


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_refuses_a_slicer_older_than_the_floor(tmp_path):
    stub = tmp_path / "stub-slicer"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(
        _STUB_SLICER.replace("set(Slicer_VERSION_MINOR 10)", "set(Slicer_VERSION_MINOR 8)")
    )
    (stub / "UseSlicer.cmake").write_text(_STUB_USE_SLICER)
    (stub / "Empty.cmake").write_text("")
    run = subprocess.run(
        ["cmake", "-S", str(REPO), "-B", str(tmp_path / "build"), f"-DSlicer_DIR={stub}", "-DBUILD_TESTING=OFF"],
        capture_output=True, encoding="utf-8", timeout=120,
    )
    assert run.returncode != 0
    assert "FetalHeadSeg needs Slicer 5.10 or newer; this is Slicer 5.8." in " ".join(run.stderr.split())


# --- (f) the module file compiles --------------------------------------------------------------------


def test_module_files_compile(tmp_path):
    for path in [MODULE_FILE, *sorted((MODULE_DIR / "FetalHeadSegLib").glob("*.py"))]:
        py_compile.compile(str(path), cfile=str(tmp_path / (path.stem + ".pyc")), doraise=True)


# --- (g) the files the panel runs in Slicer's Python: the oldest Slicer's syntax, no fetalbiometry ---

#: Python of the oldest Slicer that must load the module (to say what it needs): Slicer 5.6 and 5.8.
SLICER_LOAD_PYTHON = (3, 9)
_PANEL_FILES = [MODULE_FILE, *sorted((MODULE_DIR / "FetalHeadSegLib").glob("*.py"))]
_BUILTIN_TYPES = {"str", "int", "float", "bool", "bytes", "list", "dict", "tuple", "set", "frozenset", "type", "object"}


def _runtime_310_features(tree: ast.Module) -> list[str]:
    """Python >= 3.10 features that parse under 3.9 but fail when they run there."""
    annotation_nodes = set()
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            annotations = [a.annotation for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                                                  arguments.vararg, arguments.kwarg] if a is not None]
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for annotation in filter(None, annotations):
            annotation_nodes.update(id(child) for child in ast.walk(annotation))
    future_annotations = any(
        isinstance(node, ast.ImportFrom) and node.module == "__future__" and any(a.name == "annotations" for a in node.names)
        for node in tree.body
    )
    problems = []
    for node in ast.walk(tree):
        evaluated = id(node) not in annotation_nodes or not future_annotations
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and evaluated:
            sides = (node.left, node.right)
            if any(
                (isinstance(side, ast.Constant) and side.value is None)
                or (isinstance(side, ast.Name) and side.id in _BUILTIN_TYPES)
                or isinstance(side, ast.Subscript)
                for side in sides
            ):
                problems.append(f"line {node.lineno}: a type union X | Y evaluated at run time")
        if isinstance(node, ast.Call) and any(k.arg == "strict" for k in node.keywords) and getattr(node.func, "id", "") == "zip":
            problems.append(f"line {node.lineno}: zip(strict=...)")
        if isinstance(node, ast.ImportFrom) and node.module == "typing":
            newer = {a.name for a in node.names} & {"TypeAlias", "ParamSpec", "Concatenate", "TypeGuard", "Self"}
            problems += [f"line {node.lineno}: typing.{name}" for name in sorted(newer)]
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "dataclass":
            problems += [f"line {node.lineno}: dataclass({k.arg}=...)" for k in node.keywords if k.arg in ("slots", "kw_only")]
    return problems


@pytest.mark.parametrize("path", _PANEL_FILES, ids=lambda p: p.name)
def test_panel_files_run_on_the_oldest_slicer_python(path):
    """Slicer 5.6/5.8 (Python 3.9) must load the module to tell the user it needs Slicer 5.10."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path), feature_version=SLICER_LOAD_PYTHON)
    assert _runtime_310_features(tree) == []


def test_runtime_feature_check_finds_what_python_39_cannot_run():
    tree = ast.parse(
        "from typing import TypeAlias\nPathLike = str | os.PathLike[str]\nx = zip(a, b, strict=True)\n"
        "def f(p: int | None) -> None: ...\n"
    )
    assert sorted(_runtime_310_features(tree)) == [
        "line 1: typing.TypeAlias",
        "line 2: a type union X | Y evaluated at run time",
        "line 3: zip(strict=...)",
        "line 4: a type union X | Y evaluated at run time",  # no `from __future__ import annotations` here
    ]
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1: pass\n", feature_version=SLICER_LOAD_PYTHON)


@pytest.mark.parametrize("path", _PANEL_FILES, ids=lambda p: p.name)
def test_panel_never_imports_fetalbiometry_in_slicers_process(path):
    """fetalbiometry needs Python 3.10 and PyTorch-era packages: it runs only in the commands."""
    imported = _imports(ast.parse(path.read_text(encoding="utf-8")), module_level_only=False)
    assert not {name for name in imported if name.split(".")[0] == "fetalbiometry"}
    assert "sys.path.insert" not in path.read_text(encoding="utf-8")


def test_segmentation_notes_are_the_spacing_the_warnings_and_an_unreported_volume() -> None:
    output = [
        "loading model (shipped bundle model, device cpu)",
        "fetalbiometry: warning: the field of view along z is 32 mm, outside the 40-600 mm of a fetal head volume",
        "working spacing: 3.00 x 3.00 x 3.00 mm (this volume: 0.80 x 0.80 x 0.40 mm)",
        "segmenting input.nrrd on cpu",
        "wrote head-label.nrrd",
        "head volume: not reported: implausible head volume 2.0 mL",
    ]
    assert results.segmentation_notes(output) == [output[1], output[2], output[5]]
    assert results.segmentation_notes(["head volume: 210.00 mL"]) == []
