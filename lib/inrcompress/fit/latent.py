"""Fitting a latent-grid representation (codec/representations/latent.py) to one image, or to
several images of one size at once, on distortion + lambda x rate, with a named schedule.

    loss = MSE on the [0, 1] scale + rate_lambda x (bits of the latents under the ARM) / pixels

Schedule (LatentSchedule, by name in SCHEDULES; the name and its values go to the experiment's
FLAGS.yml): Adam over the networks (synthesis, ARM) at `lr` and over the latents at
lr x latent_lr_factor. The first noise_fraction of the iterations feed the latents through a
differentiable proxy of rounding (the rate term's and the synthesis's input alike; ROUNDING_PROXIES,
by the schedule's `proxy`), both learning rates decaying on a cosine to final_lr_factor of their
start:

    "softround" (C3, Kim et al. 2023):  soft_round(soft_round(y, T) + n, T),  n ~ N(0, sigma^2),
                T and sigma going linearly from temperature_start / noise_std_start to their ends;
    "uniform":  y + u,  u ~ U[-1/2, 1/2)  (Balle et al.'s additive noise, as in COOL-CHIC 1; every
                schedule used it until 2026-12-02).

Measured on kodim23 and kodim01 at 1/4, lambda 0.002, the fast schedule (2026-12-02, RESULTS.md):
soft rounding codes the same PSNR (+-0.15 dB) in 16-24 % fewer bits than uniform noise. Then
straight-through rounding (forward: the rounded, clamped latents the file codes; gradient: the
identity) at the constant lr x round_lr_factor for everything (at the noise phase's rates the
rounded loss drifts up again; measured on kodim23 at 1/4: true loss 1.53e-3 at the end with
2e-4 against a rise from 1.57e-3 to 1.74e-3 with the cosine's rates). With starts > 1, that many
random initialisations run start_iterations of the noise phase and the best (lowest loss) is
continued. From the rounding phase on, the true loss (rounded latents) is measured every
eval_every iterations and at the end, and the lowest one's parameters are kept.

The module is any latent model (the protocol LatentModel; codec/representations/latent_module.py
is the one there is): fit never imports codec, the caller builds the modules.

One implementation fits one image or many (fit_latents; fit_latent is its one-member case): the
members' parameters are stacked and evaluated by torch.func.vmap of one functional call (one
member skips vmap, which costs a step on the CPU); each member keeps its own seed, target,
lambda, random starts, kept state and resume point, so a member's result equals its fit alone
up to float rounding. On a CPU the batch is no faster than one by one (benchmarks/
latent_fit_speed.py: the steps are compute-bound there); it is meant for GPUs, where one small
image leaves the device idle.

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

RESUME_FORMAT = "inrcompress-latent-fit/2"


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
    under its probability model, and its straight-through rounding of given latents (elementwise,
    so it takes latents with a leading batch dimension too)."""

    latents: Sequence[nn.Parameter]

    def values(self, latents: Sequence[torch.Tensor]) -> torch.Tensor: ...

    def latent_bits(self, latents: Sequence[torch.Tensor]) -> torch.Tensor: ...

    def rounded(self, latents: Sequence[torch.Tensor]) -> list[torch.Tensor]: ...


@dataclass
class LatentFitResult:
    loss: float          # the kept state's loss (rounded latents)
    psnr: float          # its PSNR (float synthesis, rounded latents), dB
    latent_bpp: float    # its latents' rate under the float ARM, bits per pixel
    iterations: int
    start: int           # which random start was continued


class _Objective(nn.Module):
    """forward(latents) = (values, latent bits) of the wrapped model, so that torch.func can
    evaluate it with any member's parameters."""

    def __init__(self, model: LatentModel):
        super().__init__()
        self.model = model

    def forward(self, latents):
        return self.model.values(latents), self.model.latent_bits(latents)


class _Members:
    """Several fits of one architecture run as one batched computation: member b's parameters and
    buffers are row b of stacked tensors, evaluated by torch.func.vmap over a functional call of
    one template module, with one Adam over the stacked tensors (Adam is elementwise, so each
    member's update is the one its own Adam would make), one noise generator per member and its
    own target and lambda."""

    def __init__(self, models: Sequence[LatentModel], targets: torch.Tensor, rate_lambdas: Sequence[float],
                 seeds: Sequence[int]):
        template = models[0]
        self.objective = _Objective(template)
        names = {id(p): name for name, p in template.named_parameters()}
        self.latent_names = [names[id(p)] for p in template.latents]
        self.network_names = [name for name, _ in template.named_parameters() if name not in self.latent_names]
        self.buffer_names = [name for name, _ in template.named_buffers()]
        self.template = template
        self.params = {name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]).requires_grad_()
                       for name in self.network_names + self.latent_names}
        self.buffers = {name: torch.stack([dict(m.named_buffers())[name] for m in models])
                        for name in self.buffer_names}
        self.optimizer = torch.optim.Adam([{"params": [self.params[n] for n in self.network_names]},
                                           {"params": [self.params[n] for n in self.latent_names]}])
        self.targets = targets
        self.rate_lambdas = torch.tensor(list(rate_lambdas), dtype=targets.dtype, device=targets.device)
        self.pixels = targets.shape[1]
        self.generators = [torch.Generator(device=targets.device).manual_seed(s) for s in seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def latents(self) -> list[torch.Tensor]:
        return [self.params[name] for name in self.latent_names]

    def loss(self, latents: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total, MSE on the [0, 1] scale, latent bpp), each (members,)."""
        def member(params, buffers, latents):
            state = {f"model.{k}": v for k, v in {**params, **buffers}.items()}
            return torch.func.functional_call(self.objective, state, (latents,))

        networks = {name: self.params[name] for name in self.network_names}
        if len(self) == 1:  # vmap costs a fit of one image 10-30 % a step on a CPU
            values, bits = member({k: v[0] for k, v in networks.items()}, {k: v[0] for k, v in self.buffers.items()},
                                  [g[0] for g in latents])
            values, bits = values[None], bits[None]
        else:
            values, bits = torch.func.vmap(member)(networks, self.buffers, latents)
        mse = torch.mean((values - self.targets) ** 2, dim=(1, 2)) * UNIT_MSE_PER_VALUES_MSE
        bpp = bits / self.pixels
        return mse + self.rate_lambdas * bpp, mse, bpp

    def step(self, schedule: LatentSchedule, step: int) -> torch.Tensor:
        """One Adam step of every member; (members, 3): total, MSE, bpp before it."""
        for group, lr in zip(self.optimizer.param_groups, schedule.lr_at(step)):
            group["lr"] = lr
        if step < schedule.noise_iterations:
            proxy, progress = ROUNDING_PROXIES[schedule.proxy], schedule.noise_progress(step)
            latents = [torch.stack([proxy(grid[b], schedule, progress, generator)
                                    for b, generator in enumerate(self.generators)]) for grid in self.latents()]
        else:
            latents = self.template.rounded(self.latents())
        total, mse, bpp = self.loss(latents)
        self.optimizer.zero_grad(set_to_none=True)
        total.sum().backward()  # each member's loss depends on its own rows only
        self.optimizer.step()
        return torch.stack([total, mse, bpp], dim=1).detach()

    @torch.no_grad()
    def true_loss(self) -> torch.Tensor:
        """(members, 3): total, MSE, bpp with the rounded latents."""
        total, mse, bpp = self.loss(self.template.rounded(self.latents()))
        return torch.stack([total, mse, bpp], dim=1)

    def model_state(self, b: int) -> dict[str, torch.Tensor]:
        """Member b's parameters and buffers, as its module's state_dict."""
        return {name: tensor[b].detach().clone() for name, tensor in {**self.params, **self.buffers}.items()}

    def member_state(self, b: int) -> dict:
        """Everything member b's fit continues from (module, Adam moments, noise generator)."""
        leaves = self.network_names + self.latent_names
        optimizer = self.optimizer.state_dict()["state"]
        adam = {leaves[i]: {key: (v[b].clone() if v.dim() and v.shape == self.params[leaves[i]].shape else v.clone())
                            for key, v in entry.items()} for i, entry in optimizer.items()}
        return {"model": self.model_state(b), "adam": adam, "generator": self.generators[b].get_state()}

    @torch.no_grad()
    def load_members(self, states: Sequence[dict]) -> None:
        """Member b continues from states[b] (member_state's, of this or another batch)."""
        for name, tensor in {**self.params, **self.buffers}.items():
            tensor.copy_(torch.stack([state["model"][name] for state in states]))
        for generator, state in zip(self.generators, states):
            generator.set_state(state["generator"])
        if not states[0]["adam"]:
            return
        leaves = self.network_names + self.latent_names
        saved = self.optimizer.state_dict()
        saved["state"] = {}
        for i, name in enumerate(leaves):
            rows = [state["adam"][name] for state in states]
            saved["state"][i] = {key: (torch.stack([r[key] for r in rows]) if value.dim() else value)
                                 for key, value in rows[0].items()}
        self.optimizer.load_state_dict(saved)


def resume_step(path: Path) -> int | None:
    """The step a fit's resume point at `path` continues from; None when there is none (or it is
    not a resume point of this version: the fit then says so)."""
    if not Path(path).is_file():
        return None
    point = load_checkpoint(Path(path))
    return point.get("step") if isinstance(point, dict) and point.get("format") == RESUME_FORMAT else None


def _identity(schedule: LatentSchedule, rate_lambda: float, seed: int) -> dict:
    return {"schedule": asdict(schedule), "rate_lambda": float(rate_lambda), "seed": int(seed)}


def fit_latents(build: Callable[[], LatentModel], targets: Sequence[torch.Tensor], rate_lambdas: Sequence[float],
                schedule: LatentSchedule, *, seeds: Sequence[int] | None = None, progress: bool = True,
                desc: str | None = None, writers: Sequence | None = None,
                resume_paths: Sequence[Path | None] | None = None, resume_every: int = 100,
                step_hook: Callable[[int], None] | None = None,
                initial_states: Sequence[dict[str, torch.Tensor]] | None = None
                ) -> list[tuple[LatentModel, LatentFitResult]]:
    """Fit one module made by build() per target as one batched computation (_Members): member b
    fits targets[b] (H*W, channels, values in [-1, 1], signals.image.image_to_values; every target
    of one shape, on one device) at rate_lambdas[b] from seed seeds[b] (default 0, 1, ...), and each
    gets what fit_latent gives one image: its own random starts (the best of each member's starts
    is continued), its own kept state, resume point (resume_paths[b], the one format of fit_latent:
    a batch resumes from points written one by one and the reverse; the members must be at the same
    step, or all fresh), TensorBoard writer (writers[b]) and initial state (initial_states[b]).
    Per member the result equals fit_latent's up to float rounding (vmap evaluates in other
    orders). Returns (module in its kept state, result) per member."""
    count = len(targets)
    seeds = list(range(count)) if seeds is None else list(seeds)
    writers = list(writers) if writers is not None else [None] * count
    resume_paths = ([Path(p) if p is not None else None for p in resume_paths] if resume_paths is not None
                    else [None] * count)
    if not count or not len(rate_lambdas) == len(seeds) == len(writers) == len(resume_paths) == count:
        raise InrError("a batched latent fit needs one rate_lambda, seed, writer and resume path per target")
    if len({tuple(t.shape) for t in targets}) != 1:
        raise InrError("the targets of a batched latent fit must have one shape")
    for rate_lambda in rate_lambdas:
        if not (math.isfinite(rate_lambda) and rate_lambda >= 0):
            raise InrError(f"rate_lambda must be finite and >= 0, got {rate_lambda}")
    if initial_states is not None and (schedule.starts > 1 or any(p is not None for p in resume_paths)):
        raise InrError("a latent fit from an initial state takes a schedule of one start and no resume_path")
    stacked = torch.stack(list(targets))
    device = stacked.device
    identities = [_identity(schedule, lam, seed) for lam, seed in zip(rate_lambdas, seeds)]
    saved = []
    for path, identity in zip(resume_paths, identities):
        point = None
        if path is not None and path.is_file():
            point = load_checkpoint(path)
            if not isinstance(point, dict) or point.get("format") != RESUME_FORMAT or point.get("identity") != identity:
                raise InrError(f"{path} is the resume point of another latent fit (schedule, lambda or seed "
                               "differ, or an older version's): delete it to start over")
        saved.append(point)
    if len({p["step"] if p is not None else None for p in saved}) > 1:
        raise InrError("the members of a batched latent fit must resume from one step (or all start afresh)")

    def start(k: int) -> _Members:
        models = []
        for seed in seeds:
            torch.manual_seed(start_seed(seed, k))
            models.append(build().to(device))
        return _Members(models, stacked, rate_lambdas, [start_seed(seed, k) for seed in seeds])

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=schedule.iterations + (schedule.starts - 1) * schedule.start_iterations, desc=desc,
                   unit="step", dynamic_ncols=True, leave=False, mininterval=0.5)

    def advance(step: int, phase_noise: bool, values: torch.Tensor) -> None:
        rows = values.tolist()
        for writer, (total, mse, bpp) in zip(writers, rows):
            if writer is not None:
                writer.add_scalar("total_train_loss", total, step)
                writer.add_scalar("data_loss", mse, step)
                writer.add_scalar("latent_bpp", bpp, step)
        if bar is not None:
            bar.update(1)
            if step % 25 == 0:
                total, mse, bpp = (sum(column) / len(rows) for column in zip(*rows))
                bar.set_postfix({"loss": f"{total:.4g}", "psnr": f"{psnr_from_mse(mse):.2f}", "bpp": f"{bpp:.3f}",
                                 "phase": "noise" if phase_noise else "round"}, refresh=False)

    inf = (math.inf, math.inf, math.inf)
    try:
        if saved[0] is not None:
            chosen = [p["chosen"] for p in saved]
            step = saved[0]["step"]
            best = [p["best"] for p in saved]
            fit = start(0)
            fit.load_members([p["member"] for p in saved])
            if bar is not None:
                bar.update(step + (schedule.starts - 1) * schedule.start_iterations)
        elif schedule.starts > 1:
            trials, losses = [], []
            for k in range(schedule.starts):
                trial = start(k)
                for step in range(schedule.start_iterations):
                    advance(step, True, trial.step(schedule, step))
                trials.append(trial)
                losses.append(trial.true_loss()[:, 0].tolist())
            chosen = [min(range(schedule.starts), key=lambda k: losses[k][b]) for b in range(count)]
            if len(set(chosen)) == 1:
                fit = trials[chosen[0]]
            else:
                fit = start(0)
                fit.load_members([trials[k].member_state(b) for b, k in enumerate(chosen)])
            step = schedule.start_iterations
            best = [(math.inf, None, inf)] * count
        else:
            chosen, step, best = [0] * count, 0, [(math.inf, None, inf)] * count
            fit = start(0)
            if initial_states is not None:
                with torch.no_grad():
                    for name, tensor in {**fit.params, **fit.buffers}.items():
                        tensor.copy_(torch.stack([state[name].to(device) for state in initial_states]))
        for step in range(step, schedule.iterations):
            noise = step < schedule.noise_iterations
            advance(step, noise, fit.step(schedule, step))
            if not noise and ((step + 1) % schedule.eval_every == 0 or step == schedule.iterations - 1):
                measured = fit.true_loss().tolist()
                for b, row in enumerate(measured):
                    if not math.isfinite(row[0]):
                        raise InrError(f"the latent fit diverged at step {step} (loss {row[0]}"
                                       + (f", member {b})" if count > 1 else ")"))
                    if row[0] < best[b][0]:
                        best[b] = (row[0], fit.model_state(b), tuple(row))
            if step + 1 < schedule.iterations and (step + 1) % resume_every == 0:
                for b, (path, identity) in enumerate(zip(resume_paths, identities)):
                    if path is not None:
                        torch_save_atomic({"format": RESUME_FORMAT, "identity": identity, "chosen": chosen[b],
                                           "step": step + 1, "member": fit.member_state(b), "best": best[b]}, path)
            if step_hook is not None:
                step_hook(step)
        end = fit.true_loss().tolist()
    finally:
        if bar is not None:
            bar.close()
    results = []
    for b in range(count):
        if best[b][1] is None:  # no rounding phase: keep the end state
            best[b] = (end[b][0], fit.model_state(b), tuple(end[b]))
        torch.manual_seed(start_seed(seeds[b], chosen[b]))
        model = build().to(device)
        model.load_state_dict(best[b][1])
        loss, _, (_, mse, bpp) = best[b]
        results.append((model, LatentFitResult(loss=loss, psnr=psnr_from_mse(mse), latent_bpp=bpp,
                                               iterations=schedule.iterations, start=chosen[b])))
        if resume_paths[b] is not None:
            resume_paths[b].unlink(missing_ok=True)
    return results


def fit_latent(build: Callable[[], LatentModel], target: torch.Tensor, rate_lambda: float,
               schedule: LatentSchedule, *, seed: int = 0, progress: bool = True, desc: str | None = None,
               writer=None, resume_path: Path | None = None, resume_every: int = 100,
               step_hook: Callable[[int], None] | None = None,
               initial_state: dict[str, torch.Tensor] | None = None) -> tuple[LatentModel, LatentFitResult]:
    """Fit a module made by build() (one per random start, after torch.manual_seed) to target values
    (H*W, channels) in [-1, 1] (signals.image.image_to_values) and return it in its kept state (see
    the module docstring): fit_latents with one member. writer: a TensorBoard SummaryWriter or
    None. resume_path: after the random starts, every resume_every steps the whole state (module,
    Adam, noise generator, kept best) is written there atomically, and a fit finding one resumes
    from it to the same result as an uninterrupted fit; it is removed at the end. step_hook(step)
    runs after every step (tests interrupt a fit with it). initial_state: a state_dict of a module
    build() makes (e.g. another fit's, at another lambda): the fit continues from it instead of a
    random initialisation, so the schedule must have one start, and there is no resume point (one
    would not say which state it started from)."""
    return fit_latents(build, [target], [rate_lambda], schedule, seeds=[seed], progress=progress, desc=desc,
                       writers=[writer], resume_paths=[resume_path], resume_every=resume_every, step_hook=step_hook,
                       initial_states=None if initial_state is None else [initial_state])[0]
