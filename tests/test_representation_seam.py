"""The codec seam: a representation defined only here goes through the library unchanged.

A polynomial of the coordinates (values = monomials(coords) @ C^T, C of shape (channels, M)) is
registered from this file, fitted to a small photograph, and then quantized, entropy coded, written
to a .inr file, read back, decoded, rendered and measured by the library's public functions, with
no edit of the library. It has no MLP layers, so it is quantized by nearest rounding and QAT.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from inrcompress.codec import container
from inrcompress.codec.compress import QuantConfig, compress_network, decode_image, decode_network
from inrcompress.codec.quant import QuantizedTensors, dequantized_tensors
from inrcompress.codec.representations import (REPRESENTATIONS, register_representation, representation_of,
                                               unregister_representation)
from inrcompress.codec.representations.base import Field, Representation, TensorSpec, check_range
from inrcompress.errors import CorruptFileError, InrError
from inrcompress.evaluate.metrics import image_metrics
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values, values_to_uint8

from tests.conftest import photo_crop

MAX_DEGREE = 12


def exponents(in_features: int, degree: int) -> list[tuple[int, ...]]:
    """Exponent tuples of every monomial of total degree <= degree, in a fixed order."""
    return [e for e in itertools.product(range(degree + 1), repeat=in_features) if sum(e) <= degree]


class PolynomialModule(torch.nn.Module):
    def __init__(self, in_features: int, out_features: int, degree: int):
        super().__init__()
        self.in_features, self.out_features, self.degree = in_features, out_features, degree
        self.powers = torch.tensor(exponents(in_features, degree), dtype=torch.float32)  # (M, d)
        self.coefficients = torch.nn.Parameter(torch.zeros(out_features, len(self.powers)))

    def monomials(self, coords: torch.Tensor) -> torch.Tensor:
        return torch.prod(coords.unsqueeze(1) ** self.powers, dim=-1)  # (N, M)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.monomials(coords) @ self.coefficients.T


@dataclass(frozen=True)
class Polynomial(Representation):
    in_features: int
    out_features: int
    degree: int

    name = "test_polynomial"
    file_id = 250
    fields = (Field("degree", "B"),)

    def field_values(self) -> dict[str, Any]:
        return {"degree": self.degree}

    @classmethod
    def from_fields(cls, values: Mapping[str, Any], in_features: int, out_features: int,
                    error: type[InrError] = InrError) -> Polynomial:
        check_range(values, "degree", 0, MAX_DEGREE, error)
        return cls(in_features, out_features, values["degree"])

    def tensor_specs(self) -> list[TensorSpec]:
        return [TensorSpec("coefficients", (self.out_features, len(exponents(self.in_features, self.degree))))]

    def build(self) -> PolynomialModule:
        return PolynomialModule(self.in_features, self.out_features, self.degree)

    @classmethod
    def describe(cls, obj: Any) -> Polynomial | None:
        if isinstance(obj, PolynomialModule):
            return cls(obj.in_features, obj.out_features, obj.degree)
        return None

    def inputs(self, module: PolynomialModule, coords: torch.Tensor) -> torch.Tensor:
        return module.monomials(coords)

    def inputs_width(self) -> int:
        return self.tensor_specs()[0].shape[1]

    def apply(self, tensors: Sequence[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        return inputs @ tensors[0].T


@pytest.fixture
def polynomial():
    """Register the test representation for one test and remove it afterwards (also on failure)."""
    register_representation(Polynomial)
    try:
        yield Polynomial
    finally:
        unregister_representation(Polynomial.name)


def fitted_polynomial(image: np.ndarray, degree: int) -> tuple[PolynomialModule, torch.Tensor, torch.Tensor]:
    """The least-squares polynomial of the image (a float64 solve, rounded to float32)."""
    coords = coordinate_grid(image.shape[:2])
    values = image_to_values(image)
    model = PolynomialModule(2, image.shape[2], degree)
    features = model.monomials(coords).double()
    solution = torch.linalg.lstsq(features, values.double()).solution  # (M, C)
    with torch.no_grad():
        model.coefficients.copy_(solution.T.float())
    return model, coords, values


def test_a_representation_defined_in_the_tests_goes_through_the_codec(polynomial, tmp_path):
    image = photo_crop("astronaut", 20, 24)
    model, coords, values = fitted_polynomial(image, degree=6)
    float_metrics = image_metrics(values_to_uint8(model(coords).detach(), 20, 24) / 255.0, image / 255.0)
    mean_colour = np.broadcast_to(image.reshape(-1, 3).mean(axis=0), image.shape)
    # the fit is real: a degree-6 polynomial catches the coarse layout (2.9 dB over the mean colour)
    assert float_metrics["psnr"] > image_metrics(mean_colour / 255.0, image / 255.0)["psnr"] + 2

    # Without MLP layers there is nothing for AdaRound: said before any work is done.
    with pytest.raises(InrError, match="test_polynomial representation has no linear layers for AdaRound"):
        compress_network(model, coords, values, QuantConfig(bitwidth=10), modality="image", height=20, width=24)

    qcfg = QuantConfig(bitwidth=10, adaround=False, retrain_epochs=20, retrain_lr=1e-4)
    data, sizes = compress_network(model, coords, values, qcfg, modality="image", height=20, width=24, seed=0)
    assert sizes.total == len(data) and sizes.step_size_bytes == 4
    path = tmp_path / "poly.inr"
    path.write_bytes(data)
    read = container.read_inr_file_bytes(path)

    header, decoded = decode_network(read)
    assert header.representation == Polynomial(2, 3, 6) and header.degree == 6
    assert isinstance(decoded, PolynomialModule)
    _, picture = decode_image(read)
    # What the decoder renders is the polynomial with the dequantized coefficients, exactly.
    header_again, symbols = container.read_inr(read)
    assert header_again == header
    shapes = [spec.shape for spec in header.representation.tensor_specs()]
    assert shapes == [(3, 28)]  # 28 monomials of degree <= 6 in 2 variables
    quantized = QuantizedTensors(header.bitwidth, symbols, list(header.step_sizes), shapes)
    expected = model.monomials(coords) @ dequantized_tensors(model, quantized)[0].T
    np.testing.assert_array_equal(picture, values_to_uint8(expected.detach(), 20, 24))
    # 10-bit coefficients keep the polynomial's quality.
    metrics = image_metrics(picture / 255.0, image / 255.0)
    assert metrics["psnr"] > float_metrics["psnr"] - 0.5
    assert metrics["ssim"] > float_metrics["ssim"] - 0.05
    assert 8 * len(data) / (20 * 24) < 8  # fewer bits than the raw 24 bits per pixel by far


def test_the_test_representation_is_refused_once_unregistered(polynomial):
    image = photo_crop("chelsea", 12, 12)
    model, coords, values = fitted_polynomial(image, degree=3)
    data, _ = compress_network(model, coords, values, QuantConfig(bitwidth=8, adaround=False, retrain=False),
                               modality="image", height=12, width=12)
    assert decode_image(data)[1].shape == (12, 12, 3)
    bad = container.write_inr(container.InrHeader.for_model(model, modality="image", height=12, width=12, bitwidth=8,
                                                            coder="brotli", step_sizes=[0.1]),
                              [np.full(3 * 10, 3)])
    header = container.read_inr(bad)[0]
    assert header.representation == Polynomial(2, 3, 3)
    body = bytearray(bad[:-4])
    body[container._PREFIX + container._COMMON.size + 3] = MAX_DEGREE + 1  # the architecture's degree field
    with pytest.raises(CorruptFileError, match="degree 13 is outside the format's range 0..12"):
        container.read_inr(bytes(body) + zlib.crc32(body).to_bytes(4, "little"))

    unregister_representation(Polynomial.name)
    with pytest.raises(CorruptFileError, match="unknown representation id 250"):
        decode_image(data)
    with pytest.raises(InrError, match="no registered representation describes a PolynomialModule"):
        representation_of(model)


def test_registration_does_not_leak():
    assert Polynomial.name not in REPRESENTATIONS
    assert "siren_mlp" in REPRESENTATIONS


def test_registry_refuses_a_taken_name_or_file_id(polynomial):
    with pytest.raises(InrError, match="already registered"):
        register_representation(Polynomial)

    @dataclass(frozen=True)
    class SameId(Polynomial):
        name = "test_same_id"

    with pytest.raises(InrError, match="file_id 250 of 'test_same_id' is taken by 'test_polynomial'"):
        register_representation(SameId)
    assert "test_same_id" not in REPRESENTATIONS
