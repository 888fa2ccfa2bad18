"""A latent-grid image representation (the Cool-chic / C3 family of overfitted codecs).

An image of H x W pixels is `levels` latent grids of one channel each, grid l of
ceil(H / 2^l) x ceil(W / 2^l) integers in [-ZMAX, ZMAX] (1/1 .. 1/2^(levels-1) of the image);
every grid is upsampled to H x W (bicubic, align_corners=False; grid 0 is full size), and a
per-pixel MLP (the synthesis: `levels` inputs, `synthesis_layers` hidden layers of
`synthesis_hidden` ReLU units, `channels` outputs in [-1, 1] like a SIREN's) gives the pixel. The
latents are coded by codec/latent_coding.py with an auto-regressive model (the ARM: an MLP over
`arm_context` causal neighbours, `arm_layers` hidden layers of `arm_hidden` ReLU units, 2 outputs:
the mean and log2 scale of a discretized Laplace), the same model that gives the rate term in
training (LatentImageModel.latent_bits).

Declared (quantized, coded through the entropy-model registry) tensors: the synthesis's and the
ARM's weights and biases, "synthesis.<i>.weight"/".bias" then "arm.<i>.weight"/".bias". The latents
are module parameters too ("latents.<l>") but not declared: they travel in the file's latent
stream (container section "latents"), range-coded with the ARM. The ARM's steps must be powers of
two no finer than 2^-WEIGHT_FRAC_BITS (latent_coding.FixedPointArm evaluates it in fixed point).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from inrcompress.codec import latent_coding
from inrcompress.codec.representations import register_representation
from inrcompress.codec.representations.base import Field, LinearLayer, Representation, TensorSpec, check_range
from inrcompress.errors import CorruptFileError, InrError

if TYPE_CHECKING:  # torch loads when a module is built or run, not when a header is checked (base.py)
    import torch

    from inrcompress.codec.representations.latent_module import LatentImageModel

MAX_LEVELS = 8
MAX_ARM_HIDDEN = 32  # bounds the ARM's fixed-point sums (latent_coding.FixedPointArm)
MAX_ARM_LAYERS = 3
MAX_SYNTHESIS_HIDDEN = 256
MAX_SYNTHESIS_LAYERS = 4
# Multiply-accumulates of one bicubic-upsampled value (4 x 4 taps).
BICUBIC_MACS = 16
MAX_SYNTHESIS_CONVS = 4
UPSAMPLING_KINDS = ("bicubic", "learned")
# One half of the symmetric 8-tap filter of a transposed convolution (stride 2) that doubles a grid
# exactly as bicubic interpolation does (a = -0.75, align_corners=False, borders replicated): the
# learned upsampling starts there.
BICUBIC_DOUBLING_HALF_TAPS = (-0.03515625, -0.10546875, 0.26171875, 0.87890625)
# Each doubled value takes 4 of the 8 taps along each axis (the stride leaves the others at zero).
DOUBLING_TAPS_PER_AXIS = 4

# Decoder-size presets (about 500 / 1,000 / 2,000 MAC per pixel; LatentGrid.macs_per_point states
# the exact count for an image).
PRESETS: dict[str, dict[str, int]] = {
    "mac500": {"levels": 7, "arm_context": 8, "arm_hidden": 8, "arm_layers": 2, "synthesis_hidden": 16,
               "synthesis_layers": 1},
    "mac1000": {"levels": 7, "arm_context": 12, "arm_hidden": 12, "arm_layers": 2, "synthesis_hidden": 16,
                "synthesis_layers": 2},
    "mac2000": {"levels": 7, "arm_context": 16, "arm_hidden": 16, "arm_layers": 2, "synthesis_hidden": 28,
                "synthesis_layers": 2},
    # Cool-chic 3's additions on mac500 / mac1000 (LatentGridConv): learned upsampling and two
    # residual 3x3 convolutions on the synthesis's output.
    "conv600": {"levels": 7, "arm_context": 8, "arm_hidden": 8, "arm_layers": 2, "synthesis_hidden": 16,
                "synthesis_layers": 1, "upsampling": "learned", "synthesis_convs": 2},
    "conv1100": {"levels": 7, "arm_context": 12, "arm_hidden": 12, "arm_layers": 2, "synthesis_hidden": 16,
                 "synthesis_layers": 2, "upsampling": "learned", "synthesis_convs": 2},
}


def grid_shapes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    return [(math.ceil(height / 2 ** level), math.ceil(width / 2 ** level)) for level in range(levels)]


@register_representation
@dataclass(frozen=True)
class LatentGrid(Representation):
    """One latent-grid architecture for an image of height x width pixels (see the module docstring)."""

    height: int
    width: int
    levels: int = 7
    arm_context: int = 12
    arm_hidden: int = 12
    arm_layers: int = 2
    synthesis_hidden: int = 16
    synthesis_layers: int = 2
    out_features: int = 3

    in_features = 2
    name = "latent_grid"
    file_id = 2
    fields = (
        Field("height", "H"),
        Field("width", "H"),
        Field("levels", "B"),
        Field("arm_context", "B"),
        Field("arm_hidden", "B"),
        Field("arm_layers", "B"),
        Field("synthesis_hidden", "H"),
        Field("synthesis_layers", "B"),
    )
    # The container writes and reads the latent stream for this representation (its section
    # "latents"); see encode_stream / load_stream.
    has_latent_stream = True
    # What LatentGridConv makes choices of (fields of its file section); here fixed.
    upsampling: ClassVar[str] = "bicubic"
    synthesis_convs: ClassVar[int] = 0

    @staticmethod
    def preset(name: str, height: int, width: int, channels: int = 3) -> LatentGrid:
        """The architecture of a named preset (PRESETS) for an image: a LatentGridConv where the
        preset sets its fields, else a LatentGrid."""
        if name not in PRESETS:
            raise InrError(f"unknown latent preset {name!r}; known: {', '.join(PRESETS)}")
        values = PRESETS[name]
        kind = LatentGridConv if {"upsampling", "synthesis_convs"} & set(values) else LatentGrid
        rep = kind(height=height, width=width, out_features=channels, **values)
        rep.check()
        return rep

    def field_values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in self.fields}

    @classmethod
    def from_fields(cls, values: Mapping[str, Any], in_features: int, out_features: int,
                    error: type[InrError] = InrError) -> LatentGrid:
        if in_features != 2 or out_features not in (1, 3):
            raise error(f"a latent grid codes images (2 coordinates, 1 or 3 channels), got {in_features} and "
                        f"{out_features}")
        for name, lo, hi in (("height", 1, 65535), ("width", 1, 65535), ("levels", 1, MAX_LEVELS),
                             ("arm_hidden", 1, MAX_ARM_HIDDEN), ("arm_layers", 0, MAX_ARM_LAYERS),
                             ("synthesis_hidden", 1, MAX_SYNTHESIS_HIDDEN),
                             ("synthesis_layers", 0, MAX_SYNTHESIS_LAYERS)):
            check_range(values, name, lo, hi, error)
        if values["arm_context"] not in latent_coding.CONTEXT_SIZES:
            raise error(f"arm_context must be one of {latent_coding.CONTEXT_SIZES}, got {values['arm_context']}")
        cls.check_own_fields(values, error)
        return cls(out_features=out_features, **{f.name: values[f.name] for f in cls.fields})

    @classmethod
    def check_own_fields(cls, values: Mapping[str, Any], error: type[InrError]) -> None:
        """Bounds of the fields a subclass adds (none here)."""

    # -- declared tensors ------------------------------------------------------------------------

    def _dims(self, prefix: str) -> list[int]:
        if prefix == "synthesis":
            return [self.levels] + [self.synthesis_hidden] * self.synthesis_layers + [self.out_features]
        return [self.arm_context] + [self.arm_hidden] * self.arm_layers + [2]

    def _specs(self, prefix: str) -> list[TensorSpec]:
        dims = self._dims(prefix)
        specs = []
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            specs += [TensorSpec(f"{prefix}.{i}.weight", (fan_out, fan_in)), TensorSpec(f"{prefix}.{i}.bias", (fan_out,))]
        return specs

    def tensor_specs(self) -> list[TensorSpec]:
        return self._specs("synthesis") + self.picture_specs() + self._specs("arm")

    def picture_specs(self) -> list[TensorSpec]:
        """The tensors between the per-pixel synthesis and the ARM: those of the steps that see the
        whole picture (LatentGridConv's convolutions and upsampling filters); none here."""
        return []

    def synthesis_tensor_count(self) -> int:
        return 2 * (self.synthesis_layers + 1)

    def linear_layers(self) -> list[LinearLayer]:
        """The synthesis chain (what apply() computes on the upsampled latents)."""
        import torch.nn.functional as F

        n = self.synthesis_layers + 1
        return [LinearLayer(2 * i, 2 * i + 1, None if i == n - 1 else F.relu) for i in range(n)]

    def grid_shapes(self) -> list[tuple[int, int]]:
        return grid_shapes(self.height, self.width, self.levels)

    def latents_per_pixel(self) -> float:
        return sum(h * w for h, w in self.grid_shapes()) / (self.height * self.width)

    def macs_per_point(self) -> int:
        """Per decoded pixel: the synthesis's in x out, the upsampling's (BICUBIC_MACS per upsampled
        coarser grid) and the ARM's in x out times the latents per pixel (rounded)."""
        synthesis = sum(a * b for a, b in zip(self._dims("synthesis")[:-1], self._dims("synthesis")[1:]))
        arm = sum(a * b for a, b in zip(self._dims("arm")[:-1], self._dims("arm")[1:]))
        return int(round(synthesis + self.upsampling_macs_per_point() + arm * self.latents_per_pixel()))

    def upsampling_macs_per_point(self) -> float:
        return BICUBIC_MACS * (self.levels - 1)

    # -- the torch module ------------------------------------------------------------------------

    def dims(self, part: str) -> list[int]:
        """Layer widths of the "synthesis" or the "arm", input first."""
        return self._dims(part)

    def build(self) -> LatentImageModel:
        from inrcompress.codec.representations.latent_module import LatentImageModel

        return LatentImageModel(self)

    @classmethod
    def describe(cls, obj: Any) -> LatentGrid | None:
        found = getattr(obj, "representation", None)  # a LatentImageModel carries its architecture
        return found if isinstance(found, LatentGrid) else None

    def inputs(self, module: LatentImageModel, coords: torch.Tensor) -> torch.Tensor:
        """The upsampled latents (N, levels) at the pixels of `coords` (a subset of the pixel grid)."""
        from inrcompress.codec.representations.latent_module import pixel_indices

        return module.features()[pixel_indices(coords, self.height, self.width)]

    def inputs_width(self) -> int:
        return self.levels

    def apply(self, tensors: Sequence[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        from inrcompress.codec.representations.latent_module import synthesis_forward

        count = self.synthesis_tensor_count()
        return synthesis_forward(inputs, list(tensors[0:count:2]), list(tensors[1:count:2]))

    def render(self, module: LatentImageModel, coords: torch.Tensor) -> torch.Tensor:
        """The pixels at `coords` (points of the image's pixel grid) of the whole picture, which is
        synthesized once per state of the module's parameters."""
        from inrcompress.codec.representations.latent_module import pixel_indices

        return module.picture_values()[pixel_indices(coords, self.height, self.width)]

    # -- the latent stream -----------------------------------------------------------------------

    def encode_stream(self, module: LatentImageModel) -> bytes:
        """The latent stream of the module's latents (rounded, clamped) under its (quantized) ARM."""
        grids = [g.numpy() for g in module.integer_latents()]
        return latent_coding.encode_latents(grids, module.fixed_point_arm())

    def load_stream(self, module: LatentImageModel, header: Any) -> None:
        """Decode a file's latent stream (header.latent_stream) into the module, whose ARM is already
        loaded from the file; the header's image size must be this architecture's."""
        if (header.height, header.width) != (self.height, self.width):
            raise CorruptFileError(f"the latent grid is for {self.width}x{self.height} pixels, the file's image is "
                                   f"{header.width}x{header.height}")
        arm = module.fixed_point_arm(CorruptFileError)
        module.load_integer_latents(latent_coding.decode_latents(header.latent_stream, self.grid_shapes(), arm))


@register_representation
@dataclass(frozen=True)
class LatentGridConv(LatentGrid):
    """A LatentGrid with Cool-chic 3's two additions (fields of its file section):

    upsampling "learned": the grids are doubled coarsest first, each doubling a separable
    transposed convolution (stride 2) whose symmetric 8-tap filter is learned, one filter per
    doubling (into grid l, l = levels-2 .. 0), starting from the bicubic one
    (BICUBIC_DOUBLING_HALF_TAPS); the doubled stack is cropped to grid l's size and grid l is put in
    front of it, so level 0 holds every grid at full size, in grid order. "bicubic": as LatentGrid.
    synthesis_convs: residual 3x3 convolutions (channels -> channels, borders replicated) after the
    per-pixel MLP, x <- x + conv(x), a ReLU on the residual of all but the last; they start at zero.

    Declared tensors: the synthesis's, then "conv.<i>.weight" (channels, channels, 3, 3) and
    ".bias", then (learned) "upsampling.taps" (levels - 1, 4), then the ARM's. The convolutions see
    the whole picture, so the synthesis is not a chain of per-pixel linear layers (no AdaRound, no
    apply on a subset of pixels): the codec renders the picture (render)."""

    upsampling: str = "learned"
    synthesis_convs: int = 2

    name = "latent_grid_conv"
    file_id = 3
    fields = LatentGrid.fields + (Field("upsampling", "B", UPSAMPLING_KINDS), Field("synthesis_convs", "B"))

    @classmethod
    def check_own_fields(cls, values: Mapping[str, Any], error: type[InrError]) -> None:
        if values["upsampling"] not in UPSAMPLING_KINDS:
            raise error(f"unknown upsampling {values['upsampling']!r}; known: {', '.join(UPSAMPLING_KINDS)}")
        check_range(values, "synthesis_convs", 0, MAX_SYNTHESIS_CONVS, error)

    def picture_specs(self) -> list[TensorSpec]:
        channels = self.out_features
        specs = []
        for i in range(self.synthesis_convs):
            specs += [TensorSpec(f"conv.{i}.weight", (channels, channels, 3, 3)), TensorSpec(f"conv.{i}.bias", (channels,))]
        if self.upsampling == "learned" and self.levels > 1:
            specs.append(TensorSpec("upsampling.taps", (self.levels - 1, len(BICUBIC_DOUBLING_HALF_TAPS))))
        return specs

    def linear_layers(self) -> None:
        return None

    def apply(self, tensors: Sequence[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        raise InrError("a latent grid with convolutions synthesizes whole pictures (render), not given pixels")

    def upsampling_macs_per_point(self) -> float:
        if self.upsampling != "learned":
            return super().upsampling_macs_per_point()
        shapes = self.grid_shapes()
        total = 0
        for level in range(self.levels - 1):  # doubling the stack of grids level+1 .. levels-1
            stack = self.levels - 1 - level
            rows, cols = shapes[level + 1]
            total += stack * DOUBLING_TAPS_PER_AXIS * (2 * rows * cols + 4 * rows * cols)
        return total / (self.height * self.width)

    def macs_per_point(self) -> int:
        return super().macs_per_point() + 9 * self.out_features ** 2 * self.synthesis_convs
