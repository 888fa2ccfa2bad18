"""Coordinate encodings and the INR MLP (spec section 3).

Coordinates are in [-1, 1]; for images the first component is the row (y), the second the column (x).
The network is an ordinary nn.Module, so torch.func.functional_call works on it unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from inrcompress.config import ModelConfig

SIREN_OMEGA = 30.0


class NerfEncoding(nn.Module):
    """[x_1..x_d, sin(s^0 pi x_1), cos(s^0 pi x_1), sin(s^0 pi x_2), ..., cos(s^(F-1) pi x_d)].

    Output size d + 2 d F (66 for d=2, F=16).
    """

    def __init__(self, in_features: int, num_frequencies: int, scale: float):
        super().__init__()
        self.in_features = in_features
        self.num_frequencies = num_frequencies
        # Python floats, as the paper computes them, then one rounding to float32.
        freqs = [(scale ** i) * math.pi for i in range(num_frequencies)]
        self.register_buffer("frequencies", torch.tensor(freqs, dtype=torch.float32), persistent=False)
        self.out_dim = in_features + 2 * in_features * num_frequencies

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        angles = coords.unsqueeze(-2) * self.frequencies.unsqueeze(-1)  # (..., F, d)
        sincos = torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1)  # (..., F, d, 2)
        return torch.cat((coords, sincos.flatten(-3)), dim=-1)


class PositionalEncoding(nn.Module):
    """Tancik et al. positional features: frequencies f_k = s^(k/F); per coordinate j
    [sin(2 pi f_k x_j) for k, cos(2 pi f_k x_j) for k]; output size 2 d F, no raw coordinates."""

    def __init__(self, in_features: int, num_frequencies: int, scale: float):
        super().__init__()
        freqs = [scale ** (k / num_frequencies) for k in range(num_frequencies)]
        self.register_buffer("frequencies", torch.tensor(freqs, dtype=torch.float32), persistent=False)
        self.out_dim = 2 * in_features * num_frequencies

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * coords.unsqueeze(-1) * self.frequencies  # (..., d, F)
        return torch.cat((torch.sin(angles), torch.cos(angles)), dim=-1).flatten(-2)


class GaussianEncoding(nn.Module):
    """Tancik et al. Gaussian features [sin(2 pi x B^T), cos(2 pi x B^T)], B ~ scale * N(0, 1) of
    shape (F, d), drawn from `seed` on the CPU so that a decoder rebuilds B from the seed alone."""

    def __init__(self, in_features: int, num_frequencies: int, scale: float, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(int(seed))
        matrix = torch.randn(num_frequencies, in_features, generator=generator) * scale
        self.register_buffer("B", matrix)
        self.out_dim = 2 * num_frequencies

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * coords @ self.B.T
        return torch.cat((torch.sin(angles), torch.cos(angles)), dim=-1)


class IdentityEncoding(nn.Module):
    def __init__(self, in_features: int):
        super().__init__()
        self.out_dim = in_features

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return coords


def make_encoding(cfg: ModelConfig) -> nn.Module:
    if cfg.encoding == "nerf":
        return NerfEncoding(cfg.in_features, cfg.ff_dims, cfg.encoding_scale)
    if cfg.encoding == "positional":
        return PositionalEncoding(cfg.in_features, cfg.ff_dims, cfg.encoding_scale)
    if cfg.encoding == "gauss":
        return GaussianEncoding(cfg.in_features, cfg.ff_dims, cfg.encoding_scale, cfg.gauss_seed)
    return IdentityEncoding(cfg.in_features)


def activation_fn(name: str):
    """The nonlinearity applied after every linear layer but the last: sin(30 z) or relu."""
    if name == "sine":
        return lambda z: torch.sin(SIREN_OMEGA * z)
    return torch.relu


def mlp_forward(features: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor],
                activation: str) -> torch.Tensor:
    """The MLP as a function of its tensors. Taking tensors as arguments (not a module) lets one
    torch.compile'd graph serve every model of the same shapes without recompiling."""
    act = activation_fn(activation)
    x = features
    for w, b in zip(weights[:-1], biases[:-1]):
        x = act(torch.nn.functional.linear(x, w, b))
    return torch.nn.functional.linear(x, weights[-1], biases[-1])


def stacked_mlp_sse_grads(features: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor],
                          activation: str, targets: torch.Tensor, scale: float,
                          split_rows: int = 0
                          ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], torch.Tensor | None]:
    """scale * sum of squared errors of N stacked networks, and its gradients, by explicit backprop.

    The same numbers as mlp_forward per network + autograd (tests/test_batched.py), first order only.
    Written out, a fitting step builds no autograd graph, the shared first-layer input gives one
    GEMM for all networks' weight gradients, and torch.compile sees forward and backward as one
    graph: 1.5x faster than autograd on the CPU (benchmarks/RESULTS.md, section 2).
    features: (P, in) shared or (N, P, in); targets (N, P, out); returns (N,) losses, the weight
    gradients (N, out, in), the bias gradients (N, out) and None.
    split_rows > 0 computes each weight gradient as sums over blocks of that many rows (P must be
    a multiple): a GEMM that reduces over a few hundred thousand rows into a 32x32 output leaves most
    of a GPU idle, one per block does not.
    Under torch.compile the elementwise work fuses into one pass per layer and the GEMMs stay
    library calls.
    features may also be a pair (rows (k, in), column_part (N, w, out)) for the k*w points of a
    row-major grid whose features are rows[i] + cols[j] (separable_grid_features), with
    column_part = cols @ W0^T computed once for all chunks of a step: the first layer is then a
    small product and a broadcast sum. Its returned weight gradient then covers the rows[i] terms
    only, and the fourth result holds each column's summed gradient (N, w, out): the caller adds
    (sum over chunks)^T @ cols once per step.
    """
    sine = activation == "sine"
    n_models = weights[0].shape[0]
    inputs, pre_activations = [], []
    x = features
    for k, (w, b) in enumerate(zip(weights, biases)):
        inputs.append(x)
        if isinstance(x, tuple):
            rows, column_part = x
            by_row = torch.matmul(rows, w.transpose(1, 2))  # (N, k, out)
            z = ((by_row.unsqueeze(2) + column_part.unsqueeze(1)) + b[:, None, None, :]).flatten(1, 2)
        else:
            # bmm then + bias: under torch.compile the add fuses into the activation, where
            # baddbmm first copied the broadcast bias into its output
            z = torch.bmm(x.expand(n_models, -1, -1) if x.dim() == 2 else x, w.transpose(1, 2)) + b.unsqueeze(1)
        if k < len(weights) - 1:
            if sine:
                z = z * SIREN_OMEGA  # kept for the backward pass: d sin(30 z)/dz = 30 cos(30 z)
                x = torch.sin(z)
            else:
                x = torch.relu(z)
            pre_activations.append(z)
        else:
            x = z
    error = x - targets
    losses = (error * error).sum(dim=(1, 2)) * scale
    grad = error * (2.0 * scale)  # d loss / d output, (N, P, out)
    weight_grads, bias_grads = [None] * len(weights), [None] * len(weights)
    column_sums = None
    for k in range(len(weights) - 1, -1, -1):
        x = inputs[k]
        bias_grads[k] = grad.sum(dim=1)
        if isinstance(x, tuple):
            rows, column_part = x
            per_point = grad.view(n_models, rows.shape[0], column_part.shape[1], grad.shape[2])
            weight_grads[k] = torch.matmul(per_point.sum(dim=2).transpose(1, 2), rows)
            column_sums = per_point.sum(dim=1)
        else:
            weight_grads[k] = _weight_grad(grad, x, split_rows)
        if k > 0:
            grad = torch.bmm(grad, weights[k])
            z = pre_activations[k - 1]
            if sine:
                grad = grad * torch.cos(z) * SIREN_OMEGA
            else:
                grad = grad * (z > 0)
    return losses, weight_grads, bias_grads, column_sums


def _weight_grad(grad: torch.Tensor, x: torch.Tensor, split_rows: int) -> torch.Tensor:
    """sum over rows p of grad[n, p, :]^T x[n, p, :] -> (N, out, in); x may be shared (P, in)."""
    n_models, n_rows, n_out = grad.shape
    if x.dim() == 2:
        # One GEMM for all networks: (N*out, P) @ (P, in); the shared input is read once.
        flat = grad.permute(0, 2, 1).reshape(n_models * n_out, n_rows)
        return (flat @ x).view(n_models, n_out, x.shape[1])
    if split_rows and n_rows > split_rows and n_rows % split_rows == 0:
        blocks = n_rows // split_rows
        partial = torch.bmm(grad.reshape(n_models * blocks, split_rows, n_out).transpose(1, 2),
                            x.reshape(n_models * blocks, split_rows, x.shape[2]))
        return partial.view(n_models, blocks, n_out, x.shape[2]).sum(dim=1)
    return torch.bmm(grad.transpose(1, 2), x)


def separable_grid_features(features: torch.Tensor, shape: tuple[int, int]
                            ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Split the features of a row-major (h, w) grid into rows (h, in) and cols (w, in) with
    features[i * w + j] == rows[i] + cols[j] exactly, or None if some feature depends on both
    coordinates (the Gaussian encoding). Every feature of the nerf, positional and identity
    encodings depends on one coordinate, so it sits in rows or cols and the other holds a zero.
    """
    h, w = shape
    grid = features.view(h, w, -1)
    by_row_only = (grid == grid[:, :1]).all(dim=1).all(dim=0)  # constant along each row
    by_col_only = (grid == grid[:1]).all(dim=1).all(dim=0)
    if not bool((by_row_only | by_col_only).all()):
        return None
    rows = torch.where(by_row_only, grid[:, 0], torch.zeros_like(grid[:, 0]))
    cols = torch.where(by_row_only, torch.zeros_like(grid[0]), grid[0])
    return rows.contiguous(), cols.contiguous()


class INR(nn.Module):
    """coordinates (..., in_features) in [-1, 1] -> values (..., out_features).

    `layers` holds hidden_layers + 2 nn.Linear: input layer, hidden layers, linear output layer.
    Every weight and bias of `layers` is what gets quantized and coded; the encoding has no
    trainable parameters (the Gaussian matrix is a buffer rebuilt from its seed).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoding = make_encoding(cfg)
        dims = [self.encoding.out_dim] + [cfg.hidden_dims] * (cfg.hidden_layers + 1) + [cfg.out_features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.activation = activation_fn(cfg.activation)  # used by layer-wise quantization
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """SIREN init for sine (weights U(+-sqrt(6/n)/30), first layer U(+-1/n)); Kaiming for relu.
        Biases keep nn.Linear's default U(+-1/sqrt(n)), as in the paper's code."""
        for i, layer in enumerate(self.layers):
            n_in = layer.in_features
            bound = 1.0 / math.sqrt(n_in)
            layer.bias.uniform_(-bound, bound)
            if self.cfg.activation == "sine":
                if i == 0:
                    layer.weight.uniform_(-1.0 / n_in, 1.0 / n_in)
                else:
                    w = math.sqrt(6.0 / n_in) / SIREN_OMEGA
                    layer.weight.uniform_(-w, w)
            else:
                nn.init.kaiming_normal_(layer.weight, a=0.0, nonlinearity="relu", mode="fan_in")

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Encoded coordinates; constant for a fixed grid, so the fit loop computes them once."""
        return self.encoding(coords)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The MLP on encoded coordinates."""
        return mlp_forward(features, [layer.weight for layer in self.layers],
                           [layer.bias for layer in self.layers], self.cfg.activation)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(coords))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the weights and biases that are coded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def predict(model: nn.Module, coords: torch.Tensor, chunk_rows: int = 65536) -> torch.Tensor:
    """The network's output at coords (N, d), in chunks of chunk_rows so that big signals need little memory."""
    parts = [model(coords[s:s + chunk_rows]) for s in range(0, coords.shape[0], chunk_rows)]
    return torch.cat(parts, dim=0)
