"""Golden files: .inr files written by earlier versions decode to exactly the outputs stored with them.

tests/golden/<version>/manifest.json lists every file with the md5 of its bytes and of its decoded
pixels (images) or the sha256 of the decoded network's 32^3 SDF grid and of its marching-cubes
vertices and faces (the shape). The files are never regenerated (tests/golden/README.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from inrcompress.codec.compress import decode_image, decode_network
from inrcompress.codec.container import read_inr, write_inr
from inrcompress.errors import InrError
from inrcompress.signals.shape_eval import extract_surface, sdf_grid

GOLDEN = Path(__file__).parent / "golden"
VERSIONS = sorted(p.name for p in GOLDEN.iterdir() if (p / "manifest.json").is_file())


def _manifest(version: str) -> dict:
    return json.loads((GOLDEN / version / "manifest.json").read_text())


def _cases(kind: str) -> list:
    return [pytest.param(version, name, id=f"{version}/{name}")
            for version in VERSIONS for name in _manifest(version) if name.startswith(kind)]


def _names(version: str) -> list:
    return [pytest.param(name, id=name) for name in _manifest(version)]


def _file(version: str, name: str) -> bytes:
    data = (GOLDEN / version / f"{name}.inr").read_bytes()
    assert hashlib.md5(data).hexdigest() == _manifest(version)[name]["md5"], "the golden file itself changed"
    return data


def _meta_init(version: str) -> dict[str, torch.Tensor]:
    return torch.load(GOLDEN / version / "meta_init.pth", weights_only=True)


def test_both_versions_are_present():
    assert {"v1", "v2"} <= set(VERSIONS)


@pytest.mark.parametrize("version,name", _cases("image_"))
def test_golden_image_decodes_to_the_stored_pixels(version, name):
    entry = _manifest(version)[name]
    data = _file(version, name)
    assert data[4] == int(version[1:])
    reference = _meta_init(version) if "meta" in name else None
    header, picture = decode_image(data, reference)
    stored = np.load(GOLDEN / version / f"{name}_decoded.npy")
    assert picture.dtype == np.uint8 and list(picture.shape) == entry["decoded_shape"]
    np.testing.assert_array_equal(picture, stored)
    assert hashlib.md5(picture.tobytes()).hexdigest() == entry["decoded_md5"]
    assert header.modality == "image"


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_residual_needs_its_own_init(version):
    data = _file(version, "image_meta_residual")
    with pytest.raises(InrError, match="meta-learned initialization"):
        decode_image(data)
    other = {k: v + 1e-3 for k, v in _meta_init(version).items()}
    with pytest.raises(InrError, match="not the one this file was coded against"):
        decode_image(data, other)
    header, _ = decode_image(data, _meta_init(version))
    assert header.rotated and header.height < header.width


@pytest.mark.parametrize("version,name", _cases("shape_"))
def test_golden_shape_decodes_to_the_stored_mesh(version, name):
    entry = _manifest(version)[name]
    header, model = decode_network(_file(version, name))
    assert header.modality == "shape"
    grid = sdf_grid(model, entry["mc_resolution"])
    # The SDF is the float network's output, so its bits depend on the CPU's SIMD kernels (the
    # manifest's sdf_grid_sha256 and vertices_sha256 are those of an AVX-512 machine; an AVX2-only
    # one differs by about 1e-7): the grid is pinned to a tolerance by the stored grid (decoded on
    # the AVX2 machine, 2026-12-02), the mesh's topology exactly.
    stored = np.load(GOLDEN / version / f"{name}_sdf_grid.npy")
    np.testing.assert_allclose(grid, stored, rtol=0, atol=1e-5)
    vertices, faces = extract_surface(grid)
    assert (len(vertices), len(faces)) == (entry["vertices"], entry["faces"])
    np.testing.assert_allclose(vertices, extract_surface(stored)[0], rtol=0, atol=1e-4)
    assert hashlib.sha256(np.ascontiguousarray(faces, dtype=np.int64).tobytes()).hexdigest() == entry["faces_sha256"]


@pytest.mark.parametrize("name", _names("v2"))
def test_the_writer_reproduces_the_golden_v2_bytes(name):
    """The v2 layout is pinned byte for byte: what the reader parses, the writer writes back
    identically (with the entropy model the file uses, so a new model cannot change the bytes)."""
    data = _file("v2", name)
    header, symbols = read_inr(data)
    model = _manifest("v2")[name]["coding_model"]
    assert write_inr(header, symbols, model=None if model == "brotli" else model) == data


@pytest.mark.parametrize("name", _names("v1"))
def test_a_v1_file_rewritten_as_v2_decodes_to_the_same_output(name):
    header, symbols = read_inr(_file("v1", name))
    rewritten = write_inr(header, symbols)
    assert rewritten[4] == 2
    reference = _meta_init("v1") if header.init_hash else None
    old, new = decode_network(_file("v1", name), reference)[1], decode_network(rewritten, reference)[1]
    assert old.state_dict().keys() == new.state_dict().keys()
    for key, value in old.state_dict().items():
        assert torch.equal(value, new.state_dict()[key]), key


def test_the_per_channel_golden_file_pins_section_5():
    header, _ = read_inr(_file("v2", "image_per_channel_arith"))
    rows = [spec.shape[0] for spec in header.representation.tensor_specs() if len(spec.shape) == 2]
    assert len(header.channel_codes) == sum(rows) and header.bitwidth == 7
    assert len(set(header.channel_codes)) > 1  # rows with different steps
