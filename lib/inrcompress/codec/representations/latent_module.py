"""The torch module of a latent-grid representation (codec/representations/latent.py): latents,
upsampling (bicubic or learned), synthesis (with LatentGridConv's convolutions), the float ARM and
its differentiable rate term."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inrcompress.codec import latent_coding
from inrcompress.codec.representations.latent import BICUBIC_DOUBLING_HALF_TAPS, LatentGrid
from inrcompress.errors import InrError

# The smallest probability the training rate term gives a latent (constriction's is 2^-24 of the
# 24-bit range coder; a floor keeps the gradient finite far in the tails).
MIN_PROBABILITY = 2.0 ** -16


def pixel_indices(coords: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Flat row-major pixel indices of grid coordinates (signals.grid.coordinate_grid: entry k of a
    point is 2 i_k / (n_k - 1) - 1)."""
    rows = torch.round((coords[:, 0].double() + 1) / 2 * max(height - 1, 1)).long().clamp_(0, height - 1)
    cols = torch.round((coords[:, 1].double() + 1) / 2 * max(width - 1, 1)).long().clamp_(0, width - 1)
    return rows * width + cols


def synthesis_forward(x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> torch.Tensor:
    """(N, in) -> (N, out): the per-pixel MLP (ReLU between layers). It runs on the transposed
    (features, N) layout, where every product has the long pixel axis as its columns: measured at
    384 x 256 pixels on one core, a fit step's synthesis costs half of what (N, features) costs."""
    x = x.t()
    for i, (w, b) in enumerate(zip(weights, biases)):
        x = torch.addmm(b[:, None], w, x)
        if i < len(weights) - 1:
            x = F.relu(x)
    return x.t()


def bicubic_matrix(size_in: int, size_out: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(size_out, size_in): F.interpolate's bicubic resampling (align_corners=False, borders
    replicated) of one axis as a matrix. It is made by resampling the identity, so its entries are
    F.interpolate's own tap weights; a grid resampled to (H, W) is rows @ grid @ cols.T, the same
    values up to float summation order (bicubic is separable)."""
    eye = torch.eye(size_in, dtype=dtype).reshape(size_in, 1, size_in, 1)
    return F.interpolate(eye, size=(size_out, 1), mode="bicubic", align_corners=False)[:, 0, :, 0].t().contiguous()


def resample(grid: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """rows @ grid @ cols.T, the products in the cheaper order (multiply-accumulates)."""
    (height, h), (width, w) = rows.shape, cols.shape
    if height * h * w + height * w * width <= h * w * width + height * h * width:
        return (rows @ grid) @ cols.t()
    return rows @ (grid @ cols.t())


def double_grids(stack: torch.Tensor, half_taps: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) -> (1, C, 2h, 2w): every channel through the separable transposed convolution
    (stride 2) of the symmetric 8-tap filter [half_taps, reversed half_taps], borders replicated;
    with BICUBIC_DOUBLING_HALF_TAPS it equals F.interpolate(scale_factor=2, mode="bicubic")."""
    taps = torch.cat([half_taps, half_taps.flip(0)])
    channels, (rows, cols) = stack.shape[1], stack.shape[2:]
    padded = F.pad(stack, (2, 2, 2, 2), mode="replicate")
    out = F.conv_transpose2d(padded, taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1), stride=(2, 1), groups=channels)
    out = F.conv_transpose2d(out, taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1), stride=(1, 2), groups=channels)
    # Input row i lands on output rows 2i - 3 .. 2i + 4; the 2-row pad shifts that by 4, the
    # transposed convolution's own reach by 3.
    return out[:, :, 7:7 + 2 * rows, 7:7 + 2 * cols]


class LearnedUpsampling(nn.Module):
    """The doubling filters of LatentGridConv's learned upsampling: taps (levels - 1, 4), row l the
    half filter of the doubling into grid l."""

    def __init__(self, levels: int):
        super().__init__()
        self.taps = nn.Parameter(torch.tensor([BICUBIC_DOUBLING_HALF_TAPS] * (levels - 1)))

    def forward(self, latents: Sequence[torch.Tensor]) -> torch.Tensor:
        """(levels, H, W): every grid at the size of grid 0."""
        stack = latents[-1][None, None]
        for level in range(len(latents) - 2, -1, -1):
            rows, cols = latents[level].shape
            doubled = double_grids(stack, self.taps[level])[:, :, :rows, :cols]
            stack = torch.cat([latents[level][None, None], doubled], dim=1)
        return stack[0]


def laplace_bits(z: torch.Tensor, mu: torch.Tensor, log2_scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(z) per latent under a Laplace(mu, 2^log2_scale) discretized to unit bins, with mu and
    the scale clamped to the coder's ranges and P floored at MIN_PROBABILITY."""
    mu = mu.clamp(-latent_coding.ZMAX, latent_coding.ZMAX + 1 - 1 / latent_coding.MU_FRACTIONS)
    scale = torch.exp2(log2_scale.clamp(latent_coding.LOG2_SCALE_MIN, latent_coding.LOG2_SCALE_MAX))
    hi = (z + 0.5 - mu) / scale
    lo = (z - 0.5 - mu) / scale
    # 0.5 sign(t) (1 - exp(-|t|)) differences, written as expm1 so the centre keeps its precision.
    cdf_hi = -0.5 * torch.sign(hi) * torch.expm1(-hi.abs())
    cdf_lo = -0.5 * torch.sign(lo) * torch.expm1(-lo.abs())
    return -torch.log2((cdf_hi - cdf_lo).clamp_min(MIN_PROBABILITY))


class LatentImageModel(nn.Module):
    """The fitted module of a LatentGrid: latents (float parameters; integers once quantized), the
    synthesis and the ARM."""

    def __init__(self, representation: LatentGrid):
        super().__init__()
        self.representation = representation
        rep = representation
        self.latents = nn.ParameterList([nn.Parameter(torch.zeros(h, w)) for h, w in rep.grid_shapes()])
        self.synthesis = nn.ModuleList(nn.Linear(a, b) for a, b in zip(rep.dims("synthesis")[:-1],
                                                                       rep.dims("synthesis")[1:]))
        channels = rep.out_features
        self.conv = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1, padding_mode="replicate")
                                  for _ in range(rep.synthesis_convs))
        for conv in self.conv:  # residual: start as the identity
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        if rep.upsampling == "learned" and rep.levels > 1:
            self.upsampling = LearnedUpsampling(rep.levels)
        else:
            self.upsampling = None
        self.arm = nn.ModuleList(nn.Linear(a, b) for a, b in zip(rep.dims("arm")[:-1], rep.dims("arm")[1:]))
        with torch.no_grad():  # start from a wide, centred latent distribution
            self.arm[-1].weight.mul_(0.1)
            self.arm[-1].bias.copy_(torch.tensor([0.0, 1.0]))
        self._picture: tuple[tuple, torch.Tensor] | None = None
        self._bicubic: tuple | None = None

    # -- pixels ----------------------------------------------------------------------------------

    def features(self, latents: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """(H*W, levels): every grid upsampled to the image (grid 0 as it is); a transposed view of
        the (levels, H*W) planes."""
        latents = list(self.latents) if latents is None else latents
        if self.upsampling is not None:
            return self.upsampling(latents).reshape(len(latents), -1).t()
        planes = [latents[0].reshape(1, -1)]
        for grid, (rows, cols) in zip(latents[1:], self._bicubic_matrices(latents[0])):
            planes.append(resample(grid, rows, cols).reshape(1, -1))
        return torch.cat(planes).t()

    def _bicubic_matrices(self, like: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per coarser grid, the (rows, cols) matrices of its bicubic upsampling to the image
        (bicubic_matrix), on like's device and dtype; cached. Matrix products instead of
        F.interpolate: its backward pass cost a fit step as much as the rest of the synthesis."""
        key = (like.device, like.dtype)
        if self._bicubic is None or self._bicubic[0] != key:
            height, width = self.representation.height, self.representation.width
            matrices = [(bicubic_matrix(h, height, like.dtype).to(like.device),
                         bicubic_matrix(w, width, like.dtype).to(like.device))
                        for h, w in self.representation.grid_shapes()[1:]]
            self._bicubic = (key, matrices)
        return self._bicubic[1]

    def values(self, latents: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """(H*W, channels): the synthesis on the upsampled latents, values in [-1, 1] scale."""
        values = synthesis_forward(self.features(latents), [m.weight for m in self.synthesis],
                                   [m.bias for m in self.synthesis])
        if not len(self.conv):
            return values
        rep = self.representation
        picture = values.t().reshape(1, rep.out_features, rep.height, rep.width)
        for i, conv in enumerate(self.conv):
            residual = conv(picture)
            picture = picture + (F.relu(residual) if i < len(self.conv) - 1 else residual)
        return picture.reshape(rep.out_features, -1).t()

    @torch.no_grad()
    def picture_values(self) -> torch.Tensor:
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if self._picture is None or self._picture[0] != key:
            self._picture = (key, self.values())
        return self._picture[1]

    # -- latents and their rate ------------------------------------------------------------------

    @staticmethod
    def rounded(latents: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Straight-through rounding and clamping to the coder's range: forward the integers the
        file codes, gradient the identity (elementwise: latents of any shape)."""
        z = latent_coding.ZMAX
        return [g + (torch.round(g).clamp(-z, z) - g).detach() for g in latents]

    def rounded_latents(self) -> list[torch.Tensor]:
        return self.rounded(self.latents)

    def integer_latents(self) -> list[torch.Tensor]:
        """The latents rounded and clamped to the coder's range, int64."""
        z = latent_coding.ZMAX
        return [torch.round(g.detach()).clamp_(-z, z).to(torch.int64).cpu() for g in self.latents]

    def latents_and_contexts(self, latents: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every latent (N,) and its causal neighbours (arm_context, N), 0 outside its grid: what
        the ARM sees (latent_coding's CONTEXT_OFFSETS), grid by grid in raster order (not the
        coding order: the rate is a sum). Shifted views of each zero-padded grid: cheaper, forward
        and backward, than gathering by index."""
        pad = latent_coding.PAD
        offsets = latent_coding.context_offsets(self.representation.arm_context)
        values, contexts = [], []
        for grid in latents:
            rows, cols = grid.shape
            padded = F.pad(grid, (pad, pad, pad, pad))
            contexts.append(torch.stack([padded[pad + dy:pad + dy + rows, pad + dx:pad + dx + cols]
                                         for dy, dx in offsets]).reshape(len(offsets), -1))
            values.append(grid.reshape(-1))
        return torch.cat(values), torch.cat(contexts, dim=1)

    def arm_forward(self, contexts: torch.Tensor) -> torch.Tensor:
        """(arm_context, N) -> (2, N): the float ARM's mean and log2 scale per latent."""
        x = contexts
        for i, layer in enumerate(self.arm):
            x = torch.addmm(layer.bias[:, None], layer.weight, x)
            if i < len(self.arm) - 1:
                x = F.relu(x)
        return x

    def latent_bits(self, latents: Sequence[torch.Tensor]) -> torch.Tensor:
        """Total bits of the given (rounded or noisy) latents under the float ARM, differentiable."""
        values, contexts = self.latents_and_contexts(latents)
        out = self.arm_forward(contexts)
        return laplace_bits(values, out[0], out[1]).sum()

    @torch.no_grad()
    def load_integer_latents(self, grids: Sequence[np.ndarray]) -> None:
        for parameter, grid in zip(self.latents, grids):
            parameter.copy_(torch.from_numpy(np.asarray(grid, dtype=np.float32)))

    def fixed_point_arm(self, error: type[InrError] = InrError) -> latent_coding.FixedPointArm:
        layers = [(m.weight.detach().cpu().double().numpy(), m.bias.detach().cpu().double().numpy()) for m in self.arm]
        return latent_coding.FixedPointArm(layers, self.representation.arm_context, error)
