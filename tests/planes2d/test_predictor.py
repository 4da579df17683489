"""The 2D predictor's geometry, the plane evaluation figures and the validation handler."""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn as nn

from fetalbiometry import BUNDLE_ROOT
from fetalbiometry.biometry.ellipse import Ellipse, ellipse_to_mask
from fetalbiometry.data import hc18
from fetalbiometry.data.hc18_dataset import HeadCrop
from fetalbiometry.data.synthetic import make_plane
from fetalbiometry.errors import InputError
from fetalbiometry.planes2d.evaluation import (
    PlaneCase,
    PlaneResult,
    ellipse_dice,
    ellipse_hausdorff_mm,
    evaluate_case,
    hc18_frames_seen_by,
    read_evaluation,
    summarize_by_trimester,
    summarize_planes,
    write_evaluation,
)
from fetalbiometry.planes2d import report as plane_report
from fetalbiometry.planes2d.predictor import PlanePredictor, load_plane_predictor, network_outputs
from fetalbiometry.planes2d.training import PlaneLoss, PlaneValidation, WeightAveraging, hc18_splits

HC18_DIR = Path(os.environ.get("HC18_DIR", Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hc18"))
FRAME_SHAPE = (540, 800)
TRUE_ELLIPSE = Ellipse(410.3, 262.7, 190.4, 151.2, 0.6)


class ThresholdNetwork(nn.Module):
    """Logits that say "foreground" where the image is bright: a network whose answer is known."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(40.0))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        foreground = self.gain * (image - 0.5)
        return torch.cat([-foreground, foreground], dim=1)


class CountingNetwork(ThresholdNetwork):
    """A :class:`ThresholdNetwork` that records the shape of every batch it is given, in ``calls``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, ...]] = []

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(image.shape))
        return super().forward(image)


def ellipse_frame(ellipse: Ellipse = TRUE_ELLIPSE) -> np.ndarray:
    return (ellipse_to_mask(ellipse, FRAME_SHAPE) * 255).astype(np.uint8)


@pytest.mark.parametrize("flip_averaging", [False, True])
def test_predictor_measures_on_the_frame_grid(flip_averaging):
    """The probability comes back onto the 540 x 800 frame from the 160 x 256 network grid."""
    predictor = PlanePredictor(ThresholdNetwork(), (160, 256), flip_averaging=flip_averaging)
    prediction, measurement = predictor.measure(ellipse_frame(), pixel_size=0.15)
    assert prediction.probability.shape == FRAME_SHAPE
    fitted = measurement.ellipse
    assert abs(fitted.cx - TRUE_ELLIPSE.cx) < 0.5 and abs(fitted.cy - TRUE_ELLIPSE.cy) < 0.5
    assert measurement.value_mm == pytest.approx(TRUE_ELLIPSE.circumference * 0.15, rel=0.005)
    assert measurement.bpd_mm == pytest.approx(2 * TRUE_ELLIPSE.b * 0.15, rel=0.01)


def test_head_crop_looks_again_at_a_small_head_only():
    """A small head is looked at twice, the second time in its window; a large one once."""
    network = CountingNetwork()
    calls = network.calls
    small = Ellipse(300.0, 220.0, 120.0, 90.0, 0.4)
    predictor = PlanePredictor(network, (160, 256), head_crop=HeadCrop())
    prediction, measurement = predictor.measure(ellipse_frame(small), pixel_size=0.15)
    assert len(calls) == 2 and prediction.probability.shape == FRAME_SHAPE
    top, left, rows, columns = prediction.window
    outside = np.ones(FRAME_SHAPE, dtype=bool)
    outside[top : top + rows, left : left + columns] = False
    assert not prediction.probability[outside].any()
    assert measurement.value_mm == pytest.approx(small.circumference * 0.15, rel=0.003)
    case = PlaneCase("small", ellipse_frame(small), 0.15, "head", small.circumference * 0.15, small)
    assert evaluate_case(predictor, case).second_look
    calls.clear()
    large = predictor.predict(ellipse_frame(Ellipse(400.0, 270.0, 250.0, 200.0, 0.0)))  # fills the frame
    assert len(calls) == 1 and large.window is None


def test_finer_look_sees_a_large_head_again_on_a_finer_grid():
    network = CountingNetwork()
    calls = network.calls
    large = Ellipse(400.0, 270.0, 260.0, 200.0, 0.0)  # too large for a second look at 160 x 256
    predictor = PlanePredictor(network, (160, 256), head_crop=HeadCrop(look_size=(224, 352)))
    prediction, measurement = predictor.measure(ellipse_frame(large), pixel_size=0.15)
    assert calls == [(1, 1, 160, 256), (1, 1, 224, 352)] and prediction.window is not None
    assert prediction.probability.shape == FRAME_SHAPE
    assert measurement.value_mm == pytest.approx(large.circumference * 0.15, rel=0.003)
    # tiled: the network sees the four 160 x 256 crops it was trained on, in one batch; a pixelwise
    # network then gives the whole look's probability wherever the tiles agree
    calls.clear()
    tiled = PlanePredictor(network, (160, 256), head_crop=HeadCrop(look_size=(224, 352), tiled=True))
    tiled_prediction, tiled_measurement = tiled.measure(ellipse_frame(large), pixel_size=0.15)
    assert calls == [(1, 1, 160, 256), (4, 1, 160, 256)] and tiled_prediction.window == prediction.window
    assert np.abs(tiled_prediction.probability - prediction.probability).max() < 1e-4
    assert tiled_measurement.value_mm == pytest.approx(measurement.value_mm, rel=1e-4)
    with pytest.raises(InputError, match="tiled needs a look_size"):
        HeadCrop(tiled=True)


def test_finer_look_for_large_heads_only_leaves_small_heads_their_look():
    network = CountingNetwork()
    calls = network.calls
    routed = HeadCrop(look_size=(224, 352), tiled=True, large_heads_only=True)
    predictor = PlanePredictor(network, (160, 256), head_crop=routed)
    small, large = Ellipse(300.0, 220.0, 120.0, 90.0, 0.4), Ellipse(400.0, 270.0, 260.0, 200.0, 0.0)
    for head, second_look in ((small, (1, 1, 160, 256)), (large, (4, 1, 160, 256))):
        calls.clear()
        prediction, measurement = predictor.measure(ellipse_frame(head), pixel_size=0.15)
        assert calls == [(1, 1, 160, 256), second_look] and prediction.window is not None
        assert measurement.value_mm == pytest.approx(head.circumference * 0.15, rel=0.003)
    with pytest.raises(InputError, match="large_heads_only needs a look_size"):
        HeadCrop(large_heads_only=True)


def test_predictor_refuses_bad_frames():
    predictor = PlanePredictor(ThresholdNetwork(), (160, 256))
    with pytest.raises(InputError, match="2D"):
        predictor.predict(np.zeros((2, 32, 32)))
    frame = np.zeros((64, 64), dtype=np.float32)
    frame[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        predictor.predict(frame)
    with pytest.raises(InputError, match="plane"):
        PlanePredictor(ThresholdNetwork(), (160, 256), plane="thorax")
    with pytest.raises(InputError, match="flip_averaging must be True or False; got 'false'"):
        PlanePredictor(ThresholdNetwork(), (160, 256), flip_averaging="false")  # a CLI override's string
    with pytest.raises(InputError, match="head_crop must be a HeadCrop or None"):
        PlanePredictor(ThresholdNetwork(), (160, 256), head_crop="None")


def test_regression_output_is_converted_to_frame_pixels():
    """A regressor's HC is in pixels of the network grid: divided by the letterbox scale for the frame."""

    class ConstantRegressor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("hc_max", torch.tensor(400.0))

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return torch.full((image.shape[0], 1), 0.5)

    prediction = PlanePredictor(ConstantRegressor(), (128, 128), zscore=True).predict(ellipse_frame())
    assert prediction.probability is None
    assert prediction.hc_px == pytest.approx(200.0 / (128 / 800))
    with pytest.raises(InputError, match="no segmentation"):
        prediction.mask


def test_network_outputs_by_kind():
    logits, scalar = torch.zeros(1, 2, 8, 8), torch.zeros(1, 1)
    assert network_outputs(logits)["segmentation"] is logits
    assert network_outputs(scalar)["hc"] is scalar
    assert network_outputs({"segmentation": logits, "plane": scalar})["plane"] is scalar


def test_ellipse_figures():
    shifted = replace(TRUE_ELLIPSE, cx=TRUE_ELLIPSE.cx + 4.0)
    assert ellipse_dice(TRUE_ELLIPSE, TRUE_ELLIPSE, FRAME_SHAPE) == 100.0
    assert ellipse_hausdorff_mm(TRUE_ELLIPSE, TRUE_ELLIPSE, 0.2) == pytest.approx(0.0, abs=1e-9)
    # a translation by 4 px moves every point by 4 px; the nearest point may be a little closer
    assert 0.2 * 3.5 < ellipse_hausdorff_mm(TRUE_ELLIPSE, shifted, 0.2) <= 0.2 * 4.0 + 1e-6
    overlap = ellipse_to_mask(TRUE_ELLIPSE, FRAME_SHAPE) & ellipse_to_mask(shifted, FRAME_SHAPE)
    expected = 100.0 * 2 * overlap.sum() / (2 * ellipse_to_mask(TRUE_ELLIPSE, FRAME_SHAPE).sum())
    assert ellipse_dice(TRUE_ELLIPSE, shifted, FRAME_SHAPE) == pytest.approx(expected, rel=1e-3)


def test_evaluate_case_and_summary(tmp_path):
    predictor = PlanePredictor(ThresholdNetwork(), (160, 256))
    reference_mm = TRUE_ELLIPSE.circumference * 0.1
    good = PlaneCase("good", ellipse_frame(), 0.1, "head", reference_mm, TRUE_ELLIPSE)
    empty = PlaneCase("empty", np.zeros(FRAME_SHAPE, dtype=np.uint8), 0.1, "head", reference_mm, TRUE_ELLIPSE)
    results = [evaluate_case(predictor, good), evaluate_case(predictor, empty)]
    assert results[0].adf_mm < 0.005 * reference_mm
    assert results[0].dsc_percent > 99.5 and results[0].hd_mm < 0.1
    assert results[1].value_mm is None and "empty mask" in results[1].no_measurement
    summary = write_evaluation(results, tmp_path)
    assert summary == {**summarize_planes(results), "seen_in_training": 0}
    assert summary["measured"] == 1 and list(summary["no_measurement"]) == ["empty"]
    assert summary["adf_mm"]["mean"] == pytest.approx(results[0].adf_mm)
    rows = (tmp_path / "per_image.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("name,plane,predicted_plane") and len(rows) == 3


def test_figures_of_the_shipped_model_on_the_hc18_frames_it_was_trained_on_are_flagged(tmp_path, caplog, capsys):
    """The shipped HC model has seen every annotated HC18 frame: evaluating it on them (or a copy of
    it) counts them and warns; another model, a missing file and other frames are not flagged."""
    frame = np.zeros((8, 8), dtype=np.uint8)
    cases = [PlaneCase(name, frame, 0.1, "head", 100.0, None) for name in ("010_HC.png", "023_2HC.png", "scan.png")]
    shipped = BUNDLE_ROOT / "models" / "hc_model.pt"
    copy = tmp_path / "copy.pt"
    copy.write_bytes(shipped.read_bytes())
    other = tmp_path / "mine.pt"
    other.write_bytes(b"not the shipped weights")
    assert hc18_frames_seen_by(shipped, cases) == hc18_frames_seen_by(copy, cases) == ["010_HC.png", "023_2HC.png"]
    assert hc18_frames_seen_by(other, cases) == hc18_frames_seen_by(tmp_path / "missing.pt", cases) == []
    results = [PlaneResult(case.name, "head", "head", 100.0, 101.0, 1.0, 1.0, 98.0, 1.0) for case in cases]
    summary = write_evaluation(results, tmp_path / "fit", hc18_frames_seen_by(copy, cases))
    assert summary["seen_in_training"] == 2 and "a fit, not an accuracy" in caplog.text
    plane_report.main([f"shipped={tmp_path / 'fit' / 'summary.json'}"])
    assert "| shipped (2 frames seen in training: a fit) | 3 / 3 |" in capsys.readouterr().out


def test_summary_and_table_go_plane_by_plane():
    results = [
        PlaneResult("h", "head", "head", 180.0, 182.0, 2.0, 2.0, 97.0, 1.0),
        PlaneResult("a", "abdomen", "head", 200.0, 190.0, -10.0, 10.0, 95.0, 3.0),
        PlaneResult("f", "femur", "femur", 40.0, 41.0, 1.0, 1.0),
    ]
    summary = summarize_planes(results)
    assert list(summary["planes"]) == ["head", "abdomen", "femur"]
    assert summary["plane_accuracy"] == pytest.approx(2 / 3)
    assert summary["planes"]["abdomen"]["plane_accuracy"] == 0.0
    assert summary["planes"]["femur"]["adf_mm"]["mean"] == 1.0 and summary["planes"]["femur"]["dsc_percent"] is None
    rows = plane_report.plane_table({"mt": summary}).splitlines()[2:]
    assert rows[1].split(" | ")[:5] == ["| mt", "abdomen", "1 / 1", "0.0", "95.00 ± 0.00"]
    assert rows[2].split(" | ")[-1] == "– |"


def test_report_keeps_the_frames_of_one_plane(tmp_path, capsys):
    results = [
        PlaneResult("h", "head", "head", 180.0, 182.0, 2.0, 2.0, 97.0, 1.0),
        PlaneResult("a", "abdomen", "abdomen", 200.0, 200.5, 0.5, 0.5, 99.5, 0.2),
        PlaneResult("f", "femur", "femur", 40.0, 40.1, 0.1, 0.1),
    ]
    write_evaluation(results, tmp_path / "mixed")
    write_evaluation(results[:1], tmp_path / "heads")
    mixed, heads = f"mixed={tmp_path / 'mixed' / 'summary.json'}", f"heads={tmp_path / 'heads' / 'summary.json'}"
    assert plane_report.main([mixed, heads, "--plane", "head", "--paired", "heads"]) == 0
    tables = capsys.readouterr().out.split("\n\n")
    assert len(tables) == 2  # no plane-by-plane table: one plane is left
    assert tables[0].splitlines()[2].startswith("| mixed | 1 / 1 | 97.00 ± 0.00 | 2.00 ± 0.00 | 2.00 ± 0.00 |")
    assert tables[1].splitlines()[2].startswith("| mixed | 1 |")
    assert plane_report.main([mixed, heads, "--plane", "femur"]) == 1
    assert capsys.readouterr().err == f"plane_report: {tmp_path / 'heads' / 'per_image.csv'} has no femur frames\n"


def test_plane_loss_takes_arguments_by_name():
    recorded = []

    class Recorder(nn.Module):
        def forward(self, *values):
            recorded.extend(values)
            return torch.tensor(0.0)

    output = {"segmentation": torch.ones(1, 2, 4, 4), "ellipse": torch.zeros(1, 5)}
    target = {"label": torch.zeros(1, 1, 4, 4), "ellipse": torch.ones(1, 5)}
    PlaneLoss(Recorder(), ["output:segmentation", "target:label", "output:ellipse", "target:ellipse"])(output, target)
    assert [value.sum().item() for value in recorded] == [32.0, 0.0, 0.0, 5.0]
    with pytest.raises(ValueError, match="output:"):
        PlaneLoss(Recorder(), ["segmentation"])


def test_validation_keeps_the_best_weights(tmp_path):
    network = ThresholdNetwork()
    case = PlaneCase("good", ellipse_frame(), 0.1, "head", TRUE_ELLIPSE.circumference * 0.1, TRUE_ELLIPSE)
    validation = PlaneValidation([case], lambda net: PlanePredictor(net, (160, 256)), tmp_path / "best.pt")
    engine = SimpleNamespace(network=network, state=SimpleNamespace(metrics={}, epoch=1))
    validation(engine)
    assert engine.state.metrics["val_no_measurement"] == 0 and engine.state.metrics["val_adf_mm"] < 0.2
    assert torch.load(tmp_path / "best.pt", weights_only=True)["gain"].item() == 40.0
    with torch.no_grad():
        network.gain.fill_(-40.0)  # now everything is background: no measurement, not saved
    validation(engine)
    assert engine.state.metrics["val_no_measurement"] == 1
    assert torch.load(tmp_path / "best.pt", weights_only=True)["gain"].item() == 40.0
    assert network.training


def test_validation_keeps_the_averaged_weights_when_asked(tmp_path):
    """With ``averaged``, the exponential moving average of the weights is validated and saved."""
    network = ThresholdNetwork()
    averaging = WeightAveraging(network, decay=0.75)
    averaging()  # the first update copies the weights: 40
    with torch.no_grad():
        network.gain.fill_(20.0)
    averaging()  # warm-up: the second update weighs the average by (1 + 1) / (10 + 1), not 0.75
    assert averaging.module.gain.item() == pytest.approx((2 * 40 + 9 * 20) / 11) and network.gain.item() == 20.0
    for _ in range(40):  # warmed up, (1 + n) / (10 + n) > 0.75 from n = 26: 0.75 * previous + 0.25 * 20
        averaging()
    with torch.no_grad():
        network.gain.fill_(60.0)
    averaging()
    assert averaging.module.gain.item() == pytest.approx(0.75 * 20 + 0.25 * 60)
    case = PlaneCase("good", ellipse_frame(), 0.1, "head", TRUE_ELLIPSE.circumference * 0.1, TRUE_ELLIPSE)
    validation = PlaneValidation([case], lambda net: PlanePredictor(net, (160, 256)), tmp_path / "best.pt", averaged=averaging)
    validation(SimpleNamespace(network=network, state=SimpleNamespace(metrics={}, epoch=1)))
    assert torch.load(tmp_path / "best.pt", weights_only=True)["gain"].item() == pytest.approx(30.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAveraging(network, decay=1.0)


def test_validation_without_frames_keeps_the_last_weights(tmp_path):
    """A final training on all the data has no validation frames: each epoch's weights replace the last."""
    network = ThresholdNetwork()
    validation = PlaneValidation([], lambda net: PlanePredictor(net, (160, 256)), tmp_path / "last.pt")
    engine = SimpleNamespace(network=network, state=SimpleNamespace(metrics={}, epoch=1))
    for gain in (40.0, -40.0):
        with torch.no_grad():
            network.gain.fill_(gain)
        validation(engine)
        assert torch.load(tmp_path / "last.pt", weights_only=True)["gain"].item() == gain


def test_validation_counts_a_wrong_plane_class_as_a_failure(tmp_path):
    """The same measurement is better with the right plane class, and a wrong class is never kept over it."""
    case = PlaneCase("head", ellipse_frame(), 0.1, "head", TRUE_ELLIPSE.circumference * 0.1, TRUE_ELLIPSE)
    plane = {"name": "abdomen"}
    best = tmp_path / "best.pt"
    validation = PlaneValidation([case], lambda net: PlanePredictor(net, (160, 256), plane=plane["name"]), best)
    engine = SimpleNamespace(network=ThresholdNetwork(), state=SimpleNamespace(metrics={}, epoch=1))
    validation(engine)
    assert engine.state.metrics["val_wrong_plane"] == 1 and engine.state.metrics["val_no_measurement"] == 0
    best.unlink()
    plane["name"] = "head"  # the same ADF, now with the right class: kept
    validation(engine)
    assert engine.state.metrics["val_wrong_plane"] == 0 and best.exists()
    best.unlink()
    plane["name"] = "abdomen"
    validation(engine)
    assert not best.exists()


def test_hc18_splits_are_by_subject_and_fixed():
    if not (HC18_DIR / hc18.TRAINING_CSV).is_file():
        pytest.skip(f"HC18 not found at {HC18_DIR} (set HC18_DIR)")
    splits = hc18_splits(HC18_DIR)
    subjects = {name: {record.subject_id for record in records} for name, records in splits.items()}
    assert not subjects["training"] & subjects["test"] and not subjects["validation"] & subjects["test"]
    assert not subjects["training"] & subjects["validation"]
    total = sum(len(records) for records in splits.values())
    assert total == len(hc18.training_records(HC18_DIR))
    assert math.isclose(len(subjects["test"]) / sum(map(len, subjects.values())), 0.25, abs_tol=0.01)
    assert [record.filename for record in hc18_splits(HC18_DIR)["test"]] == [r.filename for r in splits["test"]]


def test_comparison_table_puts_ours_beside_the_published(tmp_path, capsys):
    predictor = PlanePredictor(ThresholdNetwork(), (160, 256))
    case = PlaneCase("good", ellipse_frame(), 0.1, "head", TRUE_ELLIPSE.circumference * 0.1, TRUE_ELLIPSE)
    summary = write_evaluation([evaluate_case(predictor, case)], tmp_path)
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    assert plane_report.main([f"ours={tmp_path / 'bad.json'}"]) == 1
    capsys.readouterr()
    assert plane_report.main([f"ours, λ = 0.1={tmp_path / 'summary.json'}"]) == 0
    assert "\n| ours, λ = 0.1 | 1 / 1 |" in capsys.readouterr().out
    table = plane_report.comparison_table({"ours": summary}).splitlines()
    ours = table[2].split(" | ")
    assert ours[0] == "| ours" and ours[1] == "1 / 1"
    assert ours[4] == f"{summary['adf_mm']['mean']:.2f} ± 0.00"
    assert any(line.startswith("| MTLN (Sobhaninia et al. 2019), as reported | – | 96.84 |") for line in table)


def test_trimester_summary_splits_the_head_frames_by_their_reference_hc(tmp_path, capsys):
    # Hadlock's GA is 14 weeks at HC 89.4 mm and 28 weeks at 257.6 mm.
    results = [
        PlaneResult("small", "head", "head", 80.0, 82.0, 2.0, 2.0, 95.0, 1.0, second_look=True),
        PlaneResult("small-missed", "head", "head", 85.0, no_measurement="empty mask"),
        PlaneResult("mid", "head", "head", 180.0, 179.0, -1.0, 1.0, 98.0, 0.5),
        PlaneResult("large", "head", "head", 300.0, 306.0, 6.0, 6.0, 97.0, 2.0),
        PlaneResult("belly", "abdomen", "abdomen", 80.0, 81.0, 1.0, 1.0, 96.0, 1.0),
    ]
    summary = summarize_by_trimester(results)
    assert list(summary) == ["first", "second", "third"]
    assert (summary["first"]["images"], summary["first"]["measured"], summary["first"]["second_looks"]) == (2, 1, 1)
    assert summary["first"]["relative_adf_percent"]["mean"] == pytest.approx(2.5)
    assert summary["third"]["adf_mm"]["mean"] == pytest.approx(6.0)
    assert summarize_by_trimester(results[1:3]).keys() == {"first", "second"}
    assert summarize_by_trimester(results[4:]) == {}

    write_evaluation(results, tmp_path)
    assert read_evaluation(tmp_path / "per_image.csv") == results
    assert plane_report.main([f"ours={tmp_path / 'summary.json'}", "--by-trimester"]) == 0
    table = capsys.readouterr().out.split("\n\n")[1].splitlines()
    assert table[0].endswith("| HD (mm) | ADF / HC (%) |")
    assert table[0].startswith("| network | trimester | frames measured | second looks | DSC (%) |")
    assert table[2].startswith("| ours | first | 1 / 2 | 1 | 95.00 ± 0.00 | 2.00 ± 0.00 | 2.00 ± 0.00 |")
    csv_path = tmp_path / "per_image.csv"
    header, *rows = csv_path.read_text(encoding="utf-8").splitlines()
    assert header.endswith(",second_look") and rows[0].endswith(",True")
    csv_path.write_text("\n".join(line.rsplit(",", 1)[0] for line in [header, *rows]) + "\n", encoding="utf-8")
    assert [result.second_look for result in read_evaluation(csv_path)] == [False] * 5  # a 0.6.0 file
    (tmp_path / "per_image.csv").write_text("name,plane\nsmall,head\n", encoding="utf-8")
    assert plane_report.main([f"ours={tmp_path / 'summary.json'}", "--by-trimester"]) == 1
    assert "has no column predicted_plane" in capsys.readouterr().err


def test_paired_table_compares_the_frames_both_networks_measured(tmp_path, capsys):
    def result(name: str, adf: float | None, dsc: float | None = 97.0) -> PlaneResult:
        if adf is None:
            return PlaneResult(name, "head", "head", 180.0, no_measurement="empty mask")
        return PlaneResult(name, "head", "head", 180.0, 180.0 + adf, adf, adf, dsc, 1.0)

    base = [result("a", 1.0), result("b", 2.0), result("c", 3.0), result("d", None)]
    better = [result("a", 0.5), result("b", 1.0), result("c", None), result("d", 1.0)]
    write_evaluation(base, tmp_path / "base")
    write_evaluation(better, tmp_path / "better")
    arguments = [f"base={tmp_path / 'base' / 'summary.json'}", f"new={tmp_path / 'better' / 'summary.json'}"]
    assert plane_report.main([*arguments, "--paired", "base"]) == 0
    table = capsys.readouterr().out.split("\n\n")[1].splitlines()
    assert table[0].startswith("| network, change vs base | frames measured by both | ΔDSC (%) | ΔDF (mm) |")
    # frames a and b only: c and d were measured by one network each
    assert table[2] == (
        "| new | 2 | +0.00 ± 0.00 (0/2 higher, p –) | -0.75 ± 0.35 (0/2 higher, p 0.5) "
        "| -0.75 ± 0.35 (0/2 higher, p 0.5) | +0.00 ± 0.00 (0/2 higher, p –) |"
    )
    with pytest.raises(SystemExit):
        plane_report.main([*arguments, "--paired", "other"])
    assert "--paired 'other' is not one of the networks: base, new" in capsys.readouterr().err


def test_report_keeps_the_frames_one_network_looked_at_once_or_twice(tmp_path, capsys):
    def result(name: str, adf: float, second_look: bool) -> PlaneResult:
        return PlaneResult(name, "head", "head", 180.0, 180.0 + adf, adf, adf, 97.0, 1.0, second_look=second_look)

    write_evaluation([result("small", 1.0, True), result("large", 3.0, False)], tmp_path / "base")
    write_evaluation([result("small", 2.0, True), result("large", 1.0, True)], tmp_path / "new")
    arguments = [f"base={tmp_path / 'base' / 'summary.json'}", f"new={tmp_path / 'new' / 'summary.json'}"]
    assert plane_report.main([*arguments, "--looked-at-once-by", "base", "--paired", "base"]) == 0
    summary, paired = capsys.readouterr().out.split("\n\n")[:2]
    assert "\n| base | 1 / 1 | 97.00 ± 0.00 | 3.00 ± 0.00 | 3.00 ± 0.00 |" in summary  # the large head alone
    assert "\n| new | 1 / 1 | 97.00 ± 0.00 | 1.00 ± 0.00 | 1.00 ± 0.00 |" in summary
    assert paired.splitlines()[2].startswith("| new | 1 | +0.00 ± ") and "| -2.00 ± " in paired  # ΔDF, ΔADF
    assert plane_report.main([*arguments, "--looked-at-twice-by", "base"]) == 0
    assert "\n| new | 1 / 1 | 97.00 ± 0.00 | 2.00 ± 0.00 |" in capsys.readouterr().out  # the small head alone
    assert plane_report.main([*arguments, "--looked-at-once-by", "new"]) == 1
    assert "new looked once at no frame" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        plane_report.main([*arguments, "--looked-at-once-by", "other"])
    assert "is not one of the networks" in capsys.readouterr().err


def test_bfloat16_measures_the_head_as_float32():
    """The shipped HC model on a phantom plane, its network in bfloat16 (the default on CPUs with
    bfloat16 units) and in float32: the same HC to a fraction of a millimetre."""
    phantom = make_plane("head", 11, shape=(270, 400), image_model="cartesian")
    frame = sitk.GetArrayFromImage(phantom.image)
    predictor = load_plane_predictor(None, "mtln.json", "cpu")
    hc_mm = {}
    for bfloat16 in (False, True):
        predictor.bfloat16 = bfloat16
        hc_mm[bfloat16] = predictor.measure(frame, float(phantom.truth["pixel_size_mm"]))[1].value_mm
    assert hc_mm[True] == pytest.approx(hc_mm[False], abs=0.5)
