"""A differentiable estimate of the coded size of quantized parameters (the rate term of a fit).

What it estimates: the arithmetic coder's payload (codec/entropy) for a network's declared tensors
quantized to nearest at given step sizes. Its value and its gradient come from two models:

- value: the zeroth-order entropy of all the network's symbols pooled (one histogram), the code
  length of its real symbols. Calibrated against the real coder, which takes the smallest of its
  models (on fitted SIRENs its "adaptive" one): 0.96-1.00 x the real payload at 6, 7 and 8 bits on
  networks fitted with and without the rate term (2026-12-01, tests/test_rate_estimate.py checks
  5 %), where a per-tensor Laplace (the coder's "laplace" model) is off by up to 10 % on the peaky
  weights a rate-aware fit makes.
- gradient: that of a quantized Laplace per tensor (mean: the tensor's mean; scale: the
  maximum-likelihood mean |q - mean|; a symbol costs -log2(F(q + 1/2) - F(q - 1/2)) bits), a smooth
  pull of every weight toward cheaper symbols that a histogram lacks.

The rounding is straight-through (forward: the real symbols; backward: the identity), so the
estimate equals the pooled entropy of the real symbols while its gradient moves weights toward
cheaper ones. Units: bits. Steps are given, not differentiated (they are what the encoder will use,
chosen outside: codec/quant.py).

RateTerm puts the estimate into a fit as a parameter term (fit/losses.py's ParameterTerm protocol;
the codec does not import fit: the term is duck-typed): rate_lambda x estimated bits per pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# No symbol costs more than this (the range coder's smallest probability quantum is 2^-24).
MAX_SYMBOL_BITS = 24.0
# A Laplace scale below this (in steps) is a tensor of (almost) equal symbols.
MIN_SCALE = 0.05


def straight_through_round(u: torch.Tensor) -> torch.Tensor:
    """round(u) in the forward pass, the identity's gradient in the backward pass."""
    return u + (torch.round(u) - u).detach()


def laplace_symbol_bits(q: torch.Tensor) -> torch.Tensor:
    """Bits of the integer-valued symbols q (N, n) under a quantized Laplace fitted per row
    (mean: the row mean; scale: mean |q - mean|, at least MIN_SCALE); (N,) bits per row."""
    mean = q.mean(dim=1, keepdim=True)
    scale = (q - mean).abs().mean(dim=1, keepdim=True).clamp_min(MIN_SCALE)
    distance = (q - mean).abs()
    # P(|X - mean| in [d - 1/2, d + 1/2]) on the side of the symbol, written with the tails so
    # that far symbols keep a positive mass: 0.5 (exp(-(d - 1/2)/b) - exp(-(d + 1/2)/b)) for d >= 1/2.
    near = (distance - 0.5).clamp_min(0.0)
    far = distance + 0.5
    inside = distance < 0.5  # the interval holds the mean: 1 - both tails
    # The clamp changes no selected value: it keeps exp() of the branch torch.where discards finite
    # for symbols far out (hundreds of scales: a tensor whose values are tiny beside its step), whose
    # inf would make the gradient NaN.
    mass = torch.where(inside, 1.0 - 0.5 * torch.exp(-(0.5 - distance).clamp_min(0.0) / scale)
                       - 0.5 * torch.exp(-far / scale),
                       0.5 * (torch.exp(-near / scale) - torch.exp(-far / scale)))
    bits = -torch.log2(mass.clamp_min(2.0 ** -MAX_SYMBOL_BITS))
    return bits.sum(dim=1)


def symbols_of(values: torch.Tensor, steps: torch.Tensor, bitwidth: int) -> torch.Tensor:
    """round(values / step) clamped to the bitwidth's integer range, straight-through: values
    (N, *shape), steps (N,); (N, n) symbols (float, integer-valued)."""
    qmax = (1 << (int(bitwidth) - 1)) - 1
    u = values.flatten(1) / steps.to(values.dtype).view(-1, 1)
    return straight_through_round(u).clamp(-qmax - 1, qmax)


def pooled_entropy_bits(symbols: torch.Tensor, bitwidth: int) -> torch.Tensor:
    """n H per row of integer-valued symbols (N, n) in the bitwidth's range: the zeroth-order
    entropy code length of each row's histogram; (N,), not differentiable."""
    symbols = symbols.detach()
    finite = torch.isfinite(symbols).all(dim=1)
    # A diverged network (NaN weights) gets NaN bits, so that the fit's loss says so.
    q = torch.where(torch.isfinite(symbols), symbols, 0.0).to(torch.int64) + (1 << (int(bitwidth) - 1))
    counts = torch.zeros(q.shape[0], 1 << int(bitwidth), dtype=torch.float64, device=q.device)
    counts.scatter_add_(1, q, torch.ones_like(q, dtype=torch.float64))
    n = counts.sum(dim=1)
    bits = n * torch.log2(n) - torch.where(counts > 0, counts * torch.log2(counts.clamp_min(1.0)), 0.0).sum(dim=1)
    return torch.where(finite, bits, torch.nan)


def network_bits(tensors: Sequence[torch.Tensor], steps: Sequence[torch.Tensor], bitwidth: int) -> torch.Tensor:
    """Estimated arithmetic payload bits of N networks' declared tensors (each (N, *shape)) at their
    steps (each (N,)), (N,): the value is the pooled entropy of all their symbols, the gradient that
    of the per-tensor Laplace code lengths (see the module docstring)."""
    symbols = [symbols_of(t, s, bitwidth) for t, s in zip(tensors, steps)]
    laplace = sum(laplace_symbol_bits(q) for q in symbols)
    pooled = pooled_entropy_bits(torch.cat(symbols, dim=1), bitwidth).to(laplace.dtype)
    return laplace + (pooled - laplace).detach()


# Calls of RateTerm.value between two step searches (the steps follow the weights slowly).
STEP_REFRESH_CALLS = 50


class RateTerm:
    """weight x the estimated coded bits per pixel of N networks' declared tensors, quantized at
    `bitwidth` with the steps the encoder would choose (quant.choose_step_size times step_scale),
    recomputed from the current weights every STEP_REFRESH_CALLS calls and held fixed in between
    (not differentiated: the gradient says which weights are worth fewer bits at those steps).
    A fit parameter term (fit/losses.py ParameterTerm): value(params) -> (N,)."""

    name = "rate_bpp"

    def __init__(self, weight: float, pixels: int, tensor_names: Sequence[str], bitwidth: int,
                 step_scale: float = 1.0):
        from inrcompress.codec.quant import _check_bitwidth

        self.weight, self.pixels = float(weight), int(pixels)
        self.tensor_names, self.bitwidth = list(tensor_names), _check_bitwidth(bitwidth)
        self.step_scale = float(step_scale)
        self._steps: list[torch.Tensor] | None = None
        self._calls = 0

    @classmethod
    def for_model(cls, weight: float, architecture, pixels: int, bitwidth: int, step_scale: float = 1.0) -> RateTerm:
        """The term over every declared tensor of an architecture's representation: `architecture`
        is a network or anything else representation_of describes (a SIREN's ModelConfig)."""
        from inrcompress.codec.representations import representation_of

        return cls(weight, pixels, [spec.name for spec in representation_of(architecture).tensor_specs()], bitwidth,
                   step_scale)

    def steps(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per tensor the (N,) steps the encoder would choose for these values, refreshed every
        STEP_REFRESH_CALLS calls."""
        from inrcompress.codec.quant import choose_step_size, scaled_steps

        if self._steps is None or self._calls % STEP_REFRESH_CALLS == 0:
            # A network with NaN or infinite weights keeps unit steps (its bits are NaN anyway).
            per_signal = [scaled_steps([choose_step_size(t[n], self.bitwidth) for t in tensors], self.step_scale)
                          if all(bool(torch.isfinite(t[n]).all()) for t in tensors) else [1.0] * len(tensors)
                          for n in range(tensors[0].shape[0])]
            self._steps = [torch.tensor([s[k] for s in per_signal], dtype=tensors[k].dtype, device=tensors[k].device)
                           for k in range(len(tensors))]
        self._calls += 1
        return self._steps

    def bits(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Estimated payload bits (N,) of params {name: (N, *shape)}."""
        tensors = [params[name] for name in self.tensor_names]
        return network_bits(tensors, self.steps([t.detach() for t in tensors]), self.bitwidth)

    def value(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.weight * self.bits(params) / self.pixels
