"""A latent-grid file of a target size or quality: encode.py --representation latent --target_bpp B
(a file within TARGET_TOLERANCE of B bits per pixel, bpp = 8 x file bytes / pixels) or
--target_psnr P (the smallest file found whose decoded PSNR reaches P dB).

The rate is set by the fit's rate_lambda, and every try is a fit (fit/latent.py) followed by the
step search, coding and decoding of the file (experiments/latent_codec.py), so the search is over
lambda in log space with few tries (MAX_TRIES):

- the first lambda from RATE_TABLE (measured means on Kodak at 1/4), interpolated in log-log;
- then, while the target is on one side of every try, a secant step from the two tries nearest
  it (log bpp, or PSNR, against log lambda; the table's slope while there is one try), at most
  MAX_LOG_STEP in log lambda;
- once tries lie on both sides, a secant between the nearest try on each side, kept inside that
  bracket (BRACKET_MARGIN from its ends), a bisection where noise made the bracket inverted.

Every try is a fit from scratch by default; the tries after the first fit only the random start
the first kept (fit/latent.one_start: the same trajectory, without the other starts' steps). With
every start tried each time, which start wins changed with lambda, and the rate with it: kodim23
at 1/4 (mac500, fast) lambda 0.00336 -> 0.647 bpp (start 0 kept), 0.00348 -> 0.489 bpp (start 1);
start 0 alone at 0.00348: 0.641 bpp, and 0.0027 / 0.00314 / 0.00336 -> 0.731 / 0.680 / 0.648 bpp,
monotone. warm_start=True starts every try after the first from
the fitted float state of the try nearest it in log lambda and runs warm_schedule(schedule):
WARM_NOISE_SHARE of the noise phase at WARM_LR_FACTOR of the learning rate, then the whole
rounding phase at its usual rate (600 steps for `fast` against 1800). It is not the default
because, measured on kodim23 at 1/4 (mac500, fast, --target_bpp 0.6, one thread, load 2-5): the
warm tries cost 23-25 s against 27-60 s, but the rate hardly follows lambda (lambda 0.004 ->
0.0078 -> 0.014 gave 0.679 -> 0.636 -> 0.659 bpp), the search ended 6.0 % off after 5 tries, and
its file was 0.94 dB worse than a fit from scratch of about that size (0.636 bpp 28.89 dB against
0.647 bpp 29.84 dB); at the schedule's full learning rate (WARM_LR_FACTOR 1, half the noise phase)
the rate jumped instead (0.004: 1.185 bpp from a 0.729 bpp state). From scratch the search ended
7.9 % off after 6 tries (251 s): the fits' bpp is not monotone in lambda there (0.0034 -> 0.647,
0.00348 -> 0.489, 0.00339 -> 0.659 bpp). A target the search does not reach in MAX_TRIES is not
refused: the closest file is returned and `chosen` says within_tolerance False.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from inrcompress.codec.representations.latent import LatentGrid
from inrcompress.errors import InrError
from inrcompress.experiments.image_codec import TARGET_TOLERANCE  # the one --target_bpp tolerance, SIREN's too
from inrcompress.experiments.latent_codec import code_fitted_latent
from inrcompress.fit.latent import LatentSchedule, fit_latent, one_start
from inrcompress.signals.image import image_to_values

# rate_lambda -> (bpp of the file, decoded PSNR in dB): the means over kodim01, kodim04 and kodim23
# at 1/4 size, preset mac500, schedule fast with soft rounding (benchmarks/RESULTS.md, "the
# latent-grid codec", session 6: rd_latent.py --factor 4 --preset mac500 --schedule fast). bpp falls
# about as lambda^-0.4, flatter at the low end where the decoder's parameters weigh (about 0.1 bpp).
RATE_TABLE = {0.0005: (1.005, 34.35), 0.001: (0.755, 32.76), 0.002: (0.555, 31.07), 0.004: (0.432, 29.63)}

PSNR_TOLERANCE_DB = 0.15   # a --target_psnr search stops at a file reaching P by at most this (about 3 % in size)
MAX_TRIES = 6              # fits (each followed by coding and decoding) per search
MAX_LOG_STEP = math.log(8.0)  # the largest move of log(lambda) from the nearest try while extrapolating
BRACKET_MARGIN = 0.1       # a bracketed step stays this fraction of the bracket away from its ends
LAMBDA_RANGE = (1e-6, 1.0)  # beyond these a latent grid codes nearly everything or nothing
SAME_LAMBDA = 1e-3         # relative: a next lambda this close to a tried one would teach nothing new
WARM_NOISE_SHARE = 0.25    # of the schedule's noise phase, rerun from a previous try's state
WARM_LR_FACTOR = 0.25      # that phase's learning rates relative to the schedule's


def warm_schedule(schedule: LatentSchedule) -> LatentSchedule:
    """The fine-tune of a try that starts from a previous try's fitted state: WARM_NOISE_SHARE of
    the noise phase at WARM_LR_FACTOR of its learning rates (the state is already near a minimum
    of a nearby lambda; the full rates would scatter it), then the whole rounding phase at the
    schedule's rounding rate; one start (there is nothing random to choose among)."""
    noise = max(1, round(WARM_NOISE_SHARE * schedule.noise_iterations)) if schedule.noise_iterations else 0
    rounding = schedule.iterations - schedule.noise_iterations
    iterations = noise + rounding
    return LatentSchedule(f"{schedule.name}-warm", iterations=iterations, lr=schedule.lr * WARM_LR_FACTOR,
                          latent_lr_factor=schedule.latent_lr_factor, final_lr_factor=schedule.final_lr_factor,
                          noise_fraction=noise / iterations,
                          round_lr_factor=schedule.round_lr_factor / WARM_LR_FACTOR, starts=1,
                          eval_every=schedule.eval_every)


def lambda_from_table(target_bpp: float | None = None, target_psnr: float | None = None) -> float:
    """The first lambda for a target: RATE_TABLE interpolated linearly in (log lambda, log bpp) or
    (log lambda, PSNR), extrapolated beyond it with its end segments' slopes; in LAMBDA_RANGE."""
    lambdas = sorted(RATE_TABLE)
    log_lambdas = [math.log(x) for x in lambdas]
    if target_bpp is not None:
        levels, goal = [math.log(RATE_TABLE[x][0]) for x in lambdas], math.log(target_bpp)
    else:
        levels, goal = [RATE_TABLE[x][1] for x in lambdas], target_psnr
    # levels fall as lambda grows: the segment holding the goal, or the end one nearest it
    segment = next((k for k in range(len(lambdas) - 1) if levels[k + 1] <= goal), len(lambdas) - 2)
    x0, x1, y0, y1 = log_lambdas[segment], log_lambdas[segment + 1], levels[segment], levels[segment + 1]
    log_lambda = x0 + (goal - y0) * (x1 - x0) / (y1 - y0)
    return float(np.clip(math.exp(log_lambda), *LAMBDA_RANGE))


def table_slope(sized: bool) -> float:
    """d(log bpp)/d(log lambda) (sized) or d(PSNR dB)/d(log lambda) across RATE_TABLE's ends."""
    low, high = min(RATE_TABLE), max(RATE_TABLE)
    if sized:
        rise = math.log(RATE_TABLE[high][0] / RATE_TABLE[low][0])
    else:
        rise = RATE_TABLE[high][1] - RATE_TABLE[low][1]
    return rise / math.log(high / low)


@dataclass
class LatentTry:
    """One try of the search: its lambda, file, measurements and the fitted float state (before the
    parameters' quantization) that later tries start from."""

    rate_lambda: float
    data: bytes
    info: dict
    state: dict[str, torch.Tensor]
    warm: bool

    @property
    def bpp(self) -> float:
        return self.info["bpp"]

    @property
    def psnr(self) -> float:
        return self.info["psnr"]


def fit_and_code(image: np.ndarray, representation: LatentGrid, rate_lambda: float, schedule: LatentSchedule, *,
                 initial_state: dict[str, torch.Tensor] | None = None, seed: int = 0, progress: bool = True,
                 desc: str | None = None, device: torch.device | str = "cpu") -> LatentTry:
    """One try: compress_image_latent's fit, step search, coding and decoding (the same info keys),
    from initial_state when given (then `schedule` should be warm_schedule's), keeping the fitted
    float state. device: where the fit runs (the coding is on the CPU)."""
    started = time.perf_counter()
    target = image_to_values(image)
    model, fitted = fit_latent(representation.build, target.to(device), rate_lambda, schedule, seed=seed,
                               progress=progress, desc=desc, initial_state=initial_state)
    model = model.cpu()
    # code_fitted_latent quantizes the module's parameters in place: keep the float state first
    state = {name: value.detach().clone() for name, value in model.state_dict().items()}
    data, info = code_fitted_latent(image, target, model, fitted, rate_lambda, started)
    return LatentTry(rate_lambda, data, info, state, initial_state is not None)


def next_lambda(tries: list[LatentTry], miss, sized: bool) -> float:
    """The next lambda to try (see the module docstring). miss(try): > 0 where lambda must grow
    (the file too large, or its PSNR above the aim), < 0 where it must shrink."""
    log_lambda = lambda t: math.log(t.rate_lambda)  # noqa: E731
    above = [t for t in tries if miss(t) > 0]
    below = [t for t in tries if miss(t) < 0]
    if above and below:
        low = min(above, key=miss)  # the nearest on each side
        high = max(below, key=miss)
        x_low, x_high = log_lambda(low), log_lambda(high)
        if x_low >= x_high:  # noise inverted the bracket: no slope to trust
            x = 0.5 * (x_low + x_high)
        else:
            x = x_low + (x_high - x_low) * miss(low) / (miss(low) - miss(high))
            margin = BRACKET_MARGIN * (x_high - x_low)
            x = min(max(x, x_low + margin), x_high - margin)
    else:
        nearest = sorted(tries, key=lambda t: abs(miss(t)))
        slope = table_slope(sized)
        if len(nearest) >= 2 and log_lambda(nearest[0]) != log_lambda(nearest[1]):
            measured = (miss(nearest[0]) - miss(nearest[1])) / (log_lambda(nearest[0]) - log_lambda(nearest[1]))
            if measured < 0:  # a slope of the wrong sign is noise, not the curve
                slope = measured
        # from the outermost try on the side the target is not: a step from an inner one could land
        # on a lambda already tried when noise makes the curve non-monotone
        outermost = max(tries, key=log_lambda) if above else min(tries, key=log_lambda)
        step = -miss(outermost) / slope
        x = log_lambda(outermost) + min(max(step, -MAX_LOG_STEP), MAX_LOG_STEP)
    return float(np.clip(math.exp(x), *LAMBDA_RANGE))


def check_target(target_bpp: float | None, target_psnr: float | None) -> None:
    if (target_bpp is None) == (target_psnr is None):
        raise InrError("give one of --target_bpp and --target_psnr")
    if target_bpp is not None and not (math.isfinite(target_bpp) and target_bpp > 0):
        raise InrError(f"--target_bpp must be > 0, got {target_bpp}")
    if target_psnr is not None and not (math.isfinite(target_psnr) and target_psnr > 0):
        raise InrError(f"--target_psnr must be > 0 dB, got {target_psnr}")


def encode_latent_to_target(image: np.ndarray, representation: LatentGrid, schedule: LatentSchedule, *,
                            target_bpp: float | None = None, target_psnr: float | None = None, seed: int = 0,
                            progress: bool = True, desc: str | None = None,
                            warm_start: bool = False, device: torch.device | str = "cpu") -> tuple[bytes, dict, dict]:
    """Fit and code uint8 `image` (H, W, C) to one target: target_bpp (bits per pixel of the file)
    or target_psnr (dB, decoded). warm_start=True starts every try after the first from the
    nearest try's fitted state with warm_schedule (cheaper, but it landed worse and coded worse
    files: the module docstring); by default every try is a fit from scratch with `schedule`.
    Returns the chosen file, its info (compress_image_latent's keys; encode_seconds is the whole
    search's) and what was chosen: rate_lambda, tries, warm_tries, bpp, psnr, target ("bpp" or
    "psnr"), target_bpp or target_psnr, within_tolerance (bpp: within TARGET_TOLERANCE; psnr: the
    file reaches the target), and per_try: (lambda, bpp, psnr, seconds, warm-started) of every try
    in order."""
    check_target(target_bpp, target_psnr)
    sized = target_bpp is not None
    if sized:
        miss = lambda t: math.log(t.bpp / target_bpp)  # noqa: E731
        done = lambda t: abs(t.bpp / target_bpp - 1) <= TARGET_TOLERANCE  # noqa: E731
    else:
        # aim inside the accepted band [P, P + PSNR_TOLERANCE_DB], not at its edge
        miss = lambda t: t.psnr - (target_psnr + 0.5 * PSNR_TOLERANCE_DB)  # noqa: E731
        done = lambda t: 0 <= t.psnr - target_psnr <= PSNR_TOLERANCE_DB  # noqa: E731
    started = time.perf_counter()
    tries: list[LatentTry] = []
    rate_lambda = lambda_from_table(target_bpp, target_psnr)
    fine_tune = warm_schedule(schedule)
    while True:
        label = f"{desc or 'image'} lambda {rate_lambda:.4g}"
        if tries and warm_start:
            start_from = min(tries, key=lambda t: abs(math.log(t.rate_lambda / rate_lambda)))
            attempt = fit_and_code(image, representation, rate_lambda, fine_tune, initial_state=start_from.state,
                                   seed=seed, progress=progress, desc=label, device=device)
        elif tries:
            # the first try's kept random start, alone: which start wins can change with lambda,
            # and with it the rate by up to a third (see the module docstring)
            fixed, fixed_seed = one_start(schedule, seed, tries[0].info["fit_start"])
            attempt = fit_and_code(image, representation, rate_lambda, fixed, seed=fixed_seed, progress=progress,
                                   desc=label, device=device)
        else:
            attempt = fit_and_code(image, representation, rate_lambda, schedule, seed=seed, progress=progress,
                                   desc=label, device=device)
        tries.append(attempt)
        if done(attempt) or len(tries) >= MAX_TRIES:
            break
        rate_lambda = next_lambda(tries, miss, sized)
        if any(abs(rate_lambda / t.rate_lambda - 1) < SAME_LAMBDA for t in tries):
            break  # at LAMBDA_RANGE's end, or the bracket closed: another try would repeat one
    if sized:
        chosen = min(tries, key=lambda t: abs(t.bpp / target_bpp - 1))
        within = abs(chosen.bpp / target_bpp - 1) <= TARGET_TOLERANCE
    else:
        reaching = [t for t in tries if t.psnr >= target_psnr]
        chosen = min(reaching, key=lambda t: len(t.data)) if reaching else max(tries, key=lambda t: t.psnr)
        within = bool(reaching)
    record = {"rate_lambda": chosen.rate_lambda, "tries": len(tries), "warm_tries": sum(t.warm for t in tries),
              "bpp": chosen.bpp, "psnr": chosen.psnr, "target": "bpp" if sized else "psnr",
              "within_tolerance": within,
              "per_try": [(t.rate_lambda, t.bpp, t.psnr, t.info["encode_seconds"], t.warm) for t in tries]}
    record.update({"target_bpp": target_bpp} if sized else {"target_psnr": target_psnr})
    info = {**chosen.info, "encode_seconds": time.perf_counter() - started,
            "final_try_seconds": chosen.info["encode_seconds"]}
    return chosen.data, info, record


def describe_choice(chosen: dict) -> str:
    """One line for encode.py: what the search chose, and whether it met the target."""
    aim = f"--target_bpp {chosen['target_bpp']:g}" if chosen["target"] == "bpp" else \
        f"--target_psnr {chosen['target_psnr']:g}"
    line = (f"{aim}: chose rate_lambda {chosen['rate_lambda']:.4g} ({chosen['tries']} tries, "
            f"{chosen['warm_tries']} warm-started): {chosen['bpp']:.4f} bpp, PSNR {chosen['psnr']:.2f} dB")
    if chosen["within_tolerance"]:
        return line
    if chosen["target"] == "bpp":
        return (f"{line}; NOT within {TARGET_TOLERANCE:.0%} of the target "
                f"({chosen['bpp'] / chosen['target_bpp'] - 1:+.1%}): the closest of the tries")
    return f"{line}; NO try reached {chosen['target_psnr']:g} dB: the highest PSNR of the tries"
