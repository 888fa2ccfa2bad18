"""Fitting a latent-grid representation (codec/representations/latent.py) to one image on
distortion + lambda x rate, with a named schedule.

    loss = MSE on the [0, 1] scale + rate_lambda x (bits of the latents under the ARM) / pixels

Schedule (LatentSchedule, by name in SCHEDULES; the name and its values go to the experiment's
FLAGS.yml): Adam over the networks (synthesis, ARM) at `lr` and over the latents at
lr x latent_lr_factor. The first noise_fraction of the iterations feed the latents through a
differentiable proxy of rounding (the rate term's and the synthesis's input alike; ROUNDING_PROXIES,
by the schedule's `proxy`), both learning rates decaying on a cosine to final_lr_factor of their
start:

    "softround" (C3, Kim et al. 2023):  soft_round(soft_round(y, T) + n, T),  n ~ N(0, sigma^2),
                T and sigma going linearly from temperature_start / noise_std_start to their ends;
    "uniform":  y + u,  u ~ U[-1/2, 1/2)  (COOL-CHIC 1's; the schedules used it until 2026-12-02).

Measured on kodim23 and kodim01 at 1/4, lambda 0.002, the fast schedule (2026-12-02, RESULTS.md):
soft rounding codes the same PSNR (+-0.15 dB) in 16-24 % fewer bits than uniform noise. Then
straight-through rounding (forward: the rounded, clamped latents the file codes; gradient: the
identity) at the constant lr x round_lr_factor for everything (at the noise phase's rates the
rounded loss drifts up again; measured on kodim23 at 1/4: true loss 1.53e-3 at the end with
2e-4 against a rise from 1.57e-3 to 1.74e-3 with the cosine's rates). With starts > 1, that many random initialisations run start_iterations of the noise
phase and the best (lowest loss) is continued. From the rounding phase on, the true loss (rounded
latents) is measured every eval_every iterations and at the end, and the lowest one's parameters
are kept.

The module is any latent model (the protocol LatentModel; codec/representations/latent_module.py
is the one there is): fit never imports codec, the caller builds the modules.

Why not fit/engine.run_fit: the engine's schedule is the paper's ReduceLROnPlateau with warm-up and
its best state is the lowest training loss of any step; here the learning rate follows a fixed
cosine, and the loss changes meaning between the noise and the rounding phases (a noisy loss is
not the coded one), so the best state must come from the rounding phase alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from inrcompress.errors import InrError
from inrcompress.evaluate.metrics import psnr_from_mse
from inrcompress.fit.engine import UNIT_MSE_PER_VALUES_MSE, load_checkpoint, torch_save_atomic

RESUME_FORMAT = "inrcompress-latent-fit/1"


def soft_round(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """Agustsson & Theis's soft rounding: floor(x) + 1/2 + tanh(d / T) / (2 tanh(1 / (2 T))) with
    d = x - floor(x) - 1/2. Continuous and increasing, equal to x at half-integers; round(x) as
    T -> 0, x as T grows (T >= 1 is close to it)."""
    floor = torch.floor(x)
    return floor + 0.5 + 0.5 * torch.tanh((x - floor - 0.5) / temperature) / math.tanh(0.5 / temperature)


def uniform_noise_proxy(latent: torch.Tensor, schedule: LatentSchedule, progress: float,
                        generator: torch.Generator) -> torch.Tensor:
    return latent + torch.rand(latent.shape, generator=generator, device=latent.device) - 0.5


def soft_round_proxy(latent: torch.Tensor, schedule: LatentSchedule, progress: float,
                     generator: torch.Generator) -> torch.Tensor:
    temperature = schedule.temperature_start + (schedule.temperature_end - schedule.temperature_start) * progress
    std = schedule.noise_std_start + (schedule.noise_std_end - schedule.noise_std_start) * progress
    noise = torch.randn(latent.shape, generator=generator, device=latent.device) * std
    return soft_round(soft_round(latent, temperature) + noise, temperature)


# The noise phase's stand-ins for rounding, by LatentSchedule.proxy: (latent, schedule, progress of
# the noise phase in 0..1, generator) -> what the synthesis and the rate term see.
ROUNDING_PROXIES: dict[str, Callable[[torch.Tensor, LatentSchedule, float, torch.Generator], torch.Tensor]] = {
    "softround": soft_round_proxy,
    "uniform": uniform_noise_proxy,
}


@dataclass(frozen=True)
class LatentSchedule:
    """iterations: Adam steps in all; lr: the networks' peak learning rate, latent_lr_factor: the
    latents' relative to it; final_lr_factor: the cosine's end (relative); noise_fraction: share of
    the iterations with noisy latents (0..1); round_lr_factor: the rounding phase's learning rate
    relative to lr; starts / start_iterations:
    random initialisations tried and the noise-phase steps each gets; eval_every: steps between
    measurements of the true (rounded) loss; proxy: the noise phase's rounding proxy
    (ROUNDING_PROXIES); temperature_*, noise_std_*: soft rounding's temperature and its noise's
    standard deviation (latent units) at the start and the end of the noise phase, linear between."""

    name: str
    iterations: int
    lr: float = 0.02
    latent_lr_factor: float = 10.0
    final_lr_factor: float = 0.05
    noise_fraction: float = 0.8
    round_lr_factor: float = 0.005
    starts: int = 1
    start_iterations: int = 0
    eval_every: int = 50
    proxy: str = "softround"
    temperature_start: float = 0.3
    temperature_end: float = 0.1
    noise_std_start: float = 0.25
    noise_std_end: float = 0.1

    def __post_init__(self):
        if self.iterations < 1 or not 0 <= self.noise_fraction <= 1 or self.starts < 1 or self.eval_every < 1:
            raise InrError(f"invalid latent schedule {self}")
        if self.proxy not in ROUNDING_PROXIES:
            raise InrError(f"unknown rounding proxy {self.proxy!r}; known: {', '.join(ROUNDING_PROXIES)}")
        if not (self.temperature_start > 0 and self.temperature_end > 0 and self.noise_std_start >= 0
                and self.noise_std_end >= 0):
            raise InrError(f"soft rounding needs temperatures > 0 and noise deviations >= 0: {self}")
        if self.starts > 1 and not 0 < self.start_iterations <= self.noise_iterations:
            raise InrError("start_iterations must be in 1..the noise phase when several starts are tried")

    @property
    def noise_iterations(self) -> int:
        return int(round(self.noise_fraction * self.iterations))

    def noise_progress(self, step: int) -> float:
        """0 at the first step of the noise phase .. 1 at its last."""
        return min(step / max(self.noise_iterations - 1, 1), 1.0)

    def lr_at(self, step: int) -> tuple[float, float]:
        """(networks' learning rate, latents' learning rate) at a step."""
        if step >= self.noise_iterations:
            return (self.lr * self.round_lr_factor,) * 2
        progress = self.noise_progress(step)
        factor = self.final_lr_factor + (1 - self.final_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr * factor, self.lr * factor * self.latent_lr_factor

    def flags(self) -> dict:
        return {f"latent_schedule_{k}": v for k, v in asdict(self).items()}


SCHEDULES: dict[str, LatentSchedule] = {s.name: s for s in (
    LatentSchedule("test", iterations=60, noise_fraction=0.5, eval_every=10),
    LatentSchedule("fast", iterations=1500, noise_fraction=0.9, starts=2, start_iterations=150),
    LatentSchedule("standard", iterations=4000, noise_fraction=0.9, starts=3, start_iterations=300),
    LatentSchedule("long", iterations=20000, lr=0.01, noise_fraction=0.9, starts=3, start_iterations=1000,
                   eval_every=200),
)}


def start_seed(seed: int, start: int) -> int:
    """The seed of random start `start` (0, 1, ...) of a fit at `seed`."""
    return seed + 1000 * start


def one_start(schedule: LatentSchedule, seed: int, start: int) -> tuple[LatentSchedule, int]:
    """(schedule, seed) of a fit with one start that follows the trajectory of random start `start`
    of a fit with `schedule` at `seed` (the same steps when that start is the one continued)."""
    return replace(schedule, starts=1, start_iterations=0), start_seed(seed, start)


def schedule_by_name(name: str) -> LatentSchedule:
    if name not in SCHEDULES:
        raise InrError(f"unknown latent schedule {name!r}; known: {', '.join(SCHEDULES)}")
    return SCHEDULES[name]


class LatentModel(Protocol):
    """What the fit needs of a latent model (an nn.Module): its latent grids (parameters), the
    signal values (pixels, channels) in [-1, 1] for given latents, the total bits of given latents
    under its probability model, and its straight-through rounding of the latents."""

    latents: Sequence[nn.Parameter]

    def values(self, latents: Sequence[torch.Tensor]) -> torch.Tensor: ...

    def latent_bits(self, latents: Sequence[torch.Tensor]) -> torch.Tensor: ...

    def rounded_latents(self) -> list[torch.Tensor]: ...




@dataclass
class LatentFitResult:
    loss: float          # the kept state's loss (rounded latents)
    psnr: float          # its PSNR (float synthesis, rounded latents), dB
    latent_bpp: float    # its latents' rate under the float ARM, bits per pixel
    iterations: int
    start: int           # which random start was continued


class _Fit:
    def __init__(self, model: LatentModel, target: torch.Tensor, rate_lambda: float, seed: int):
        self.model = model
        self.target = target
        self.rate_lambda = rate_lambda
        self.pixels = target.shape[0]
        latents = {id(p) for p in model.latents}
        self.optimizer = torch.optim.Adam([{"params": [p for p in model.parameters() if id(p) not in latents]},
                                           {"params": list(model.latents)}])
        self.generator = torch.Generator(device=target.device).manual_seed(seed)

    def loss(self, latents) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mse = torch.mean((self.model.values(latents) - self.target) ** 2) * UNIT_MSE_PER_VALUES_MSE
        bpp = self.model.latent_bits(latents) / self.pixels
        return mse + self.rate_lambda * bpp, mse, bpp

    def step(self, schedule: LatentSchedule, step: int) -> tuple[float, float, float]:
        for group, lr in zip(self.optimizer.param_groups, schedule.lr_at(step)):
            group["lr"] = lr
        if step < schedule.noise_iterations:
            proxy, progress = ROUNDING_PROXIES[schedule.proxy], schedule.noise_progress(step)
            latents = [proxy(g, schedule, progress, self.generator) for g in self.model.latents]
        else:
            latents = self.model.rounded_latents()
        total, mse, bpp = self.loss(latents)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return float(total.detach()), float(mse.detach()), float(bpp.detach())

    @torch.no_grad()
    def true_loss(self) -> tuple[float, float, float]:
        total, mse, bpp = self.loss(self.model.rounded_latents())
        return float(total), float(mse), float(bpp)


def fit_latent(build: Callable[[], LatentModel], target: torch.Tensor, rate_lambda: float,
               schedule: LatentSchedule, *, seed: int = 0, progress: bool = True, desc: str | None = None,
               writer=None, resume_path: Path | None = None, resume_every: int = 100,
               step_hook: Callable[[int], None] | None = None,
               initial_state: dict[str, torch.Tensor] | None = None) -> tuple[LatentModel, LatentFitResult]:
    """Fit a module made by build() (one per random start, after torch.manual_seed) to target values
    (H*W, channels) in [-1, 1] (signals.image.image_to_values) and return it in its kept state (see
    the module docstring). writer: a TensorBoard SummaryWriter or None. resume_path: after the
    random starts, every resume_every steps the whole state (module, Adam, noise generator, kept
    best) is written there atomically, and a fit finding one resumes from it to the same result as
    an uninterrupted fit; it is removed at the end. step_hook(step) runs after every step (tests
    interrupt a fit with it). initial_state: a state_dict of a module build() makes (e.g. another
    fit's, at another lambda): the fit continues from it instead of a random initialisation, so the
    schedule must have one start, and there is no resume point (one would not say which state it
    started from)."""
    if not (math.isfinite(rate_lambda) and rate_lambda >= 0):
        raise InrError(f"rate_lambda must be finite and >= 0, got {rate_lambda}")
    if initial_state is not None and (schedule.starts > 1 or resume_path is not None):
        raise InrError("a latent fit from an initial state takes a schedule of one start and no resume_path")
    device = target.device
    identity = {"schedule": asdict(schedule), "rate_lambda": float(rate_lambda), "seed": int(seed)}
    saved = None
    if resume_path is not None and Path(resume_path).is_file():
        saved = load_checkpoint(Path(resume_path))
        if not isinstance(saved, dict) or saved.get("format") != RESUME_FORMAT or saved.get("identity") != identity:
            raise InrError(f"{resume_path} is the resume point of another latent fit (schedule, lambda or seed "
                           "differ): delete it to start over")

    def start(k: int) -> _Fit:
        torch.manual_seed(start_seed(seed, k))
        return _Fit(build().to(device), target, rate_lambda, start_seed(seed, k))

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=schedule.iterations + (schedule.starts - 1) * schedule.start_iterations, desc=desc,
                   unit="step", dynamic_ncols=True, leave=False, mininterval=0.5)

    def advance(fit: _Fit, step: int, phase_noise: bool, values: tuple[float, float, float]) -> None:
        if writer is not None:
            writer.add_scalar("total_train_loss", values[0], step)
            writer.add_scalar("data_loss", values[1], step)
            writer.add_scalar("latent_bpp", values[2], step)
        if bar is not None:
            bar.update(1)
            if step % 25 == 0:
                bar.set_postfix({"loss": f"{values[0]:.4g}", "psnr": f"{psnr_from_mse(values[1]):.2f}",
                                 "bpp": f"{values[2]:.3f}", "phase": "noise" if phase_noise else "round"},
                                refresh=False)

    try:
        chosen, fit, step = 0, None, 0
        best = (math.inf, None, (math.inf, math.inf, math.inf))
        if saved is not None:
            chosen, step, best = saved["chosen"], saved["step"], saved["best"]
            fit = start(chosen)
            fit.model.load_state_dict(saved["model"])
            fit.optimizer.load_state_dict(saved["optimizer"])
            fit.generator.set_state(saved["generator"])
            if bar is not None:
                bar.update(step + (schedule.starts - 1) * schedule.start_iterations)
        elif schedule.starts > 1:
            candidates = []
            for k in range(schedule.starts):
                trial = start(k)
                for step in range(schedule.start_iterations):
                    advance(trial, step, True, trial.step(schedule, step))
                candidates.append((trial.true_loss()[0], k, trial))
            _, chosen, fit = min(candidates, key=lambda c: c[0])
            step = schedule.start_iterations
        else:
            fit = start(0)
            if initial_state is not None:
                fit.model.load_state_dict(initial_state)
        for step in range(step, schedule.iterations):
            noise = step < schedule.noise_iterations
            advance(fit, step, noise, fit.step(schedule, step))
            if not noise and ((step + 1) % schedule.eval_every == 0 or step == schedule.iterations - 1):
                measured = fit.true_loss()
                if not math.isfinite(measured[0]):
                    raise InrError(f"the latent fit diverged at step {step} (loss {measured[0]})")
                if measured[0] < best[0]:
                    best = (measured[0], {k: v.detach().clone() for k, v in fit.model.state_dict().items()}, measured)
            if resume_path is not None and (step + 1) % resume_every == 0 and step + 1 < schedule.iterations:
                torch_save_atomic({"format": RESUME_FORMAT, "identity": identity, "chosen": chosen, "step": step + 1,
                                   "model": fit.model.state_dict(), "optimizer": fit.optimizer.state_dict(),
                                   "generator": fit.generator.get_state(), "best": best}, Path(resume_path))
            if step_hook is not None:
                step_hook(step)
        if best[1] is None:  # no rounding phase: keep the end state
            best = (*fit.true_loss()[:1], None, fit.true_loss())
        else:
            fit.model.load_state_dict(best[1])
    finally:
        if bar is not None:
            bar.close()
    if resume_path is not None:
        Path(resume_path).unlink(missing_ok=True)
    loss, _, (_, mse, bpp) = best
    return fit.model, LatentFitResult(loss=loss, psnr=psnr_from_mse(mse), latent_bpp=bpp,
                                      iterations=schedule.iterations, start=chosen)
