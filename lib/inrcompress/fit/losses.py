"""What a fit minimises: a data term (today the MSE of the prediction) plus parameter terms.

A parameter term is a differentiable function of the parameters of N signals at once: it gets a dict
name -> tensor (N, *shape) (for one signal N = 1) and returns one value per signal (N,). Its
gradient comes from autograd, whichever step runs the data term (fit/steps.py), so a new term (a rate
estimate of the quantized weights, say) is one class with a `value` method and a `name`, the
TensorBoard scalar it is logged under.

    loss = mean over points and channels of (prediction - target)^2 + sum of the parameter terms
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch


class ParameterTerm(Protocol):
    name: str

    def value(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """One value per signal (N,) of params {name: (N, *shape)}; differentiable."""


class L1ToReference:
    """weight * sum |theta - theta_ref| per signal; theta_ref = 0 (references None) or one dict
    name -> tensor per signal (a MAML init)."""

    name = "l1_loss"

    def __init__(self, weight: float, references: list[dict[str, torch.Tensor]] | None = None):
        self.weight = float(weight)
        self.references = references
        self._stacked: dict[str, torch.Tensor] = {}

    def _reference(self, name: str, like: torch.Tensor) -> torch.Tensor:
        if name not in self._stacked:
            self._stacked[name] = torch.stack([r[name].to(like.device, like.dtype) for r in self.references])
        return self._stacked[name]

    def value(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        sums = []
        for name, p in params.items():
            offset = p - self._reference(name, p) if self.references is not None else p
            sums.append(offset.abs().flatten(1).sum(1))
        return self.weight * torch.stack(sums).sum(0)


@dataclass
class FitLoss:
    """The loss of a fit: the MSE data term (logged as `data_name`) plus `terms`."""

    data_name: str = "data_loss"
    terms: list[ParameterTerm] = field(default_factory=list)

    def term_values(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {term.name: term.value(params) for term in self.terms}

    def term_values_and_grads(self, params: dict[str, torch.Tensor]
                              ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """Values of the terms and their summed gradient w.r.t. params (None without terms), for a
        step that does not run autograd itself."""
        if not self.terms:
            return {}, None
        with torch.enable_grad():
            leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
            values = self.term_values(leaves)
            grads = torch.autograd.grad(summed(values.values()).sum(), list(leaves.values()), allow_unused=True)
        grads = {k: g if g is not None else torch.zeros_like(params[k]) for k, g in zip(leaves, grads)}
        return {k: v.detach() for k, v in values.items()}, grads


def summed(tensors) -> torch.Tensor:
    """The sum of tensors, the first one unchanged when it is alone (keeps one-term results exact)."""
    total = None
    for t in tensors:
        total = t if total is None else total + t
    return total


def loss_for(l1_reg: float, references: list[dict[str, torch.Tensor]] | None = None,
             data_name: str = "data_loss", extra_terms: Sequence[ParameterTerm] = ()) -> FitLoss:
    """Today's loss: MSE + (when l1_reg > 0) the L1 term toward references (None: toward 0), plus
    extra_terms (e.g. codec.rate.RateTerm, the rate term of encode.py --rate_lambda: a term from
    outside fit, which plugs in through the ParameterTerm protocol)."""
    terms = [L1ToReference(l1_reg, references)] if l1_reg > 0 else []
    return FitLoss(data_name=data_name, terms=terms + list(extra_terms))
