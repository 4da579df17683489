"""The Table 1 ablation runner (``fetalbiometry.segment3d.ablation``): commands, the table, a tiny real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fetalbiometry.segment3d.ablation import (
    PUBLISHED_TABLE1,
    PUBLISHED_TABLE2,
    TABLE1_VARIANTS,
    AblationRecipe,
    main,
    parameter_count,
)
from fetalbiometry.networks import VARIANTS, build_network

TINY = {
    "features": [4, 8, 8, 8],
    "attention_out_channels": 8,
    "attention_channels": 4,
    "phantom#spacing_range": [5.0, 6.0],
    "target_spacing": [6.0, 6.0, 6.0],
}


def _value_after(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_table1_rows_are_the_papers_networks_in_its_order() -> None:
    assert set(TABLE1_VARIANTS) == set(PUBLISHED_TABLE1) <= set(VARIANTS)
    assert TABLE1_VARIANTS[0] == "p-USegNet" and TABLE1_VARIANTS[-1] == "USegNet-DS-HAS-Ctx"
    assert PUBLISHED_TABLE1["USegNet-DS-HAS-Ctx"] == (96.05, 91.74, 92.42, 0.4793, 4.609)
    assert set(PUBLISHED_TABLE2) == {"SAM-1", "SAM-12", "UAM-1", "UAM-12"} <= set(VARIANTS)


def test_commands_select_the_variant_and_give_patches_only_to_the_patch_network(tmp_path: Path) -> None:
    recipe = AblationRecipe(num_train=3, num_val=2, num_test=5, epochs_per_level=4, patch_size=16, settings=TINY)
    train = recipe.train_command("p-USegNet", tmp_path / "p")
    assert train[1:5] == ["-m", "monai.bundle", "run", "training"]
    assert _value_after(train, "--variant") == "'p-USegNet'"
    assert _value_after(train, "--patch_size") == "[16, 16, 16]"
    assert _value_after(train, "--features") == "[4, 8, 8, 8]"
    assert _value_after(train, "--output_dir") == str(tmp_path / "p")
    assert (_value_after(train, "--phantom#num_train"), _value_after(train, "--phantom#num_val")) == ("3", "2")
    assert _value_after(train, "--epochs_per_level") == _value_after(train, "--val_interval") == "4"

    evaluate = recipe.evaluate_command("USegNet-DS", tmp_path / "ds")
    assert evaluate[4] == "evaluating"
    assert [Path(name).name for name in json.loads(_value_after(evaluate, "--config_file"))] == [
        "train.json",
        "evaluate.json",
    ]
    assert "--patch_size" not in evaluate
    assert _value_after(evaluate, "--ckpt_path") == str(tmp_path / "ds" / "models" / "model.pt")
    assert _value_after(evaluate, "--phantom#num_val") == "5"
    assert _value_after(evaluate, "--output_dir") == str(tmp_path / "ds" / "evaluation")


def test_parameter_count_is_that_of_the_network_the_config_builds() -> None:
    recipe = AblationRecipe(settings=TINY)
    network = build_network(
        "USegNet-DS-HAS-Ctx", features=(4, 8, 8, 8), attention_out_channels=8, attention_channels=4
    )
    assert parameter_count("USegNet-DS-HAS-Ctx", recipe) == sum(p.numel() for p in network.parameters())
    assert parameter_count("USegNet-DS-HAS-Ctx", recipe) > parameter_count("USegNet-DS", recipe)


def test_a_setting_that_is_not_json_is_refused_in_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--out", "unused", "--set", "features=[4,8"])
    assert stopped.value.code == 2
    assert "features: the value '[4,8' is not JSON" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_ablation_trains_evaluates_resumes_and_isolates_a_failing_network(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    settings = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    common = ["--out", str(tmp_path), "--num-train", "1", "--num-val", "1", "--num-test", "2"]
    common += ["--epochs-per-level", "1", *settings]
    # a 12³ patch cannot pass the 3 poolings of p-USegNet: its training fails, the others go on
    status = main([*common, "--patch-size", "12", "--variants", "USegNet-DS", "2D-USegNet", "p-USegNet"])
    output = capsys.readouterr()
    assert status == 1
    assert "p-USegNet: training exited with status 1" in output.err

    table = (tmp_path / "table1.md").read_text(encoding="utf-8").splitlines()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert list(rows) == ["p-USegNet", "2D-USegNet", "USegNet-DS"]  # the paper's order
    assert "not run" in rows["p-USegNet"] and "93.31" in rows["p-USegNet"]
    for variant in ("2D-USegNet", "USegNet-DS"):
        summary = json.loads((tmp_path / variant / "evaluation" / "metrics_summary.json").read_text("utf-8"))
        assert summary["n_cases"] == 2
        assert f"{100 * summary['metrics']['dice']['mean']:.2f} ± " in rows[variant]
        record = json.loads((tmp_path / variant / "training.json").read_text(encoding="utf-8"))
        assert f"| {record['parameters']:,} |" in rows[variant]
    assert "/2 higher, p " in rows["2D-USegNet"]
    assert "/2 higher, p " not in rows["USegNet-DS"]  # the base model is not compared with itself

    trained = (tmp_path / "USegNet-DS" / "models" / "model.pt").stat().st_mtime_ns
    assert main([*common, "--variants", "USegNet-DS"]) == 0
    assert "USegNet-DS: already evaluated" in capsys.readouterr().out
    # evaluated again without the largest-component step, into its own folder and table, not retrained
    raw = ["--evaluation", "raw", "--set", "keep_largest_component=false"]
    assert main([*common, *raw, "--variants", "USegNet-DS", "2D-USegNet"]) == 0
    assert (tmp_path / "USegNet-DS" / "models" / "model.pt").stat().st_mtime_ns == trained
    assert json.loads((tmp_path / "2D-USegNet" / "raw" / "metrics_summary.json").read_text("utf-8"))["n_cases"] == 2
    assert "keep_largest_component: False" in (tmp_path / "2D-USegNet" / "raw.log").read_text(encoding="utf-8")
    assert "/2 higher, p " in (tmp_path / "table1-raw.md").read_text(encoding="utf-8")

    # a trained network is not reused for another recipe
    assert main([*common, "--epochs-per-level", "2", "--evaluation", "other", "--variants", "USegNet-DS"]) == 1
    assert "with epochs_per_level=1, not 2" in capsys.readouterr().err
