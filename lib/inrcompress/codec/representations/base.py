"""What a representation is: the interface every fitted model kind implements for the codec.

A representation is one kind of model fitted to a signal (the SIREN MLP of the paper, later latent
grids). An instance describes one architecture and holds no tensors: it builds the torch module
that is fitted, declares which of the module's tensors are quantized (ordered, named, with shapes
computed from the architecture alone, so a decoder allocates nothing before it has checked them),
writes its architecture as one file section (a declared list of named fields) and reads it back
with bounds checked first, and renders a signal from coordinates.

The quantizer (codec/quant.py) sees only this interface: step search, nearest rounding and
quantization-aware retraining work on `tensor_specs` / `tensors` / `apply`; AdaRound, which
reconstructs linear layers one at a time, additionally needs `linear_layers`, and a representation
without them is quantized without AdaRound.
"""

from __future__ import annotations

import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from inrcompress.errors import InrError

if TYPE_CHECKING:  # torch is imported where tensors are made, so a decoder checks a header without it
    import torch
    from torch import nn

# Rows per forward pass when a decoder renders a signal (bounds its memory; results do not depend on it).
RENDER_CHUNK_ROWS = 65536


@dataclass(frozen=True)
class Field:
    """One named field of a file section: a little-endian struct code ("B", "H", "I", "d", ...);
    with `choices`, the value is one of those strings, stored as its index."""

    name: str
    fmt: str
    choices: tuple[str, ...] = ()


def fields_struct(fields: Sequence[Field]) -> struct.Struct:
    return struct.Struct("<" + "".join(f.fmt for f in fields))


def pack_fields(fields: Sequence[Field], values: Mapping[str, Any]) -> bytes:
    """The bytes of `values` (one per field, enumerations as their strings) in field order."""
    raw = []
    for f in fields:
        value = values[f.name]
        raw.append(f.choices.index(value) if f.choices else value)
    try:
        return fields_struct(fields).pack(*raw)
    except struct.error as exc:
        raise InrError(f"a field value does not fit its storage: {exc}") from None


def unpack_fields(fields: Sequence[Field], data: bytes, error: type[InrError]) -> dict[str, Any]:
    """The field values stored in `data` (exactly fields_struct(fields).size bytes); an enumeration
    index outside its choices raises `error`."""
    values = dict(zip((f.name for f in fields), fields_struct(fields).unpack(data)))
    for f in fields:
        if f.choices:
            if values[f.name] >= len(f.choices):
                raise error(f"unknown {f.name} code {values[f.name]}")
            values[f.name] = f.choices[values[f.name]]
    return values


def check_range(values: Mapping[str, Any], name: str, lo: float, hi: float, error: type[InrError]) -> None:
    if not lo <= values[name] <= hi:
        raise error(f"{name} {values[name]} is outside the format's range {lo}..{hi}")


@dataclass(frozen=True)
class TensorSpec:
    """One quantized tensor: its name (the module's parameter name) and shape."""

    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class LinearLayer:
    """A linear layer y = activation(x W^T + b), for AdaRound: the indices of its weight (out, in)
    and bias (out,) in tensor_specs, and its activation (None: linear)."""

    weight: int
    bias: int
    activation: Callable[[torch.Tensor], torch.Tensor] | None


class Representation(ABC):
    """One architecture of one kind of fitted model. Subclasses are frozen dataclasses (equal
    architectures compare equal) registered with representations.register_representation.

    name: the registry key; file_id: its code in a .inr file (1..255, unique); fields: the named
    fields of its architecture section. in_features / out_features: the coordinate dimension and
    the number of values per coordinate (the signal's; the file stores them in the common fields).
    has_latent_stream: the file carries coded values beyond the quantized tensors (the latent
    grid's latents), in the container's latent section; such a representation implements
    encode_stream and load_stream.
    """

    name: ClassVar[str]
    file_id: ClassVar[int]
    fields: ClassVar[tuple[Field, ...]]
    has_latent_stream: ClassVar[bool] = False

    in_features: int
    out_features: int

    # -- architecture <-> file section ------------------------------------------------------------

    @abstractmethod
    def field_values(self) -> dict[str, Any]:
        """The value of every field of `fields`."""

    @classmethod
    @abstractmethod
    def from_fields(cls, values: Mapping[str, Any], in_features: int, out_features: int,
                    error: type[InrError] = InrError) -> Representation:
        """The architecture of a section's values. Checks every bound first (raising `error`) so
        that tensor_specs stays small and cheap; the caller then bounds the parameter count."""

    def check(self, error: type[InrError] = InrError) -> None:
        """Raise `error` if this architecture cannot be written (the bounds a reader enforces)."""
        type(self).from_fields(self.field_values(), self.in_features, self.out_features, error)

    # -- declared tensors --------------------------------------------------------------------------

    @abstractmethod
    def tensor_specs(self) -> list[TensorSpec]:
        """The quantized tensors in file order, from the architecture alone (nothing allocated)."""

    def linear_layers(self) -> list[LinearLayer] | None:
        """The chain of linear layers that apply() computes, input layer first, when the
        representation is one (AdaRound needs it); None otherwise."""
        return None

    def macs_per_point(self) -> int | None:
        """Multiply-accumulates of the decoder's matrix products per rendered point (pixel): for a
        chain of linear layers the sum of their in x out; None where the representation has none."""
        layers = self.linear_layers()
        if not layers:
            return None
        specs = self.tensor_specs()
        return sum(specs[layer.weight].numel for layer in layers)

    # -- the torch module --------------------------------------------------------------------------

    @abstractmethod
    def build(self) -> nn.Module:
        """A freshly initialised module of this architecture (what is fitted)."""

    @classmethod
    @abstractmethod
    def describe(cls, obj: Any) -> Representation | None:
        """The architecture of `obj` (a fitted module, or another description of it) if it is of
        this kind, else None."""

    def tensors(self, module: nn.Module) -> list[torch.Tensor]:
        """The module's live tensors of tensor_specs, in order, checked against the declared shapes."""
        params = dict(module.named_parameters())
        out = []
        for spec in self.tensor_specs():
            if spec.name not in params:
                raise InrError(f"the model has no tensor {spec.name}")
            if tuple(params[spec.name].shape) != spec.shape:
                raise InrError(f"{spec.name} has shape {tuple(params[spec.name].shape)}, the architecture "
                               f"declares {spec.shape}")
            out.append(params[spec.name])
        return out

    def inputs(self, module: nn.Module, coords: torch.Tensor) -> torch.Tensor:
        """What apply() takes for coordinates (N, in_features): constant for a fixed signal, so it is
        computed once (the SIREN's encoded coordinates). Default: the coordinates themselves."""
        return coords

    def inputs_width(self) -> int:
        """Columns of inputs() (the coordinates' in_features by default)."""
        return self.in_features

    @abstractmethod
    def apply(self, tensors: Sequence[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """The module's output (N, out_features) on inputs() computed with the given tensors instead
        of its own (the quantizer evaluates dequantized tensors this way)."""

    def encode_stream(self, module: nn.Module) -> bytes:
        """The latent stream of a fitted module (only where has_latent_stream)."""
        raise InrError(f"a {self.name} has no latent stream")

    def load_stream(self, module: nn.Module, header: Any) -> None:
        """Decode header.latent_stream into a module whose tensors are loaded (only where
        has_latent_stream)."""
        raise InrError(f"a {self.name} has no latent stream")

    def render(self, module: nn.Module, coords: torch.Tensor) -> torch.Tensor:
        """The signal at coordinates (N, in_features) in [-1, 1]: values (N, out_features), in row
        chunks (the result does not depend on their size)."""
        import torch

        with torch.no_grad():
            parts = [module(coords[s:s + RENDER_CHUNK_ROWS]) for s in range(0, coords.shape[0], RENDER_CHUNK_ROWS)]
            return torch.cat(parts, dim=0)
