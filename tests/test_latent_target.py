"""--target_bpp / --target_psnr for the latent-grid codec (experiments/latent_target.py): the
search over lambda on real files, its steps, encode.py's path and its refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from inrcompress.codec.compress import decode_image
from inrcompress.codec.representations.latent import LatentGrid
from inrcompress.errors import InrError
from inrcompress.experiments import latent_target as lt
from inrcompress.fit.latent import SCHEDULES, fit_latent
from inrcompress.signals.image import image_to_values

HEIGHT, WIDTH = 48, 64
# On this image with the test schedule and preset mac500, lambda 0.002 gave 3.47 bpp and 0.0158
# 2.53 bpp (fits from scratch): a target between them is reachable.
REACHABLE_BPP = 2.9


def astronaut(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    from skimage import data, transform

    small = transform.resize(data.astronaut(), (height, width), anti_aliasing=True)
    return np.clip(np.rint(small * 255), 0, 255).astype(np.uint8)


def psnr_of(data: bytes, image: np.ndarray) -> float:
    picture = decode_image(data)[1]
    error = np.mean((picture.astype(np.float64) - image) ** 2) / 255.0 ** 2
    return -10 * math.log10(error)


@pytest.fixture(scope="module")
def searched():
    image = astronaut()
    rep = LatentGrid.preset("mac500", HEIGHT, WIDTH, 3)
    data, info, chosen = lt.encode_latent_to_target(image, rep, SCHEDULES["test"], target_bpp=REACHABLE_BPP,
                                                    progress=False)
    return image, data, info, chosen


# ------------------------------------------------------------------------------------------------
# The steps of the search (no fits)


def test_first_lambda_comes_from_the_rate_table():
    for rate_lambda, (bpp, psnr) in lt.RATE_TABLE.items():
        assert lt.lambda_from_table(target_bpp=bpp) == pytest.approx(rate_lambda)
        assert lt.lambda_from_table(target_psnr=psnr) == pytest.approx(rate_lambda)
    # between the table's points in log-log, beyond them along its end segments, inside LAMBDA_RANGE
    assert 0.001 < lt.lambda_from_table(target_bpp=0.65) < 0.002
    assert lt.lambda_from_table(target_bpp=2.0) < 0.0005 and lt.lambda_from_table(target_bpp=0.3) > 0.004
    assert lt.lambda_from_table(target_bpp=1e-4) == lt.LAMBDA_RANGE[1]
    assert lt.table_slope(True) == pytest.approx(-0.41, abs=0.01)  # bpp ~ lambda^-0.4


def _tries(*points):
    return [lt.LatentTry(rate_lambda, b"", {"bpp": bpp, "psnr": psnr}, {}, False) for rate_lambda, bpp, psnr in points]


def test_next_lambda_stays_in_the_bracket_and_extrapolates_at_most_max_log_step():
    target = 1.0
    miss = lambda t: math.log(t.bpp / target)  # noqa: E731
    # bracketed: the secant in log-log, inside [0.001, 0.004] by the margin
    nxt = lt.next_lambda(_tries((0.001, 1.5, 30), (0.004, 0.5, 27)), miss, True)
    x0, x1 = math.log(0.001), math.log(0.004)
    secant = x0 + (x1 - x0) * math.log(1.5) / (math.log(1.5) - math.log(0.5))
    assert math.log(nxt) == pytest.approx(secant)
    nxt = lt.next_lambda(_tries((0.001, 1.01, 30), (0.004, 0.2, 27)), miss, True)
    assert math.log(nxt) == pytest.approx(x0 + lt.BRACKET_MARGIN * (x1 - x0))
    # an inverted bracket (noise): its log-midpoint
    nxt = lt.next_lambda(_tries((0.004, 1.2, 30), (0.001, 0.9, 27)), miss, True)
    assert nxt == pytest.approx(0.002)
    # one side only: the table's slope from one try, never more than MAX_LOG_STEP
    nxt = lt.next_lambda(_tries((0.002, 1.1, 30)), miss, True)
    assert math.log(nxt / 0.002) == pytest.approx(-math.log(1.1) / lt.table_slope(True))
    nxt = lt.next_lambda(_tries((0.002, 100.0, 30)), miss, True)
    assert math.log(nxt / 0.002) == pytest.approx(lt.MAX_LOG_STEP)
    # two tries on one side: their own slope
    nxt = lt.next_lambda(_tries((0.001, 2.0, 30), (0.002, 1.5, 29)), miss, True)
    slope = math.log(1.5 / 2.0) / math.log(2)
    assert math.log(nxt / 0.002) == pytest.approx(-math.log(1.5) / slope)


def test_warm_schedule_is_a_shorter_fine_tune_and_needs_one_start():
    fast = SCHEDULES["fast"]
    warm = lt.warm_schedule(fast)
    assert warm.starts == 1 and warm.iterations < (fast.iterations + fast.start_iterations) / 2
    assert warm.noise_iterations == round(lt.WARM_NOISE_SHARE * fast.noise_iterations)
    assert warm.lr_at(0)[0] == pytest.approx(fast.lr * lt.WARM_LR_FACTOR)
    assert warm.lr_at(warm.iterations - 1) == pytest.approx(fast.lr_at(fast.iterations - 1))  # the same rounding
    image = astronaut(16, 24)
    rep = LatentGrid.preset("mac500", 16, 24, 3)
    model, _ = fit_latent(rep.build, image_to_values(image), 0.01, SCHEDULES["test"], progress=False)
    with pytest.raises(InrError, match="one start"):
        fit_latent(rep.build, image_to_values(image), 0.01, fast, progress=False, initial_state=model.state_dict())
    # a fine-tune from a fitted state starts there: its first rounded loss is near the fit's own
    state = {k: v.clone() for k, v in model.state_dict().items()}
    one_step = lt.LatentSchedule("one", iterations=1, noise_fraction=0.0, lr=1e-9)
    tuned, _ = fit_latent(rep.build, image_to_values(image), 0.01, one_step, progress=False, initial_state=state)
    for key, value in state.items():
        torch.testing.assert_close(tuned.state_dict()[key], value, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------
# The search on real files


def test_search_lands_within_tolerance_and_the_file_decodes_to_what_it_reports(searched):
    image, data, info, chosen = searched
    assert chosen["within_tolerance"] and chosen["target"] == "bpp" and chosen["target_bpp"] == REACHABLE_BPP
    assert abs(chosen["bpp"] / REACHABLE_BPP - 1) <= lt.TARGET_TOLERANCE
    assert 1 <= chosen["tries"] <= lt.MAX_TRIES and chosen["warm_tries"] == 0  # fits from scratch by default
    assert chosen["bpp"] == info["bpp"] == 8 * len(data) / (HEIGHT * WIDTH)
    assert chosen["psnr"] == info["psnr"] == pytest.approx(psnr_of(data, image), abs=1e-9)
    assert chosen["rate_lambda"] == info["rate_lambda"]
    assert (chosen["rate_lambda"], chosen["bpp"]) in [(t[0], t[1]) for t in chosen["per_try"]]


def test_an_unreachable_target_returns_the_closest_file_and_says_so():
    image = astronaut()
    rep = LatentGrid.preset("mac500", HEIGHT, WIDTH, 3)
    data, info, chosen = lt.encode_latent_to_target(image, rep, SCHEDULES["test"], target_bpp=0.01, progress=False)
    # the table sends 0.01 bpp beyond the largest lambda, and no larger one is tried
    assert not chosen["within_tolerance"] and chosen["rate_lambda"] == lt.LAMBDA_RANGE[1] and chosen["tries"] == 1
    assert chosen["bpp"] == 8 * len(data) / (HEIGHT * WIDTH) > 0.01 * (1 + lt.TARGET_TOLERANCE)
    assert "NOT within 3% of the target" in lt.describe_choice(chosen)
    _, _, chosen = lt.encode_latent_to_target(image, rep, SCHEDULES["test"], target_psnr=80.0, progress=False)
    assert not chosen["within_tolerance"] and chosen["psnr"] < 80 and chosen["rate_lambda"] == lt.LAMBDA_RANGE[0]
    assert "NO try reached 80 dB" in lt.describe_choice(chosen)
    with pytest.raises(InrError, match="one of --target_bpp and --target_psnr"):
        lt.encode_latent_to_target(image, rep, SCHEDULES["test"], target_bpp=1.0, target_psnr=30.0)
    with pytest.raises(InrError, match="must be > 0"):
        lt.encode_latent_to_target(image, rep, SCHEDULES["test"], target_bpp=-1.0)


# ------------------------------------------------------------------------------------------------
# encode.py


def test_encode_tool_with_a_target_writes_the_searched_file_and_prints_the_choice(searched, tmp_path, capsys):
    from PIL import Image

    from inrcompress.tools.encode import main

    image, data, _, chosen = searched
    source, target = tmp_path / "in.png", tmp_path / "out.inr"
    Image.fromarray(image).save(source)
    common = [str(source), str(target), "--representation", "latent", "--latent_schedule", "test",
              "--latent_preset", "mac500"]
    assert main([*common, "--target_bpp", str(REACHABLE_BPP)]) == 0
    out = capsys.readouterr().out
    assert target.read_bytes() == data  # the tool's search is the function's, seed for seed
    assert f"--target_bpp {REACHABLE_BPP:g}: chose rate_lambda {chosen['rate_lambda']:.4g}" in out
    assert f"{len(data)} bytes, {chosen['bpp']:.4f} bpp" in out and "NOT within" not in out
    for extra, message in ((["--target_bpp", "1", "--rate_lambda", "0.002"], "chooses --rate_lambda itself"),
                           (["--target_psnr", "30", "--rate_lambda", "0.002"], "chooses --rate_lambda itself"),
                           (["--target_bpp", "1", "--target_psnr", "30"], "give one of")):
        assert main([*common, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err
