"""Ensembles of 2D networks: the mean of their probabilities, the weights file and the command that writes it."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from fetalbiometry.planes2d import ensemble as plane_ensemble
from fetalbiometry.errors import InputError
from fetalbiometry.networks import MTLN
from fetalbiometry.planes2d.predictor import PlaneEnsemble, PlanePredictor, ensemble_size, load_plane_network

TINY_FEATURES = (8, 8, 16, 16, 16)


class ConstantNetwork(nn.Module):
    """Foreground probability ``p`` everywhere, plane probabilities ``plane`` and ellipse ``ellipse``."""

    def __init__(self, p: float, plane: tuple[float, float, float], ellipse: float) -> None:
        super().__init__()
        self.logit = torch.logit(torch.tensor(p))
        self.plane = torch.log(torch.tensor(plane))
        self.ellipse = ellipse

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, _, rows, columns = image.shape
        segmentation = torch.stack([torch.zeros(batch, rows, columns), self.logit.expand(batch, rows, columns)], dim=1)
        return {
            "segmentation": segmentation,
            "plane": self.plane.expand(batch, 3),
            "ellipse": torch.full((batch, 5), self.ellipse),
        }


class ConstantRegressor(nn.Module):
    def __init__(self, hc_max: float) -> None:
        super().__init__()
        self.register_buffer("hc_max", torch.tensor(hc_max))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.full((image.shape[0], 1), 0.5)


def test_ensemble_averages_probabilities_and_values():
    """Probabilities 0.9 and 0.3 average to 0.6 (the mean of their logits would give 0.69)."""
    ensemble = PlaneEnsemble([ConstantNetwork(0.9, (0.7, 0.2, 0.1), 1.0), ConstantNetwork(0.3, (0.1, 0.6, 0.3), 3.0)])
    output = ensemble(torch.zeros(2, 1, 4, 6))
    assert torch.softmax(output["segmentation"], dim=1)[:, 1] == pytest.approx(torch.full((2, 4, 6), 0.6))
    assert torch.softmax(output["plane"], dim=1) == pytest.approx(torch.tensor([[0.4, 0.4, 0.2]] * 2))
    assert output["ellipse"] == pytest.approx(torch.full((2, 5), 2.0))
    prediction = PlanePredictor(ensemble, (8, 12)).predict(torch.zeros(16, 24).numpy())
    interior = prediction.probability[2:-2, 2:-2]  # the frame's border interpolates with the outside
    assert interior == pytest.approx(torch.full(interior.shape, 0.6).numpy(), abs=1e-6)
    with pytest.raises(ValueError, match="at least two"):
        PlaneEnsemble([ConstantNetwork(0.9, (0.7, 0.2, 0.1), 1.0)])


def test_ensemble_of_regressors_needs_one_hc_normaliser():
    assert PlaneEnsemble([ConstantRegressor(400.0), ConstantRegressor(400.0)]).hc_max == 400.0
    predictor = PlanePredictor(PlaneEnsemble([ConstantRegressor(400.0)] * 2), (128, 128))
    assert predictor.predict(torch.zeros(128, 128).numpy()).hc_px == pytest.approx(200.0)  # 0.5 × hc_max
    with pytest.raises(InputError, match="different hc_max"):
        PlaneEnsemble([ConstantRegressor(400.0), ConstantRegressor(300.0)]).hc_max


def _saved_mtln(path, seed: int, ellipse_tuner: bool = True) -> MTLN:
    torch.manual_seed(seed)
    network = MTLN(features=TINY_FEATURES, ellipse_tuner=ellipse_tuner).eval()
    torch.save(network.state_dict(), path)
    return network


def test_combined_file_loads_as_the_mean_of_its_members(tmp_path, capsys):
    members = [_saved_mtln(tmp_path / f"member{index}.pt", seed=index) for index in range(2)]
    output = tmp_path / "ensemble.pt"
    assert plane_ensemble.main([str(output), str(tmp_path / "member0.pt"), str(tmp_path / "member1.pt")]) == 0
    assert "2 members" in capsys.readouterr().out
    assert ensemble_size(torch.load(output, weights_only=True)) == 2

    loaded = load_plane_network(MTLN(features=TINY_FEATURES), output).eval()
    assert isinstance(loaded, PlaneEnsemble) and len(loaded.members) == 2
    image = torch.rand(1, 1, 32, 64)
    with torch.no_grad():
        expected = torch.stack([torch.softmax(member(image)["segmentation"], dim=1) for member in members]).mean(0)
        assert torch.softmax(loaded(image)["segmentation"], dim=1) == pytest.approx(expected, abs=1e-6)

    single = MTLN(features=TINY_FEATURES)
    assert load_plane_network(single, tmp_path / "member0.pt") is single  # one network's file: no ensemble


def test_ensemble_size_of_a_single_network_is_zero():
    assert ensemble_size(MTLN(features=TINY_FEATURES).state_dict()) == 0
    assert ensemble_size({"members.0.weight": torch.zeros(1), "bias": torch.zeros(1)}) == 0  # not all members


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (["member0.pt"], "at least two members"),
        (["member0.pt", "single_task.pt"], "member 2 is not the architecture of member 1"),
        (["ensemble.pt", "member0.pt"], "member 1 is already an ensemble"),
        (["member0.pt", "missing.pt"], "model file not found"),
        (["member0.pt", "output.pt"], "is one of the members"),
    ],
)
def test_combine_refuses_bad_members_with_one_line(tmp_path, capsys, members, message):
    _saved_mtln(tmp_path / "member0.pt", seed=0)
    _saved_mtln(tmp_path / "member1.pt", seed=1)
    _saved_mtln(tmp_path / "single_task.pt", seed=2, ellipse_tuner=False)
    torch.save({"members.0.w": torch.zeros(1), "members.1.w": torch.zeros(1)}, tmp_path / "ensemble.pt")
    torch.save({"kept": torch.ones(1)}, tmp_path / "output.pt")
    before = (tmp_path / "output.pt").read_bytes()

    assert plane_ensemble.main([str(tmp_path / "output.pt")] + [str(tmp_path / name) for name in members]) == 1
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert (tmp_path / "output.pt").read_bytes() == before  # nothing written over


def test_a_file_of_one_member_is_refused(tmp_path):
    lone = tmp_path / "lone.pt"
    torch.save({f"members.0.{key}": value for key, value in MTLN(features=TINY_FEATURES).state_dict().items()}, lone)
    with pytest.raises(InputError, match="does not fit the network"):
        load_plane_network(MTLN(features=TINY_FEATURES), lone)
