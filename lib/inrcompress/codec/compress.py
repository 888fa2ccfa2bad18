"""From a fitted network to a .inr file and back: quantize, code, write; read, rebuild, render.

The file is the single source of truth: every rate we report is 8 x its size in bytes / pixels,
and every quality figure is measured on what `decode_image` renders from its bytes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from inrcompress.codec.entropy import METHODS
from inrcompress.codec.container import DecodeLimits, InrHeader, InrSizes, encode_inr, read_inr
from inrcompress.codec.quant import QuantizedTensors, load_quantized
from inrcompress.codec.quantizers import QUANTIZERS, check_quantizer
from inrcompress.codec.representations import representation_of
from inrcompress.codec.representations.base import RENDER_CHUNK_ROWS, Representation
from inrcompress.errors import CorruptFileError, InrError
from inrcompress.signals.grid import coordinate_chunks
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import from_landscape, values_to_uint8


@dataclass(frozen=True)
class QuantConfig:
    """The quantization flags of quantize_and_test.py (spec 2.4)."""

    bitwidth: int = 8
    adaround: bool = True
    adaround_iterations: int = 1000
    adaround_reg: float = 1e-4
    retrain: bool = True
    retrain_epochs: int = 300
    retrain_lr: float = 1e-6
    code: str = "arithmetic"
    quantizer: str = "native"  # an entry of codec.quantizers.QUANTIZERS
    # Beyond the paper (off by default): every step times step_scale (> 1: coarser, fewer bits), and
    # per-tensor steps by a rate-distortion allocation (quant.rd_step_sizes) instead of each tensor's
    # MSE-optimal step at the bit width; QAT from AdaRound's soft levels instead of its hard integers.
    # The native quantizer only.
    step_scale: float = 1.0
    rd_steps: bool = False
    qat_from_soft: bool = False
    # Beyond the paper (off by default): one step per output channel of every weight (a byte per row
    # in the file, quant.ChannelSteps) instead of one per tensor. The native quantizer only.
    per_channel_steps: bool = False
    # A goal instead of fixed settings (images; experiments.image_codec.encode_to_target searches the
    # bit width and step scale): a file within 3 % of target_bpp, or the smallest file found whose
    # decoded PSNR reaches target_psnr (dB). At most one; None: the settings above as they are.
    target_bpp: float | None = None
    target_psnr: float | None = None

    def __post_init__(self):
        if not 2 <= self.bitwidth <= 16:
            raise InrError(f"bitwidth must be in 2..16, got {self.bitwidth}")
        if self.code not in METHODS:
            raise InrError(f"code must be one of {', '.join(METHODS)}, got {self.code!r}")
        check_quantizer(self.quantizer)
        if not (math.isfinite(self.step_scale) and self.step_scale > 0):
            raise InrError(f"step_scale must be a positive finite number, got {self.step_scale}")
        beyond = self.step_scale != 1.0 or self.rd_steps or self.qat_from_soft or self.per_channel_steps
        if beyond and self.quantizer != "native":
            raise InrError(f"--quantizer {self.quantizer} runs its own pipeline: --step_scale, --rd_steps, "
                           "--qat_from_soft and --per_channel_steps need --quantizer native")
        if self.target_bpp is not None and self.target_psnr is not None:
            raise InrError("give one of --target_bpp and --target_psnr")
        if self.target_bpp is not None and not (math.isfinite(self.target_bpp) and self.target_bpp > 0):
            raise InrError(f"--target_bpp must be a positive number, got {self.target_bpp}")
        if self.target_psnr is not None and not (math.isfinite(self.target_psnr) and 0 < self.target_psnr <= 100):
            raise InrError(f"--target_psnr must be in (0, 100] dB, got {self.target_psnr}")

    @property
    def tag(self) -> str:
        """The paper's configuration name, e.g.
        bw8_adaround_iter_1000_adaround_reg_0.0001_retrain_epochs300_retrain_lr1e-06."""
        name = f"bw{self.bitwidth}"
        if self.adaround:
            name += f"_adaround_iter_{self.adaround_iterations}_adaround_reg_{float(self.adaround_reg)}"
        if self.retrain:
            name += f"_retrain_epochs{self.retrain_epochs}_retrain_lr{float(self.retrain_lr)}"
        if self.quantizer != "native":  # the paper's names stay those of the default quantizer
            name += f"_{self.quantizer}"
        if self.step_scale != 1.0:
            name += f"_step_scale{float(self.step_scale)}"
        if self.rd_steps:
            name += "_rd_steps"
        if self.qat_from_soft:
            name += "_qat_from_soft"
        if self.per_channel_steps:
            name += "_per_channel"
        if self.target_bpp is not None:
            name += f"_target_bpp{float(self.target_bpp)}"
        if self.target_psnr is not None:
            name += f"_target_psnr{float(self.target_psnr)}"
        return name

    @property
    def has_target(self) -> bool:
        return self.target_bpp is not None or self.target_psnr is not None

    @classmethod
    def from_flags(cls, flags: dict) -> QuantConfig:
        return cls(**{k: flags[k] for k in cls.__dataclass_fields__ if k in flags})


def init_hash(reference: dict[str, torch.Tensor] | None, representation: Representation) -> bytes:
    """sha256 of a meta-learned initialization's declared tensors, by sorted name (b"" without one).
    For a SIREN these are the "layers.*" tensors, the hash format-1 files carry."""
    if reference is None:
        return b""
    digest = hashlib.sha256()
    for name in sorted(spec.name for spec in representation.tensor_specs()):
        if name not in reference:
            raise InrError(f"the initialization lacks {name}")
        tensor = reference[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.digest()


def compress_network(model: torch.nn.Module, coords: torch.Tensor, values: torch.Tensor, qcfg: QuantConfig, *,
                     modality: str, height: int = 0, width: int = 0, rotated: bool = False,
                     reference: dict[str, torch.Tensor] | None = None, seed: int = 0,
                     progress: bool = False) -> tuple[bytes, InrSizes]:
    """Quantize `model` (any registered representation; AdaRound / QAT on the signal coords -> values)
    and return the .inr bytes and their size breakdown.

    reference: a meta-learned init theta_0; only theta - theta_0 is coded and the file records its hash.
    """
    return compress_networks([model], coords, [values], qcfg, modality=modality, height=height, width=width,
                             rotated=[rotated], reference=reference, seeds=[seed], progress=progress)[0]


def compress_networks(models: list[torch.nn.Module], coords: torch.Tensor | list[torch.Tensor], values: list[torch.Tensor],
                      qcfg: QuantConfig, *, modality: str, height: int = 0, width: int = 0,
                      rotated: list[bool] | None = None, reference: dict[str, torch.Tensor] | None = None,
                      seeds: list[int] | int = 0, progress: bool = False) -> list[tuple[bytes, InrSizes]]:
    """compress_network for N networks of one architecture fitted to N signals with as many rows,
    quantized together (quant_batched.quantize_models: per signal the result of quantizing it alone,
    up to float rounding). coords: shared by the signals, or one tensor per signal; values[n],
    rotated[n] and seeds[n] per signal. An image's pixel grid (height x width = the coords) lets
    the first layer run per grid row and column."""
    if qcfg.has_target:
        raise InrError("a --target_bpp / --target_psnr is searched per image (experiments.image_codec."
                       "encode_to_target); it has no fixed quantization to run here")
    representation = representation_of(models[0])
    per_signal = coords if isinstance(coords, (list, tuple)) else [coords] * len(models)
    with torch.no_grad():
        features = [representation.inputs(m, c) for m, c in zip(models, per_signal)]
    if all(f.shape == features[0].shape and torch.equal(f, features[0]) for f in features[1:]):
        features = features[0]  # one encoding of the coordinates serves every network
    rows = per_signal[0].shape[0]
    grid_shape = (height, width) if height and width and height * width == rows else None
    quantized = QUANTIZERS[qcfg.quantizer](models, features, values, qcfg, references=reference, seeds=seeds,
                                           grid_shape=grid_shape, progress=progress)
    rotated = rotated if rotated is not None else [False] * len(models)
    hash_of_init = init_hash(reference, representation)
    return [encode_inr(InrHeader(modality=modality, height=height, width=width, rotated=turned,
                                 representation=representation, bitwidth=qcfg.bitwidth, coder=qcfg.code,
                                 step_sizes=tuple(q.step_sizes), init_hash=hash_of_init), q.symbols)
            for q, turned in zip(quantized, rotated)]


def decode_network(data: bytes, reference: dict[str, torch.Tensor] | None = None,
                   limits: DecodeLimits | None = DecodeLimits()) -> tuple[InrHeader, torch.nn.Module]:
    """Rebuild the network a .inr file (any format version) describes, on the CPU. A residual file
    needs the init it was coded against; a different init is refused. A file beyond `limits` is
    refused right after its header is read (container.read_inr; None: the format's bounds only)."""
    header, symbols = read_inr(data, limits)
    representation = header.representation
    if header.init_hash:
        if reference is None:
            raise InrError("this file codes the difference to a meta-learned initialization: pass that init "
                           "(--init path/to/model_maml.pth)")
        if init_hash(reference, representation) != header.init_hash:
            raise InrError("the given initialization is not the one this file was coded against (hash differs)")
    elif reference is not None:
        reference = None  # a plain file ignores an init it does not need
    model = representation.build()
    quantized = QuantizedTensors(header.bitwidth, symbols, list(header.step_sizes),
                                 [spec.shape for spec in representation.tensor_specs()])
    try:
        load_quantized(model, quantized, reference)
    except InrError as e:
        raise CorruptFileError(f"inconsistent .inr file: {e}") from None
    if header.latent_stream:  # the container allows one exactly for a representation that has one
        representation.load_stream(model, header)
    model.eval()
    return header, model


def render(model: torch.nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """The network's values on the full coordinate grid of `shape`, (prod(shape), out_features)."""
    return representation_of(model).render(model, coordinate_grid(shape))


def render_image(model: torch.nn.Module, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, C): the network on the pixel grid, RENDER_CHUNK_ROWS pixels at a time straight into
    the picture, so that memory is the picture plus one chunk whatever the size (the pixels are those
    of rendering the whole grid at once: the same coordinates in the same chunks)."""
    representation = representation_of(model)
    picture = np.empty((height * width, representation.out_features), dtype=np.uint8)
    for start, coords in coordinate_chunks((height, width), RENDER_CHUNK_ROWS):
        values = representation.render(model, coords)
        picture[start:start + len(coords)] = values_to_uint8(values, len(coords), 1)[:, 0]
    return picture.reshape(height, width, -1)


def decode_image(data: bytes, reference: dict[str, torch.Tensor] | None = None,
                 limits: DecodeLimits | None = DecodeLimits()) -> tuple[InrHeader, np.ndarray]:
    """Decode an image .inr file to uint8 (H, W, C), in the orientation of the original image; a
    file beyond `limits` (default: DecodeLimits()) is refused before anything is decoded."""
    header, model = decode_network(data, reference, limits)
    if header.modality != "image":
        raise InrError(f"this .inr file holds a {header.modality}, not an image")
    return header, from_landscape(render_image(model, header.height, header.width), header.rotated)
