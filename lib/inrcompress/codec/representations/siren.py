"""The paper's representation: a SIREN (or ReLU) MLP on encoded coordinates (inrcompress.nn.INR).

Quantized tensors: W0, b0, W1, b1, ... of INR.layers (names "layers.<i>.weight" / "layers.<i>.bias",
which are also the names a meta-learned initialization uses). The encoding has no quantized tensors:
the Gaussian matrix is rebuilt from gauss_seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from inrcompress.codec.representations import register_representation
from inrcompress.codec.representations.base import Field, LinearLayer, Representation, TensorSpec, check_range
from inrcompress.config import ACTIVATIONS, ENCODINGS, ModelConfig
from inrcompress.errors import InrError

if TYPE_CHECKING:  # torch loads when a module is built or run, not when a header is checked (base.py)
    import torch

    from inrcompress.nn import INR

# Rows per block when rendering (a block's activations stay in the CPU cache); a last block of fewer
# than RENDER_MIN_BLOCK_ROWS rows joins the one before (see SirenMLP.render).
RENDER_BLOCK_ROWS = 4096
RENDER_MIN_BLOCK_ROWS = 64

# Format limits. They bound what a decoder may be asked to allocate and are far above the
# paper's settings (hidden_dims <= 128, hidden_layers <= 3, ff_dims <= 16).
MAX_HIDDEN_DIMS = 4096
MAX_HIDDEN_LAYERS = 64
MAX_FF_DIMS = 1024
MAX_ENCODING_SCALE = 1e6
# The largest encoding frequency must stay a finite float32 (nerf's is pi * scale**(F-1)).
_MAX_LOG_FREQUENCY = math.log(1e30)


def encoding_out_dim(encoding: str, in_features: int, ff_dims: int) -> int:
    """Width of the encoded coordinates (nn.py): mlp d, nerf d + 2dF, positional 2dF, gauss 2F."""
    d, f = in_features, ff_dims
    return {"mlp": d, "nerf": d + 2 * d * f, "positional": 2 * d * f, "gauss": 2 * f}[encoding]


@register_representation
@dataclass(frozen=True)
class SirenMLP(Representation):
    """INR(cfg): hidden_layers + 2 linear layers on the cfg.encoding of the coordinates. With the
    "mlp" encoding ff_dims means nothing and is kept as 0."""

    cfg: ModelConfig

    name = "siren_mlp"
    file_id = 1
    fields = (
        Field("encoding", "B", ENCODINGS),
        Field("activation", "B", ACTIVATIONS),
        Field("hidden_dims", "H"),
        Field("hidden_layers", "B"),
        Field("ff_dims", "H"),
        Field("encoding_scale", "d"),  # float64, so the frequencies rebuild exactly
        Field("gauss_seed", "I"),      # seed of the Gaussian encoding matrix
    )

    def __post_init__(self):
        if self.cfg.encoding == "mlp" and self.cfg.ff_dims != 0:
            object.__setattr__(self, "cfg", replace(self.cfg, ff_dims=0))

    @property
    def in_features(self) -> int:
        return self.cfg.in_features

    @property
    def out_features(self) -> int:
        return self.cfg.out_features

    def field_values(self) -> dict[str, Any]:
        return {f.name: getattr(self.cfg, f.name) for f in self.fields}

    @classmethod
    def from_fields(cls, values: Mapping[str, Any], in_features: int, out_features: int,
                    error: type[InrError] = InrError) -> SirenMLP:
        for name, choices in (("encoding", ENCODINGS), ("activation", ACTIVATIONS)):
            if values[name] not in choices:
                raise error(f"{name} must be one of {choices}, got {values[name]!r}")
        for name, lo, hi in (("hidden_dims", 1, MAX_HIDDEN_DIMS), ("hidden_layers", 1, MAX_HIDDEN_LAYERS),
                             ("ff_dims", 0, MAX_FF_DIMS), ("gauss_seed", 0, 2 ** 32 - 1)):
            check_range(values, name, lo, hi, error)
        encoding, scale, ff_dims = values["encoding"], values["encoding_scale"], values["ff_dims"]
        if encoding == "mlp":
            if not (math.isfinite(scale) and scale >= 0):
                raise error(f"encoding_scale must be finite and >= 0, got {scale!r}")
        else:
            if ff_dims < 1:
                raise error(f"ff_dims must be >= 1 for the {encoding} encoding")
            if not (math.isfinite(scale) and 0 < scale <= MAX_ENCODING_SCALE):
                raise error(f"encoding_scale must be in (0, {MAX_ENCODING_SCALE:g}], got {scale!r}")
            if encoding == "nerf" and (ff_dims - 1) * math.log(scale) + math.log(math.pi) > _MAX_LOG_FREQUENCY:
                raise error(f"nerf frequencies overflow with encoding_scale {scale!r} and ff_dims {ff_dims}")
        return cls(ModelConfig(in_features=in_features, out_features=out_features,
                               **{f.name: values[f.name] for f in cls.fields}))

    def tensor_specs(self) -> list[TensorSpec]:
        cfg = self.cfg
        dims = [self.inputs_width()] + [cfg.hidden_dims] * (cfg.hidden_layers + 1) + [cfg.out_features]
        specs = []
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            specs += [TensorSpec(f"layers.{i}.weight", (fan_out, fan_in)), TensorSpec(f"layers.{i}.bias", (fan_out,))]
        return specs

    def linear_layers(self) -> list[LinearLayer]:
        from inrcompress.nn import activation_fn

        n = self.cfg.hidden_layers + 2
        act = activation_fn(self.cfg.activation)
        return [LinearLayer(2 * i, 2 * i + 1, None if i == n - 1 else act) for i in range(n)]

    def build(self) -> INR:
        from inrcompress.nn import INR

        return INR(self.cfg)

    @classmethod
    def describe(cls, obj: Any) -> SirenMLP | None:
        if isinstance(obj, ModelConfig):
            return cls(obj)
        from inrcompress.nn import INR

        if isinstance(obj, INR):
            return cls(obj.cfg)
        return None

    def inputs(self, module: INR, coords: torch.Tensor) -> torch.Tensor:
        return module.encode(coords)

    def inputs_width(self) -> int:
        return encoding_out_dim(self.cfg.encoding, self.cfg.in_features, self.cfg.ff_dims)

    def apply(self, tensors: Sequence[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        from inrcompress.nn import mlp_forward

        return mlp_forward(inputs, list(tensors[0::2]), list(tensors[1::2]), self.cfg.activation)

    def render(self, module: INR, coords: torch.Tensor) -> torch.Tensor:
        """module(coords) in blocks of RENDER_BLOCK_ROWS rows: the same operations per row (encode,
        then addmm = F.linear and the activation per layer) with a block's activations in the CPU
        cache (0.56 -> 0.31 s CPU for a 768 x 512 picture at width 64, benchmarks/decode_speed.py).
        A short last block joins the one before: the CPU's matrix product rounds a row the same way
        in any product of >= 16 rows but not in a smaller one, so the values are those of one pass
        over the rows given (tests/test_quant_batched.py; the golden files decode unchanged)."""
        import torch

        with torch.no_grad():
            return self._render_blocks(module, coords)

    def _render_blocks(self, module: INR, coords: torch.Tensor) -> torch.Tensor:
        import torch

        weights = [layer.weight for layer in module.layers]
        biases = [layer.bias for layer in module.layers]
        activation = module.activation
        out = torch.empty(coords.shape[0], self.out_features, dtype=torch.float32, device=coords.device)
        rows = coords.shape[0]
        starts = list(range(0, rows, RENDER_BLOCK_ROWS))
        if len(starts) > 1 and rows - starts[-1] < RENDER_MIN_BLOCK_ROWS:
            starts.pop()
        for start, stop in zip(starts, starts[1:] + [rows]):
            x = module.encode(coords[start:stop])
            for w, b in zip(weights[:-1], biases[:-1]):
                x = activation(torch.addmm(b, x, w.t()))
            torch.addmm(biases[-1], x, weights[-1].t(), out=out[start:stop])
        return out
