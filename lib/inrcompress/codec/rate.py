"""A differentiable estimate of the coded size of quantized parameters (the rate term of a fit).

What it estimates: the arithmetic coder's payload (codec/entropy) for a network's declared tensors
quantized to nearest at given step sizes. Per tensor the symbols are modelled as a quantized Laplace
around the tensor's mean with the maximum-likelihood scale (mean |q - mean|), the model the coder's
"laplace" entry states per tensor (entropy/tables.py: Param); each symbol q costs
-log2(F(q + 1/2) - F(q - 1/2)) bits. Calibration against the real coder: the coder takes the
smallest of its models, on fitted SIRENs its "adaptive" one, which states no per-tensor parameters
and codes about 3.5 % fewer symbol bits than the Laplace, so that the Laplace's symbol bits alone
(its ~88 bits of parameters per tensor left out) match the real payload: within 0.5 % at 6, 7 and
8 bits for widths 16, 24 and 32 fitted 300-400 steps (2026-12-01); tests/test_rate_estimate.py
checks 5 % on fitted networks.

RateTerm puts the estimate into a fit as a parameter term (fit/losses.py's ParameterTerm protocol;
the codec does not import fit: the term is duck-typed): rate_lambda x estimated bits per pixel.

Differentiable: the rounding is straight-through (the forward value is the real symbol, the
gradient that of the unrounded value), so the estimate equals the cost of the real symbols while
its gradient moves weights toward cheaper ones. Units: bits. Steps are given, not differentiated
(they are what the encoder will use, chosen outside: codec/quant.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# The stream's model byte and the range coder's last, partly filled 32-bit word.
STREAM_BITS = 8.0 + 16.0
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
    mass = torch.where(inside, 1.0 - 0.5 * torch.exp(-(0.5 - distance) / scale) - 0.5 * torch.exp(-far / scale),
                       0.5 * (torch.exp(-near / scale) - torch.exp(-far / scale)))
    bits = -torch.log2(mass.clamp_min(2.0 ** -MAX_SYMBOL_BITS))
    return bits.sum(dim=1)


def tensor_bits(values: torch.Tensor, steps: torch.Tensor, bitwidth: int) -> torch.Tensor:
    """Estimated coded bits of one declared tensor of N networks: values (N, *shape), steps (N,)
    (float, > 0), symbols round(values / step) clamped to the bitwidth's integer range; (N,) bits."""
    qmax = (1 << (int(bitwidth) - 1)) - 1
    u = values.flatten(1) / steps.to(values.dtype).view(-1, 1)
    return laplace_symbol_bits(straight_through_round(u).clamp(-qmax - 1, qmax))


def network_bits(tensors: Sequence[torch.Tensor], steps: Sequence[torch.Tensor], bitwidth: int) -> torch.Tensor:
    """Estimated arithmetic payload bits of N networks' declared tensors (each (N, *shape)) at their
    steps (each (N,)): the sum of tensor_bits plus STREAM_BITS; (N,)."""
    total = sum(tensor_bits(t, s, bitwidth) for t, s in zip(tensors, steps))
    return total + STREAM_BITS


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

    def steps(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per tensor the (N,) steps the encoder would choose for these values, refreshed every
        STEP_REFRESH_CALLS calls."""
        from inrcompress.codec.quant import choose_step_size, scaled_steps

        if self._steps is None or self._calls % STEP_REFRESH_CALLS == 0:
            per_signal = [scaled_steps([choose_step_size(t[n], self.bitwidth) for t in tensors], self.step_scale)
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
