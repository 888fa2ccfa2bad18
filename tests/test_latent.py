"""The latent-grid codec: fixed-point ARM and its range coding (codec/latent_coding.py), the
representation and its module, the fit, the file (container section 4) and decoding it in
another process."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from inrcompress.codec import latent_coding as lc
from inrcompress.codec.compress import decode_image
from inrcompress.codec.container import InrHeader, encode_inr, read_inr, read_inr_header
from inrcompress.codec.representations import representation_by_name
from inrcompress.codec.representations.latent import BICUBIC_DOUBLING_HALF_TAPS, PRESETS, LatentGrid, LatentGridConv
from inrcompress.config import ModelConfig
from inrcompress.errors import CorruptFileError, InrError
from inrcompress.experiments.latent_codec import compress_image_latent
from inrcompress.fit.latent import ROUNDING_PROXIES, SCHEDULES, LatentSchedule, fit_latent, fit_latents, soft_round
from inrcompress.signals.image import image_to_values

REPO = Path(__file__).resolve().parents[1]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def random_arm(rng: np.random.Generator, context: int = 8, hidden: int = 8, layers: int = 2,
               frac: int = lc.WEIGHT_FRAC_BITS) -> lc.FixedPointArm:
    dims = [context] + [hidden] * layers + [2]
    weights = [(rng.integers(-300, 300, (b, a)) / 2 ** frac, rng.integers(-300, 300, b) / 2 ** frac)
               for a, b in zip(dims[:-1], dims[1:])]
    return lc.FixedPointArm(weights, context)


def laplace_grids(rng: np.random.Generator, shapes, scale: float = 2.0) -> list[np.ndarray]:
    return [np.clip(np.round(rng.laplace(0.0, scale, s)), -lc.ZMAX, lc.ZMAX).astype(np.int64) for s in shapes]


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 picture with smooth structure and some texture (what a codec can learn quickly)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [np.sin(6 * x + 2 * c) * np.cos(4 * y - c) for c in range(3)]
    picture = 0.5 + 0.35 * np.stack(channels, -1) + 0.05 * rng.standard_normal((height, width, 3))
    return np.clip(np.rint(picture * 255), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# The probability table and the fixed-point ARM


def test_the_table_is_a_discretized_laplace_with_every_mass_positive():
    table = lc.laplace_table()
    assert table.shape == (lc.MU_FRACTIONS, lc.SCALE_BINS, 4 * lc.ZMAX + 1)
    assert table.min() >= 1 and np.all(table == np.round(table))
    d = np.arange(-2 * lc.ZMAX, 2 * lc.ZMAX + 1)
    for f, s in ((0, 0), (5, 20), (15, 71)):
        mu, b = f / lc.MU_FRACTIONS, 2.0 ** (lc.LOG2_SCALE_MIN + s / lc.SCALE_BINS_PER_OCTAVE)
        cdf = lambda t: np.where(t < 0, 0.5 * np.exp(-np.abs(t) / b), 1 - 0.5 * np.exp(-np.abs(t) / b))  # noqa: E731
        expected = cdf(d + 0.5 - mu) - cdf(d - 0.5 - mu)
        np.testing.assert_allclose(table[f, s] / 2.0 ** lc.PROB_BITS, expected, atol=3e-9)


def test_fixed_point_arm_refuses_weights_it_cannot_evaluate_exactly():
    rng = np.random.default_rng(0)
    good = [(np.zeros((4, 8)), np.zeros(4)), (np.zeros((2, 4)), np.zeros(2))]
    lc.FixedPointArm(good, 8)
    with pytest.raises(CorruptFileError, match="multiples of 2\\^-12"):
        lc.FixedPointArm([(np.full((4, 8), 1e-5), np.zeros(4)), good[1]], 8, CorruptFileError)
    with pytest.raises(CorruptFileError, match="too large"):
        lc.FixedPointArm([(np.full((4, 8), 2.0 ** 40), np.zeros(4)), good[1]], 8, CorruptFileError)
    with pytest.raises(InrError, match="2 outputs"):
        lc.FixedPointArm([(np.zeros((4, 8)), np.zeros(4))], 8)
    with pytest.raises(InrError, match="shapes"):
        lc.FixedPointArm([(np.zeros((4, 7)), np.zeros(4)), good[1]], 8)
    assert random_arm(rng).offsets == lc.context_offsets(8)


def test_arm_indices_do_not_depend_on_the_batch():
    """The decoder evaluates one wavefront at a time, the encoder everything at once."""
    rng = np.random.default_rng(1)
    arm = random_arm(rng, context=12, hidden=12)
    contexts = rng.integers(-lc.ZMAX, lc.ZMAX + 1, (500, 12))
    whole = arm.indices(contexts)
    parts = [arm.indices(contexts[i:i + 7]) for i in range(0, 500, 7)]
    for k in range(3):
        np.testing.assert_array_equal(whole[k], np.concatenate([p[k] for p in parts]))
    m, f, s = whole
    assert m.min() >= -lc.ZMAX and m.max() <= lc.ZMAX and f.min() >= 0 and f.max() < lc.MU_FRACTIONS
    assert s.min() >= 0 and s.max() < lc.SCALE_BINS


def test_wavefronts_never_hold_a_latent_and_its_context():
    for size in lc.CONTEXT_SIZES:
        offsets = lc.context_offsets(size)
        k = lc.wavefront_slope(offsets)
        assert all(dx + k * dy < 0 for dy, dx in offsets)


# ------------------------------------------------------------------------------------------------
# Range coding of the grids


@pytest.mark.parametrize("shapes", [[(13, 17), (7, 9), (4, 5), (2, 3), (1, 2), (1, 1)], [(1, 1)], [(5, 1), (3, 1)]])
def test_latents_round_trip_wavefront_by_wavefront(shapes):
    rng = np.random.default_rng(2)
    arm = random_arm(rng)
    grids = laplace_grids(rng, shapes)
    grids[0][0, 0] = lc.ZMAX  # the ends of the alphabet
    grids[-1][-1, -1] = -lc.ZMAX
    data = lc.encode_latents(grids, arm)
    decoded = lc.decode_latents(data, shapes, arm)
    for a, b in zip(grids, decoded):
        np.testing.assert_array_equal(a, b)
    # The ideal code length is what the stream holds, up to its last words.
    assert abs(8 * len(data) - lc.latent_bits(grids, arm)) <= 64 + 0.01 * lc.latent_bits(grids, arm)


def test_latent_stream_refuses_out_of_range_latents_and_damaged_streams():
    rng = np.random.default_rng(3)
    arm = random_arm(rng)
    shapes = [(16, 16), (8, 8)]
    grids = laplace_grids(rng, shapes)
    bad = [g.copy() for g in grids]
    bad[1][0, 0] = lc.ZMAX + 1
    with pytest.raises(InrError, match="outside"):
        lc.encode_latents(bad, arm)
    data = lc.encode_latents(grids, arm)
    with pytest.raises(CorruptFileError):
        lc.decode_latents(data[:-4], shapes, arm)
    with pytest.raises(CorruptFileError):
        lc.decode_latents(data + b"\0\0\0\0", shapes, arm)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x55
    try:  # a flipped bit decodes to other latents or is refused; it never crashes
        other = lc.decode_latents(bytes(flipped), shapes, arm)
        assert any((a != b).any() for a, b in zip(other, grids))
    except CorruptFileError:
        pass


# ------------------------------------------------------------------------------------------------
# The representation, its module and the fit


def test_representation_registered_fields_round_trip_and_bounds():
    rep = LatentGrid.preset("mac1000", 40, 56)
    assert representation_by_name("latent_grid") is LatentGrid
    assert LatentGrid.from_fields(rep.field_values(), 2, 3) == rep
    assert [s.name for s in rep.tensor_specs()][:2] == ["synthesis.0.weight", "synthesis.0.bias"]
    model = rep.build()
    assert LatentGrid.describe(model) == rep
    assert [tuple(p.shape) for p in model.latents] == rep.grid_shapes()
    assert rep.grid_shapes()[-1] == (1, 1)
    for name, lo_hi in (("levels", 9), ("arm_hidden", 33), ("arm_context", 5)):
        with pytest.raises(CorruptFileError):
            LatentGrid.from_fields({**rep.field_values(), name: lo_hi}, 2, 3, CorruptFileError)
    with pytest.raises(InrError, match="unknown latent preset"):
        LatentGrid.preset("mac3", 8, 8)
    sizes = [LatentGrid.preset(name, 512, 768).macs_per_point() for name in ("mac500", "mac1000", "mac2000")]
    assert sizes == sorted(sizes) and 350 <= sizes[0] <= 650 and 1500 <= sizes[-1] <= 2500


def test_conv_representation_fields_tensors_and_presets():
    rep = LatentGrid.preset("conv600", 40, 56)
    assert type(rep) is LatentGridConv and representation_by_name("latent_grid_conv") is LatentGridConv
    assert LatentGridConv.file_id != LatentGrid.file_id
    assert LatentGridConv.from_fields(rep.field_values(), 2, 3) == rep
    assert type(LatentGrid.preset("mac500", 40, 56)) is LatentGrid
    names = [s.name for s in rep.tensor_specs()]
    assert names[4:9] == ["conv.0.weight", "conv.0.bias", "conv.1.weight", "conv.1.bias", "upsampling.taps"]
    assert names[-1].startswith("arm.") and rep.linear_layers() is None
    model = rep.build()
    assert [tuple(t.shape) for t in rep.tensors(model)] == [s.shape for s in rep.tensor_specs()]
    bicubic = LatentGridConv(height=40, width=56, upsampling="bicubic", synthesis_convs=0)
    assert "upsampling.taps" not in [s.name for s in bicubic.tensor_specs()]
    assert rep.macs_per_point() > LatentGrid.preset("mac500", 40, 56).macs_per_point()
    for name, bad in (("synthesis_convs", 5), ("upsampling", "nearest")):
        with pytest.raises(CorruptFileError):
            LatentGridConv.from_fields({**rep.field_values(), name: bad}, 2, 3, CorruptFileError)
    with pytest.raises(InrError, match="whole pictures"):
        rep.apply(rep.tensors(model), torch.zeros(3, rep.levels))


@pytest.mark.parametrize("shape", [(5, 7), (1, 1), (6, 3)])
def test_learned_upsampling_starts_as_bicubic_doubling(shape):
    from inrcompress.codec.representations.latent_module import double_grids

    grids = torch.randn(1, 2, *shape, generator=torch.Generator().manual_seed(1))
    expected = torch.nn.functional.interpolate(grids, scale_factor=2, mode="bicubic", align_corners=False)
    doubled = double_grids(grids, torch.tensor(BICUBIC_DOUBLING_HALF_TAPS))
    torch.testing.assert_close(doubled, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("height, width", [(37, 53), (64, 48)])
def test_bicubic_features_equal_interpolating_every_grid(height, width):
    """The matrix form of the upsampling (latent_module.bicubic_matrix) is F.interpolate's."""
    model = LatentGrid(height=height, width=width, levels=5, arm_context=4, arm_hidden=4).build()
    with torch.no_grad():
        for grid in model.latents:
            grid.normal_(0.0, 3.0)
        expected = torch.cat([model.latents[0][None, None]] + [
            torch.nn.functional.interpolate(g[None, None], size=(height, width), mode="bicubic", align_corners=False)
            for g in model.latents[1:]], dim=1)[0].reshape(5, -1).t()
        torch.testing.assert_close(model.features(), expected, atol=2e-5, rtol=0)


def test_training_contexts_are_the_coders_contexts():
    """The rate term's neighbours of every latent (shifted views) equal, value for value, the ones
    latent_coding's layout gives the coder, whatever the order."""
    rep = LatentGrid(height=21, width=34, levels=4, arm_context=24, arm_hidden=4)
    model = rep.build()
    grids = laplace_grids(np.random.default_rng(2), rep.grid_shapes(), scale=4.0)
    model.load_integer_latents(grids)
    with torch.no_grad():
        values, contexts = model.latents_and_contexts(list(model.latents))
    layout = lc.GridLayout(rep.grid_shapes(), lc.context_offsets(24))
    coder_contexts = layout.contexts(layout.buffer_of(grids))
    np.testing.assert_array_equal(values.numpy()[layout.flat], layout.coded_values(grids))
    np.testing.assert_array_equal(contexts.numpy()[:, layout.flat].T, coder_contexts)


def test_conv_module_with_identity_additions_equals_the_bicubic_grid():
    """Two levels (one doubling, where the learned filter's start is bicubic exactly), convolutions
    at their zero start: the conv module computes what the plain latent grid does; trained, the
    convolutions change the picture."""
    plain = LatentGrid(height=12, width=18, levels=2, arm_context=4, arm_hidden=4)
    conv = LatentGridConv(height=12, width=18, levels=2, arm_context=4, arm_hidden=4)
    torch.manual_seed(0)
    a, b = plain.build(), conv.build()
    b.load_state_dict({**b.state_dict(), **a.state_dict()})
    with torch.no_grad():
        for grid in a.latents:
            grid.normal_()
        for grid_a, grid_b in zip(a.latents, b.latents):
            grid_b.copy_(grid_a)
        torch.testing.assert_close(b.values(), a.values(), atol=1e-5, rtol=0)
        b.conv[0].weight.normal_()
        assert (b.values() - a.values()).abs().max() > 1e-2


def test_float_arm_rate_matches_the_fixed_point_coder_on_quantized_weights():
    """The training rate term and the coder use the same model up to the table's bins."""
    torch.manual_seed(0)
    rep = LatentGrid(height=48, width=64, levels=4, arm_context=8, arm_hidden=8)
    model = rep.build()
    rng = np.random.default_rng(4)
    grids = laplace_grids(rng, rep.grid_shapes(), scale=1.5)
    model.load_integer_latents(grids)
    with torch.no_grad():
        for layer in model.arm:  # weights on the fixed-point grid, as after quantization
            layer.weight.copy_(torch.round(layer.weight * 256) / 256)
            layer.bias.copy_(torch.round(layer.bias * 256) / 256)
    with torch.no_grad():
        float_bits = float(model.latent_bits(model.rounded_latents()))
    coded = 8 * len(lc.encode_latents(grids, model.fixed_point_arm()))
    assert abs(coded - float_bits) / float_bits < 0.03


def test_soft_round_goes_from_identity_to_rounding_and_keeps_half_integers():
    x = torch.linspace(-3.2, 3.2, 641, dtype=torch.float64)
    off_ties = x[(x - x.floor() - 0.5).abs() > 0.02]
    assert torch.allclose(soft_round(off_ties, 1e-3), torch.round(off_ties), atol=1e-9)
    assert (soft_round(x, 10.0) - x).abs().max() < 1e-3
    halves = torch.arange(-3, 3, dtype=torch.float64) + 0.5
    for temperature in (0.05, 0.3, 2.0):
        assert torch.allclose(soft_round(halves, temperature), halves, atol=1e-12)
        assert torch.all(torch.diff(soft_round(x, temperature)) > 0)  # increasing, so no jumps at integers
    with pytest.raises(InrError, match="rounding proxy"):
        LatentSchedule("bad", iterations=10, proxy="gumbel")
    with pytest.raises(InrError, match="temperatures"):
        LatentSchedule("bad", iterations=10, temperature_end=0.0)


@pytest.mark.parametrize("proxy", sorted(ROUNDING_PROXIES))
def test_fit_lowers_distortion_plus_rate(proxy):
    image = smooth_image(24, 32)
    rep = LatentGrid(height=24, width=32, levels=3, arm_context=4, arm_hidden=4, arm_layers=1,
                     synthesis_hidden=8, synthesis_layers=1)
    target = image_to_values(image)
    losses = {}
    for iterations in (1, 100):
        schedule = LatentSchedule("t", iterations=iterations, noise_fraction=0.5 if iterations > 1 else 0.0,
                                  eval_every=5, proxy=proxy)
        _, result = fit_latent(rep.build, target, 0.01, schedule, progress=False)
        losses[iterations] = result.loss
        assert math.isfinite(result.loss)
    assert losses[100] < 0.5 * losses[1]
    assert set(SCHEDULES) >= {"test", "fast", "standard"}
    with pytest.raises(InrError, match="rate_lambda"):
        fit_latent(rep.build, target, -1.0, SCHEDULES["test"], progress=False)


def test_one_start_repeats_the_kept_start_of_a_several_start_fit():
    from inrcompress.fit.latent import one_start

    image = smooth_image(16, 20, seed=3)
    rep = LatentGrid(height=16, width=20, levels=3, arm_context=4, arm_hidden=4, arm_layers=1,
                     synthesis_hidden=6, synthesis_layers=1)
    target = image_to_values(image)
    schedule = LatentSchedule("two", iterations=40, noise_fraction=0.5, starts=2, start_iterations=10, eval_every=5)
    model, result = fit_latent(rep.build, target, 0.01, schedule, seed=5, progress=False)
    alone, alone_seed = one_start(schedule, 5, result.start)
    model_alone, result_alone = fit_latent(rep.build, target, 0.01, alone, seed=alone_seed, progress=False)
    assert alone.starts == 1 and result_alone.loss == result.loss
    for (name, a), b in zip(model.state_dict().items(), model_alone.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


def assert_same_fit(got, expected, rtol: float) -> None:
    (model, result), (model_alone, result_alone) = got, expected
    assert result.start == result_alone.start
    assert result.loss == pytest.approx(result_alone.loss, rel=rtol)
    for name, value in model_alone.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, atol=rtol, rtol=rtol, msg=name)


@pytest.mark.parametrize("kind", [LatentGrid, LatentGridConv], ids=["bicubic", "conv"])
def test_a_batched_fit_equals_the_fits_one_by_one(kind):
    rep = kind(height=16, width=20, levels=3, arm_context=4, arm_hidden=4, arm_layers=1, synthesis_hidden=6,
               synthesis_layers=1)
    targets = [image_to_values(smooth_image(16, 20, seed=s)) for s in (1, 2, 3)]
    lambdas, seeds = [0.01, 0.002, 0.005], [0, 7, 3]
    schedule = LatentSchedule("two", iterations=30, noise_fraction=0.5, starts=2, start_iterations=6, eval_every=5)
    batched = fit_latents(rep.build, targets, lambdas, schedule, seeds=seeds, progress=False)
    alone = [fit_latent(rep.build, t, lam, schedule, seed=seed, progress=False)
             for t, lam, seed in zip(targets, lambdas, seeds)]
    assert len({result.start for _, result in batched}) > 1  # the members continue different starts
    for got, expected in zip(batched, alone):
        assert_same_fit(got, expected, 1e-4)
    with pytest.raises(InrError, match="one shape"):
        fit_latents(rep.build, [targets[0], targets[0][:-4]], [0.01, 0.01], schedule, progress=False)
    with pytest.raises(InrError, match="one rate_lambda"):
        fit_latents(rep.build, targets, [0.01], schedule, progress=False)


def test_a_batch_resumes_from_points_written_one_by_one(tmp_path):
    rep = LatentGrid(height=16, width=24, levels=3, arm_context=4, arm_hidden=4, arm_layers=1, synthesis_hidden=6,
                     synthesis_layers=1)
    targets = [image_to_values(smooth_image(16, 24, seed=s)) for s in (5, 6)]
    schedule = LatentSchedule("t", iterations=40, noise_fraction=0.5, starts=2, start_iterations=5, eval_every=5)
    paths = [tmp_path / f"resume{b}.pth" for b in range(2)]

    def stop(step):
        if step == 27:
            raise KeyboardInterrupt

    expected = []
    for b, target in enumerate(targets):
        expected.append(fit_latent(rep.build, target, 0.01, schedule, seed=b, progress=False))
        with pytest.raises(KeyboardInterrupt):
            fit_latent(rep.build, target, 0.01, schedule, seed=b, progress=False, resume_path=paths[b],
                       resume_every=10, step_hook=stop)
    assert all(p.is_file() for p in paths)
    with pytest.raises(InrError, match="one step"):
        fit_latents(rep.build, targets, [0.01, 0.01], schedule, seeds=[0, 1], progress=False,
                    resume_paths=[paths[0], tmp_path / "fresh.pth"])
    resumed = fit_latents(rep.build, targets, [0.01, 0.01], schedule, seeds=[0, 1], progress=False,
                          resume_paths=paths, resume_every=10)
    assert not any(p.exists() for p in paths)
    for got, want in zip(resumed, expected):
        assert_same_fit(got, want, 1e-4)


# ------------------------------------------------------------------------------------------------
# The file


@pytest.fixture(scope="module", params=[LatentGrid, LatentGridConv], ids=["bicubic", "conv"])
def coded_file(request):
    image = smooth_image(20, 28, seed=1)
    rep = request.param(height=20, width=28, levels=3, arm_context=8, arm_hidden=8, arm_layers=1,
                        synthesis_hidden=8, synthesis_layers=1)
    data, info = compress_image_latent(image, rep, 0.005, SCHEDULES["test"], progress=False)
    return image, data, info


def test_the_file_decodes_to_what_the_encoder_reported(coded_file):
    image, data, info = coded_file
    header, picture = decode_image(data)
    assert isinstance(header.representation, LatentGrid) and header.latent_stream
    assert info["bytes"] == len(data) and info["bpp"] == 8 * len(data) / (20 * 28)
    error = np.mean((picture.astype(np.float64) - image) ** 2) / 255.0 ** 2
    assert info["psnr"] == pytest.approx(-10 * math.log10(error), abs=1e-9)
    assert info["psnr"] > 15
    assert read_inr_header(data) == header


def test_decode_tool_in_another_process_gives_identical_pixels(coded_file, tmp_path):
    from PIL import Image

    _, data, _ = coded_file
    path = tmp_path / "latent.inr"
    path.write_bytes(data)
    out = subprocess.run([sys.executable, str(REPO / "image_compression" / "decode.py"), str(path),
                          str(tmp_path / "latent.png")], capture_output=True, text=True, env=ONE_THREAD)
    assert out.returncode == 0, out.stderr
    assert "MAC/pixel" in out.stdout
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "latent.png")), decode_image(data)[1])


def _recrc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_damaged_latent_files_are_refused_with_one_line(coded_file, tmp_path):
    _, data, _ = coded_file
    header, symbols = read_inr(data)
    # The latent stream's words damaged (CRC recomputed): refused or decoded to other pixels, never a crash.
    stream_start = len(data) - 4 - len(header.latent_stream)
    for k in np.linspace(0, len(header.latent_stream) - 1, 12).astype(int):
        body = bytearray(data[:-4])
        body[stream_start + k] ^= 0xA5
        try:
            decode_image(_recrc(bytes(body)))
        except CorruptFileError as e:
            assert "\n" not in str(e)
    # Without its latent section, and a SIREN with one.
    with pytest.raises(InrError, match="needs its latent stream"):
        encode_inr(InrHeader(modality="image", height=20, width=28, rotated=False, representation=header.representation,
                             bitwidth=16, coder="arithmetic", step_sizes=header.step_sizes), symbols)
    siren = representation_by_name("siren_mlp")(ModelConfig(in_features=2, out_features=3, encoding="mlp",
                                                            hidden_dims=4, hidden_layers=1, ff_dims=0))
    with pytest.raises(InrError, match="has no latent stream"):
        encode_inr(InrHeader(modality="image", height=20, width=28, rotated=False, representation=siren,
                             bitwidth=8, coder="arithmetic", step_sizes=(1.0,) * 6, latent_stream=b"xx"),
                   [np.zeros(s.numel, dtype=np.int64) for s in siren.tensor_specs()])
    # A stream length past the end of the file.
    section = data.index(bytes([4, 4, 0]))
    body = bytearray(data[:-4])
    body[section + 3:section + 7] = (len(data) * 2).to_bytes(4, "little")
    with pytest.raises(CorruptFileError, match="runs past the end"):
        read_inr(_recrc(bytes(body)))
    # ARM steps that are not powers of two (the fixed-point ARM cannot run them): one line, exit 2.
    rep = header.representation
    steps = [s if i < rep.synthesis_tensor_count() else 0.3 for i, s in enumerate(header.step_sizes)]
    odd = encode_inr(InrHeader(modality="image", height=20, width=28, rotated=False, representation=rep,
                               bitwidth=16, coder="arithmetic", step_sizes=tuple(steps),
                               latent_stream=header.latent_stream), symbols)[0]
    with pytest.raises(CorruptFileError, match="multiples"):
        decode_image(odd)
    path = tmp_path / "bad.inr"
    path.write_bytes(odd)
    out = subprocess.run([sys.executable, str(REPO / "image_compression" / "decode.py"), str(path),
                          str(tmp_path / "o.png")], capture_output=True, text=True, env=ONE_THREAD)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and out.stderr.count("\n") == 1


# ------------------------------------------------------------------------------------------------
# The tools


def test_overfit_latent_tool_writes_files_results_and_resumes_image_by_image(tmp_path, capsys):
    from PIL import Image

    from inrcompress.tools.overfit_latent import main

    data = tmp_path / "data" / "SET"
    data.mkdir(parents=True)
    Image.fromarray(smooth_image(16, 24)).save(data / "a.png")
    Image.fromarray(smooth_image(20, 12, seed=2)).save(data / "b.png")
    Image.fromarray(smooth_image(16, 24, seed=4)).save(data / "c.png")
    argv = ["--data_root", str(tmp_path / "data"), "--dataset", "SET", "--exp_root", str(tmp_path / "exp"),
            "--batch_images", "3", "--rate_lambda", "0.003", "--latent_schedule", "test", "--latent_preset", "mac500",
            "--notensorboard"]
    assert main(argv) == 0
    assert capsys.readouterr().out.count("(2 fitted together)") == 2  # a and c; b has its own size
    exp = tmp_path / "exp" / "latent" / "SET_1x_latent_mac500_test"
    results = json.loads((exp / "results_latent_mac500_test_lambda0.003.json").read_text())
    assert set(results["per_image"]) == {"a", "b", "c"}
    for name in ("a", "b", "c"):
        data_bytes = (exp / name / "compressed_latent_mac500_test_lambda0.003.inr").read_bytes()
        assert results["per_image"][name]["bytes"] == len(data_bytes)
        picture = decode_image(data_bytes)[1]
        original = np.asarray(Image.open(data / f"{name}.png"))
        error = np.mean((picture.astype(np.float64) - original) ** 2) / 255.0 ** 2
        assert results["per_image"][name]["psnr"] == pytest.approx(-10 * math.log10(error), abs=1e-9)
    assert "latent_schedule_iterations: 60" in (exp / "FLAGS.yml").read_text()
    assert main(argv) == 0
    assert capsys.readouterr().out.count("done, skipped") == 3
    assert main([*argv[:-3], "--rate_lambda", "0"]) == 2
    assert main([*argv, "--batch_images", "0"]) == 2
    assert main([*argv, "--device", "cuda:7"]) == 2  # a device this machine lacks: one line, no work
    assert "error:" in capsys.readouterr().err
    # quantize_and_test.py's experiment glob does not take the latent experiments for SIREN ones.
    from inrcompress.experiments.runs import experiment_folders

    with pytest.raises(InrError, match="no image experiment folder"):
        experiment_folders(tmp_path / "exp", "*", modality="image")


# ------------------------------------------------------------------------------------------------
# Golden files of the new section (tests/golden/latent, made once by made_by_make_golden_latent.py.txt)

GOLDEN = REPO / "tests" / "golden" / "latent"
GOLDEN_MANIFEST = json.loads((GOLDEN / "latent_manifest.json").read_text())


@pytest.mark.parametrize("name", sorted(GOLDEN_MANIFEST))
def test_golden_latent_file_decodes_to_the_stored_pixels_and_rewrites_byte_for_byte(name):
    import hashlib

    entry = GOLDEN_MANIFEST[name]
    data = (GOLDEN / f"{name}.inr").read_bytes()
    assert hashlib.md5(data).hexdigest() == entry["md5"], "the golden file itself changed"
    header, picture = decode_image(data)
    np.testing.assert_array_equal(picture, np.load(GOLDEN / f"{name}_decoded.npy"))
    assert hashlib.md5(picture.tobytes()).hexdigest() == entry["decoded_md5"]
    assert len(header.latent_stream) == entry["latent_stream_bytes"]
    parsed, symbols = read_inr(data)
    assert encode_inr(parsed, symbols, model=entry["coding_model"])[0] == data


def test_fuzzed_latent_files_are_refused_cleanly_or_decode():
    """benchmarks/fuzz_decoder.py's fixed-checksum mode on the latent golden files, briefly."""
    import random
    import importlib.util

    spec = importlib.util.spec_from_file_location("fuzz_decoder", REPO / "benchmarks" / "fuzz_decoder.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    corpus = [(label, data) for label, data in fuzz.build_corpus() if "latent" in label]
    assert len(corpus) == len(GOLDEN_MANIFEST) >= 3
    rng = random.Random(3)
    outcomes = set()
    for i in range(300):
        label, original = corpus[i % len(corpus)]
        problem, outcome = fuzz.check(fuzz.with_crc(fuzz.mutate(original[:-4], rng)), original, True)
        assert not problem, (label, problem)
        outcomes.add(outcome)
    assert "decoded" in outcomes and any(o.startswith("latent stream refused") for o in outcomes)


def test_encode_tool_with_the_latent_representation(tmp_path, capsys):
    from PIL import Image

    from inrcompress.tools.encode import main

    source = tmp_path / "in.png"
    Image.fromarray(smooth_image(16, 20, seed=4)).save(source)
    target = tmp_path / "out.inr"
    common = [str(source), str(target), "--representation", "latent", "--latent_schedule", "test",
              "--latent_preset", "mac500"]
    assert main([*common, "--rate_lambda", "0.004"]) == 0
    out = capsys.readouterr().out
    header, picture = decode_image(target.read_bytes())
    assert isinstance(header.representation, LatentGrid) and picture.shape == (16, 20, 3)
    error = np.mean((picture.astype(np.float64) - np.asarray(Image.open(source))) ** 2) / 255.0 ** 2
    assert f"PSNR {-10 * math.log10(error):.2f} dB" in out and f"{target.stat().st_size} bytes" in out
    from inrcompress.tools.encode import build_flags

    refused = [(["--rate_lambda", "0.004", "--epochs", "5"], "does not use --epochs"),
               (["--rate_lambda", "0"], "needs --rate_lambda > 0")]
    if "target_bpp" in build_flags():  # issue 17's rate targets
        refused.append((["--rate_lambda", "0.004", "--target_bpp", "1"], "--target_bpp"))
    for extra, message in refused:
        assert main([*common, *extra]) == 2
        assert message in capsys.readouterr().err


def test_an_interrupted_latent_fit_resumes_to_the_same_result(tmp_path):
    image = smooth_image(16, 24, seed=5)
    rep = LatentGrid(height=16, width=24, levels=3, arm_context=4, arm_hidden=4, arm_layers=1,
                     synthesis_hidden=6, synthesis_layers=1)
    target = image_to_values(image)
    schedule = LatentSchedule("t", iterations=40, noise_fraction=0.5, starts=2, start_iterations=5, eval_every=5)
    whole, expected = fit_latent(rep.build, target, 0.01, schedule, progress=False)
    path = tmp_path / "resume.pth"

    def stop(step):
        if step == 27:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_latent(rep.build, target, 0.01, schedule, progress=False, resume_path=path, resume_every=10,
                   step_hook=stop)
    assert path.is_file()
    with pytest.raises(InrError, match="another latent fit"):
        fit_latent(rep.build, target, 0.02, schedule, progress=False, resume_path=path)
    resumed, result = fit_latent(rep.build, target, 0.01, schedule, progress=False, resume_path=path, resume_every=10)
    assert not path.exists()
    assert result.loss == expected.loss and result.start == expected.start
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_every_siren_architecture_and_quantization_flag_is_refused_with_latent():
    """A flag added to the SIREN's architecture or quantization groups must join SIREN_ONLY_FLAGS,
    or `encode.py --representation latent` would ignore it without a word."""
    from absl import flags

    from inrcompress.experiments.latent_codec import SIREN_ONLY_FLAGS
    from inrcompress.tools import flags as inr_flags

    fv = flags.FlagValues()
    inr_flags.define_architecture(fv, hidden_dims=32, ff_dims=16)
    inr_flags.define_quantization(fv, experiments=False)
    assert set(fv) - set(SIREN_ONLY_FLAGS) == set()
