"""Paired comparison of two models on the same cases (``fetalbiometry.paired``)."""

from __future__ import annotations

import math

import pytest
from scipy.stats import wilcoxon

from fetalbiometry.paired import main, mean_per_case, paired_change, read_per_case


def test_paired_change_uses_the_shared_cases_only() -> None:
    values = {"a": 0.90, "b": 0.80}
    base = {"a": 0.85, "b": 0.85, "c": 0.10}
    change = paired_change(values, base)
    assert change.mean == pytest.approx(0.0)
    assert change.sd == pytest.approx(math.sqrt(2 * 0.05**2))
    assert (change.higher, change.lower, change.count) == (1, 1, 2)
    with pytest.raises(ValueError, match="share no test case"):
        paired_change({"x": 1.0}, base)


def test_the_p_value_is_the_two_sided_wilcoxon_test_of_the_differences() -> None:
    base = {f"case{i}": float(i) for i in range(12)}
    # every case higher by a different amount: a small p; the same figures mixed in sign: a large one
    higher = {name: value + 0.1 * (index + 1) for index, (name, value) in enumerate(base.items())}
    mixed = {name: value + 0.1 * (index + 1) * (-1) ** index for index, (name, value) in enumerate(base.items())}
    assert paired_change(higher, base).p_value == pytest.approx(wilcoxon([0.1 * (i + 1) for i in range(12)]).pvalue)
    assert paired_change(higher, base).p_value < 0.001
    assert paired_change(mixed, base).p_value > 0.5
    assert paired_change(higher, base).describe(decimals=2) == "+0.65 ± 0.36 (12/12 higher, p 0.00049)"


def test_no_p_value_without_a_difference_or_with_an_infinite_one() -> None:
    same = paired_change({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0})
    assert same.mean == 0.0 and (same.higher, same.lower) == (0, 0) and math.isnan(same.p_value)
    assert "p –" in same.describe()
    # a missed head has an infinite distance: an infinite mean change, an undefined SD and p
    missed_head = paired_change({"a": math.inf, "b": 1.0}, {"a": 1.0, "b": 2.0})
    assert missed_head.mean == math.inf and math.isnan(missed_head.sd) and math.isnan(missed_head.p_value)
    assert missed_head.describe() == "– (1/2 higher, a case is not finite)"
    assert (missed_head.higher, missed_head.lower, missed_head.count) == (1, 1, 2)


def test_read_per_case_takes_3d_and_2d_files_and_skips_unmeasured_frames(tmp_path) -> None:
    volumes = tmp_path / "metrics.csv"
    volumes.write_text("case,dice,adb_mm\nphantom-1,0.95,0.8\nphantom-2,0.90,inf\n", encoding="utf-8")
    frames = tmp_path / "per_image.csv"
    frames.write_text("name,adf_mm,no_measurement\na.png,1.5,\nb.png,,empty mask\n", encoding="utf-8")
    assert read_per_case(volumes, "dice") == {"phantom-1": 0.95, "phantom-2": 0.90}
    assert read_per_case(volumes, "adb_mm")["phantom-2"] == math.inf
    assert read_per_case(frames, "adf_mm") == {"a.png": 1.5}
    with pytest.raises(ValueError, match="has no column 'hd_mm'"):
        read_per_case(frames, "hd_mm")
    (tmp_path / "bad.csv").write_text("id,dice\nx,0.9\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no column naming the cases \(case or name\)"):
        read_per_case(tmp_path / "bad.csv", "dice")


def test_the_command_prints_one_row_per_file_and_one_line_on_bad_input(tmp_path, capsys) -> None:
    base, other = tmp_path / "base.csv", tmp_path / "other.csv"
    base.write_text("case,dice\np1,0.90\np2,0.80\np3,0.70\n", encoding="utf-8")
    other.write_text("case,dice\np1,0.91\np2,0.82\np3,0.73\n", encoding="utf-8")
    assert main([str(base), str(other), "--metric", "dice", "--scale", "100"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[2] == f"| {other} | +2.00 ± 1.00 (3/3 higher, p 0.25) |"
    assert main([str(base), str(tmp_path / "missing.csv"), "--metric", "dice"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("paired: ") and "missing.csv" in error and "\n" not in error


def test_comma_joined_runs_are_compared_by_their_mean_per_case(tmp_path, capsys) -> None:
    files = {}
    for name, text in {
        "a1": "case,dice\np1,0.90\np2,0.80\np3,0.70\n",
        "a2": "case,dice\np1,0.92\np2,0.84\np3,0.72\np4,0.50\n",
        "b1": "case,dice\np1,0.95\np2,0.85\np3,0.75\n",
    }.items():
        files[name] = tmp_path / f"{name}.csv"
        files[name].write_text(text, encoding="utf-8")
    # p4 is in one run only, so it is left out of the mean
    assert mean_per_case([files["a1"], files["a2"]], "dice") == pytest.approx({"p1": 0.91, "p2": 0.82, "p3": 0.71})
    assert main([f"{files['a1']},{files['a2']}", str(files["b1"]), "--metric", "dice", "--scale", "100"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == f"| {files['b1']} | +3.67 ± 0.58 (3/3 higher, p 0.25) |"
    (tmp_path / "other.csv").write_text("case,dice\nq1,0.9\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no case has a 'dice' value in every one of"):
        mean_per_case([files["a1"], tmp_path / "other.csv"], "dice")
