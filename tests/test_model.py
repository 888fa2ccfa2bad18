import math

import pytest
import torch
from inrcompress.codec.representations import representation_of
from inrcompress.codec.representations.siren import SirenMLP
from inrcompress.config import ModelConfig
from inrcompress.signals.grid import coordinate_grid
from inrcompress.nn import INR, GaussianEncoding, NerfEncoding, PositionalEncoding, count_parameters
from torch.func import functional_call


def test_coordinate_grid_is_row_then_column_in_unit_range():
    grid = coordinate_grid((3, 5))
    assert grid.shape == (15, 2)
    assert grid[0].tolist() == [-1.0, -1.0]
    assert grid[4].tolist() == [-1.0, 1.0]  # first row, last column
    assert grid[5].tolist() == [0.0, -1.0]  # second row
    assert grid[-1].tolist() == [1.0, 1.0]
    assert grid[1, 1].item() == pytest.approx(2 * 1 / 4 - 1)


def test_nerf_encoding_values_and_layout():
    enc = NerfEncoding(in_features=2, num_frequencies=3, scale=1.4)
    x = torch.tensor([[0.25, -0.5]])
    out = enc(x)[0]
    assert enc.out_dim == 2 + 2 * 2 * 3 == out.numel()
    expected = [0.25, -0.5]
    for i in range(3):
        for c in (0.25, -0.5):
            a = (1.4 ** i) * math.pi * c
            expected += [math.sin(a), math.cos(a)]
    assert out.tolist() == pytest.approx(expected, abs=1e-6)


def test_nerf_output_sizes_of_the_paper():
    assert NerfEncoding(2, 16, 1.4).out_dim == 66
    assert NerfEncoding(2, 12, 1.4).out_dim == 50
    assert NerfEncoding(3, 16, 1.4).out_dim == 3 + 6 * 16


def test_positional_encoding_values_and_layout():
    enc = PositionalEncoding(in_features=2, num_frequencies=2, scale=4.0)
    x = torch.tensor([[0.1, 0.3]])
    out = enc(x)[0]
    freqs = [4.0 ** (k / 2) for k in range(2)]
    expected = []
    for c in (0.1, 0.3):
        expected += [math.sin(2 * math.pi * f * c) for f in freqs]
        expected += [math.cos(2 * math.pi * f * c) for f in freqs]
    assert enc.out_dim == 8
    assert out.tolist() == pytest.approx(expected, abs=1e-6)


def test_gaussian_encoding_is_rebuilt_from_its_seed():
    a, b, c = GaussianEncoding(2, 8, 6.0, seed=7), GaussianEncoding(2, 8, 6.0, seed=7), GaussianEncoding(2, 8, 6.0, 8)
    assert torch.equal(a.B, b.B) and not torch.equal(a.B, c.B)
    x = torch.tensor([[0.2, -0.7]])
    angles = 2 * math.pi * (x @ a.B.T)[0]
    assert a(x)[0].tolist() == pytest.approx(torch.cat([angles.sin(), angles.cos()]).tolist(), abs=1e-5)
    assert a.out_dim == 16


@pytest.mark.parametrize("width, expected", [(32, 5411), (48, 10419), (64, 16963), (96, 34659), (128, 58499)])
def test_parameter_counts_kodak(width, expected):
    assert count_parameters(INR(ModelConfig(hidden_dims=width, ff_dims=16, hidden_layers=3))) == expected


@pytest.mark.parametrize("width, expected", [(24, 3099), (32, 4899), (48, 9651), (64, 15939)])
def test_parameter_counts_celeba(width, expected):
    assert count_parameters(INR(ModelConfig(hidden_dims=width, ff_dims=12, hidden_layers=3))) == expected


def test_depth_is_input_plus_hidden_plus_output():
    model = INR(ModelConfig(hidden_dims=16, hidden_layers=3))
    assert len(model.layers) == 5
    assert [layer.out_features for layer in model.layers] == [16, 16, 16, 16, 3]


def test_siren_init_ranges():
    torch.manual_seed(0)
    model = INR(ModelConfig(hidden_dims=64, ff_dims=16))
    first = model.layers[0].weight
    assert first.abs().max() <= 1 / 66
    hidden_bound = math.sqrt(6 / 64) / 30
    for layer in model.layers[1:]:
        assert layer.weight.abs().max() <= hidden_bound
        assert layer.weight.abs().max() > 0.9 * hidden_bound  # really uniform over the range
    assert model.layers[1].bias.abs().max() > hidden_bound  # biases keep nn.Linear's wider init


@pytest.mark.parametrize("encoding", ["mlp", "nerf", "positional", "gauss"])
@pytest.mark.parametrize("activation", ["sine", "relu"])
def test_runs_under_functional_call(encoding, activation):
    torch.manual_seed(0)
    model = INR(ModelConfig(encoding=encoding, activation=activation, hidden_dims=8, hidden_layers=1, ff_dims=4))
    coords = coordinate_grid((4, 5))
    params = {k: v.detach() + 0.01 for k, v in model.named_parameters()}
    out = functional_call(model, params, (coords,))
    assert out.shape == (20, 3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(0.01)
        assert torch.allclose(model(coords), out, atol=1e-6)


@pytest.mark.parametrize("encoding", ["mlp", "nerf", "positional", "gauss"])
@pytest.mark.parametrize("in_features,out_features", [(2, 3), (2, 1), (3, 1)])
def test_siren_representation_declares_the_networks_tensors(encoding, in_features, out_features):
    """The codec's view of an INR: its declared tensors are INR.layers' weights and biases (shapes
    computed without building it), its linear layers chain them, and apply() is the forward pass."""
    cfg = ModelConfig(in_features=in_features, out_features=out_features, encoding=encoding, hidden_dims=7,
                      hidden_layers=2, ff_dims=3, gauss_seed=4)
    rep = representation_of(cfg)
    assert isinstance(rep, SirenMLP) and rep.in_features == in_features and rep.out_features == out_features
    torch.manual_seed(0)
    model = rep.build()
    assert representation_of(model) == rep
    params = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    assert [(spec.name, spec.shape) for spec in rep.tensor_specs()] == params
    assert rep.inputs_width() == model.encoding.out_dim
    layers = rep.linear_layers()
    assert [(layer.weight, layer.bias) for layer in layers] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert [layer.activation is None for layer in layers] == [False, False, False, True]
    coords = torch.rand(10, in_features) * 2 - 1
    shifted = [t.detach() + 0.01 for t in rep.tensors(model)]
    with torch.no_grad():
        out = rep.apply(shifted, rep.inputs(model, coords))
        for t in rep.tensors(model):
            t.add_(0.01)
        assert torch.equal(out, model(coords))
        assert torch.equal(rep.render(model, coords), model(coords))
