"""Compressing one image with the latent-grid codec: fit (fit/latent.py), choose the parameters'
quantization steps by a rate-distortion search, code the file, decode it and measure.

Quantization of the network's own parameters (the synthesis's and the ARM's weights and biases):
nearest rounding (codec.quant.quantize) at power-of-two steps 2^-k, k in STEP_EXPONENTS, one step
per group (synthesis weights, synthesis biases, ARM weights, ARM biases: QUANT_GROUPS), searched
group by group (SEARCH_PASSES passes, every exponent tried) for the lowest

    MSE on the [0, 1] scale (float synthesis, rounded latents) + rate_lambda x bpp,
    bpp = (the parameters' bits, estimated as each tensor's zeroth-order entropy
           (codec.entropy.empirical_entropy_bits per tensor: the coder's adaptive and per-tensor
           models come close; their exact cost_bits take 0.2 s per choice, too slow for ~100 choices)
           + the latents' ideal bits under the quantized fixed-point ARM) / pixels.

The ARM's steps must be powers of two no finer than 2^-WEIGHT_FRAC_BITS (the fixed-point ARM), so
its exponents stop there; the synthesis's could be any step, and powers of two are the search grid.
Symbols are coded at BITWIDTH bits (the header's one bit width; with steps this coarse the symbols'
range is far inside it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from inrcompress.codec import entropy as coding
from inrcompress.codec import latent_coding
from inrcompress.codec.compress import decode_image
from inrcompress.codec.container import InrHeader, encode_inr
from inrcompress.codec.quant import QuantizedTensors, dequantize, load_quantized, quantize, symbols_from_integers
from inrcompress.codec.representations.latent import LatentGrid
from inrcompress.codec.representations.latent_module import LatentImageModel
from inrcompress.evaluate.metrics import image_metrics, psnr_from_mse
from inrcompress.experiments.image_codec import measure_decoded
from inrcompress.fit.engine import UNIT_MSE_PER_VALUES_MSE
from inrcompress.fit.latent import LatentSchedule, fit_latent
from inrcompress.signals.image import image_to_values

BITWIDTH = 16
CODER = "arithmetic"
SYNTHESIS_EXPONENTS = tuple(range(0, 15))
ARM_EXPONENTS = tuple(range(0, latent_coding.WEIGHT_FRAC_BITS + 1))
QUANT_GROUPS = ("synthesis.weight", "synthesis.bias", "arm.weight", "arm.bias")
SEARCH_PASSES = 2
INITIAL_EXPONENT = 8


def _group_of(name: str) -> str:
    part, _, kind = name.split(".")
    return f"{part}.{kind}"


@dataclass
class QuantizedLatentModel:
    """The parameters' symbols and steps (declared-tensor order) and what the search measured."""

    exponents: dict[str, int]
    symbols: list[np.ndarray]
    steps: list[float]
    loss: float
    mse: float
    parameter_bits: float
    latent_bits: float


class _Evaluator:
    """Measures one choice of step exponents on a copy of the fitted module."""

    def __init__(self, model: LatentImageModel, target: torch.Tensor, rate_lambda: float):
        self.rep: LatentGrid = model.representation
        self.float_tensors = [t.detach().clone() for t in self.rep.tensors(model)]
        self.names = [spec.name for spec in self.rep.tensor_specs()]
        self.work = self.rep.build()
        self.work.load_state_dict(model.state_dict())
        self.latents = [g.numpy() for g in self.work.integer_latents()]
        self.work.load_integer_latents(self.latents)  # distortion is measured on what the file codes
        self.target = target
        self.rate_lambda = rate_lambda
        self.pixels = target.shape[0]

    def quantized(self, exponents: dict[str, int]) -> tuple[list[np.ndarray], list[float]]:
        steps = [2.0 ** -exponents[_group_of(name)] for name in self.names]
        symbols = [symbols_from_integers(quantize(t, s, BITWIDTH), BITWIDTH) for t, s in zip(self.float_tensors, steps)]
        return symbols, steps

    def load(self, symbols: list[np.ndarray], steps: list[float]) -> None:
        shapes = [spec.shape for spec in self.rep.tensor_specs()]
        load_quantized(self.work, QuantizedTensors(BITWIDTH, symbols, steps, shapes))

    @torch.no_grad()
    def measure(self, exponents: dict[str, int]) -> QuantizedLatentModel:
        symbols, steps = self.quantized(exponents)
        self.load(symbols, steps)
        mse = float(torch.mean((self.work.values() - self.target) ** 2)) * UNIT_MSE_PER_VALUES_MSE
        parameter_bits = sum(coding.empirical_entropy_bits([s]) for s in symbols)
        latent_bits = latent_coding.latent_bits(self.latents, self.work.fixed_point_arm())
        loss = mse + self.rate_lambda * (parameter_bits + latent_bits) / self.pixels
        return QuantizedLatentModel(dict(exponents), symbols, steps, loss, mse, parameter_bits, latent_bits)


def search_steps(model: LatentImageModel, target: torch.Tensor, rate_lambda: float) -> QuantizedLatentModel:
    """The step exponents of the lowest measured loss (see the module docstring)."""
    evaluator = _Evaluator(model, target, rate_lambda)
    best = evaluator.measure({group: INITIAL_EXPONENT for group in QUANT_GROUPS})
    for _ in range(SEARCH_PASSES):
        for group in QUANT_GROUPS:
            for exponent in ARM_EXPONENTS if group.startswith("arm") else SYNTHESIS_EXPONENTS:
                if exponent == best.exponents[group]:
                    continue
                trial = evaluator.measure({**best.exponents, group: exponent})
                if trial.loss < best.loss:
                    best = trial
    return best


def code_latent_model(model: LatentImageModel, quantized: QuantizedLatentModel) -> bytes:
    """The .inr bytes: the quantized parameters loaded into `model` (as a decoder loads them), then
    its rounded latents coded under that model's fixed-point ARM."""
    rep: LatentGrid = model.representation
    load_quantized(model, QuantizedTensors(BITWIDTH, quantized.symbols, quantized.steps,
                                           [spec.shape for spec in rep.tensor_specs()]))
    header = InrHeader(modality="image", height=rep.height, width=rep.width, rotated=False, representation=rep,
                       bitwidth=BITWIDTH, coder=CODER, step_sizes=tuple(quantized.steps),
                       latent_stream=rep.encode_stream(model))
    return encode_inr(header, quantized.symbols)[0]


def compress_image_latent(image: np.ndarray, representation: LatentGrid, rate_lambda: float,
                          schedule: LatentSchedule, *, seed: int = 0, progress: bool = True,
                          desc: str | None = None, writer=None) -> tuple[bytes, dict]:
    """Fit, quantize and code uint8 `image` (H, W, C); returns the file and what was measured:
    the fit's float PSNR and latent rate, the search's choice and estimate, and bpp / PSNR /
    MS-SSIM decoded from the file (measure_decoded), encode and decode seconds."""
    started = time.perf_counter()
    target = image_to_values(image)
    model, fitted = fit_latent(representation.build, target, rate_lambda, schedule, seed=seed, progress=progress,
                               desc=desc, writer=writer)
    quantized = search_steps(model, target, rate_lambda)
    data = code_latent_model(model, quantized)
    encode_seconds = time.perf_counter() - started
    measured = measure_decoded(data, image)
    pixels = image.shape[0] * image.shape[1]
    info = {**measured, "encode_seconds": encode_seconds, "rate_lambda": rate_lambda,
            "fit_psnr": fitted.psnr, "fit_latent_bpp": fitted.latent_bpp, "fit_start": fitted.start,
            "quantized_psnr_estimate": psnr_from_mse(quantized.mse),
            "parameter_bpp_estimate": quantized.parameter_bits / pixels,
            "latent_bpp_estimate": quantized.latent_bits / pixels, "step_exponents": quantized.exponents,
            "decoder_macs_per_point": representation.macs_per_point()}
    return data, info


def decoded_equals(data: bytes, image: np.ndarray) -> bool:
    """Whether the file decodes to exactly `image` (uint8)."""
    _, decoded = decode_image(data, limits=None)
    return decoded.shape == image.shape and bool((decoded == image).all())


__all__ = ["compress_image_latent", "search_steps", "code_latent_model", "decoded_equals", "image_metrics"]
