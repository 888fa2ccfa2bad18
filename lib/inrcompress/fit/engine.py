"""The fitting bookkeeping, once, for N signals fitted side by side (N = 1 for one signal).

How a step computes losses and gradients and updates the parameters is a plug-in (`FitStep`,
fit/steps.py: autograd over row chunks for one signal, explicit backprop for N same-size images,
MAML's outer step). Everything else is here and is kept per signal:

- linear learning-rate warm-up over the first cfg.warmup steps;
- ReduceLROnPlateau (factor 0.5, cfg.patience, 1e-4 rel), stepped every step on the signal's total
  loss after the warm-up -- or, with a `monitor` (MAML's validation), on the monitored value every
  `monitor_every` steps;
- the best state: the parameters that produced the lowest loss (one step per epoch: the parameters
  before that step's update; several steps: those at the end of the best epoch; with a monitor:
  those at the lowest monitored value); restored at the end;
- early stop when the best epoch is more than cfg.early_stop_epochs old;
- a non-finite loss stops that signal, restores its best state and marks it diverged;
- every cfg.epochs_til_ckpt epochs a snapshot and a resume point per signal (RunFiles), written
  atomically; an interrupted fit resumes from them to the same result. One resume format
  (RESUME_FORMAT) for every step: a point written one by one resumes in a batched group of the same
  epoch and the reverse. Resume points of inrcompress <= b577759 (model_current_.pth of train.fit,
  model_current_batched.pth of batched.fit_many) resume as well;
- TensorBoard scalars (data term, each parameter term, total), progress bar with PSNR.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch
from torch import nn

from inrcompress.config import TrainConfig, atomic_write_bytes, atomic_write_text
from inrcompress.errors import InrError
from inrcompress.evaluate.metrics import psnr_from_mse
from inrcompress.fit.losses import FitLoss

CHECKPOINT_DIR = "checkpoints"
RESUME_FILE = "model_current_.pth"
FINAL_FILE = "model_final.pth"
BEST_FILE = "model_best_.pth"
RESUME_FORMAT = "inrcompress-fit/2"
# Resume points of inrcompress <= b577759: one by one (train.fit, named as RESUME_FILE today, told
# apart by its content) and batched (batched.fit_many).
OLD_BATCHED_RESUME_FILE = "model_current_batched.pth"
OLD_SINGLE_KEYS = {"model", "optimizer", "scheduler", "state"}  # and "scaler"
# Fitted values are in [-1, 1], a range twice as wide as [0, 1]: an MSE of values times this is the
# MSE on the [0, 1] scale that evaluate.metrics.psnr_from_mse takes.
UNIT_MSE_PER_VALUES_MSE = 0.25


@dataclass
class FitResult:
    """What happened during a fit. losses: total loss per epoch (data + parameter terms)."""

    best_loss: float
    best_epoch: int
    epochs_run: int
    diverged: bool = False
    stopped_early: bool = False
    resumed_from: int | None = None
    losses: list[float] = field(default_factory=list)


def torch_save_atomic(obj, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location="cpu"):
    return torch.load(path, map_location=map_location, weights_only=False)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class PlateauSchedule:
    """The paper's schedule for one signal: halve the learning rate after `patience` steps without a
    1e-4 relative gain. torch's ReduceLROnPlateau, driven through a one-parameter stand-in optimizer,
    so that every signal of a batch has its own and the numbers are torch's own."""

    def __init__(self, lr: float, patience: int):
        self.optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=0.5, patience=patience, threshold=1e-4, threshold_mode="rel",
            cooldown=0, min_lr=0, eps=1e-8)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.param_groups[0]["lr"] = value

    def step(self, loss: float) -> None:
        self.scheduler.step(loss)

    def state_dict(self) -> dict:
        return {"lr": self.lr, "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.lr = state["lr"]
        self.scheduler.load_state_dict(state["scheduler"])


@dataclass
class StepValues:
    """What one step measured, one entry per signal: total loss (N,), the data term (N,), each
    parameter term (N,), and further scalars to log (python floats)."""

    total: torch.Tensor
    data: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    scalars: dict[str, list[float]] = field(default_factory=dict)


class FitStep(Protocol):
    """How N signals are stepped. compute() leaves the gradients ready for update()."""

    n_signals: int
    steps_per_epoch: int
    parameter_names: list[str]
    loss: FitLoss

    def compute(self, epoch: int, index: int) -> StepValues: ...

    def update(self, lrs: list[float], active: list[bool]) -> None: ...

    def parameters_of(self, n: int) -> dict[str, torch.Tensor]:
        """Detached copies of signal n's parameters (or the whole state a best snapshot keeps)."""

    def load_parameters(self, n: int, params: dict[str, torch.Tensor]) -> None: ...

    def optimizer_state_of(self, n: int) -> dict: ...

    def load_optimizer_state(self, n: int, state: dict) -> None: ...

    def model_of(self, n: int) -> nn.Module:
        """Signal n's module holding its current parameters (for summaries and snapshots)."""


class RunFiles:
    """Where one signal's fit writes: <run_dir>/checkpoints/ (snapshots, resume point, final files)
    and <run_dir>/summaries/ (TensorBoard). `extra` is the caller's state saved with the resume point."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = self.run_dir / CHECKPOINT_DIR
        self.summaries_dir = self.run_dir / "summaries"
        self.resume_path = self.checkpoint_dir / RESUME_FILE
        self.extra: dict = {}

    def old_resume_paths(self) -> list[Path]:
        return [self.checkpoint_dir / OLD_BATCHED_RESUME_FILE]

    def write_snapshot(self, epoch: int, model: nn.Module, values: StepValues | None) -> None:
        torch_save_atomic(model.state_dict(), self.checkpoint_dir / f"model_epoch_{epoch:04d}.pth")

    def finish(self, model: nn.Module, record: SignalRecord) -> None:
        """model_best_.pth, the loss history, then model_final.pth (the "finished" marker, written
        last); the resume points are removed."""
        state = model.state_dict()
        torch_save_atomic(state, self.checkpoint_dir / BEST_FILE)
        atomic_write_text(self.checkpoint_dir / "train_losses_final.txt",
                          "\n".join(f"{v:.10e}" for v in record.losses) + "\n")
        torch_save_atomic(state, self.checkpoint_dir / FINAL_FILE)
        for path in [self.resume_path, *self.old_resume_paths()]:
            path.unlink(missing_ok=True)


@dataclass
class SignalRecord:
    """The bookkeeping of one signal, as saved in its resume point."""

    best_loss: float = math.inf
    best_epoch: int = -1
    losses: list[float] = field(default_factory=list)
    done: bool = False
    diverged: bool = False
    stopped_early: bool = False
    monitored_at: int | None = None

    def state_dict(self) -> dict:
        return dict(self.__dict__)


def read_resume_point(files: RunFiles, parameter_names: list[str], map_location="cpu") -> dict | None:
    """The resume point of a run (RESUME_FORMAT), converting one of inrcompress <= b577759; None if
    there is none. A file of another format is a one-line InrError saying how to restart."""
    if files.resume_path.is_file():
        saved = load_checkpoint(files.resume_path, map_location=map_location)
        if isinstance(saved, dict) and saved.get("format") == RESUME_FORMAT:
            return saved
        if isinstance(saved, dict) and OLD_SINGLE_KEYS <= set(saved):
            return _from_old_single(saved, parameter_names)
        raise InrError(f"{files.resume_path} is not a resume point of this version ({RESUME_FORMAT}): "
                       "delete it to start over")
    for old_batched in files.old_resume_paths():
        if old_batched.is_file():
            return _from_old_batched(load_checkpoint(old_batched, map_location=map_location), parameter_names)
    return None


def resume_epoch(run_dir: Path) -> int:
    """The epoch a run resumes at (0 without a resume point), for grouping images fitted together."""
    files = RunFiles(run_dir)
    for path in (files.resume_path, *files.old_resume_paths()):
        if path.is_file():
            saved = load_checkpoint(path)
            return int(saved["epoch"] if "epoch" in saved else saved["state"]["epoch"])
    return 0


def _from_old_single(saved: dict, names: list[str]) -> dict:
    """model_current_.pth of train.fit <= b577759 -> RESUME_FORMAT."""
    try:
        state = saved["state"]
        adam = saved["optimizer"]["state"]
        record = SignalRecord(best_loss=float(state["best_loss"]), best_epoch=int(state["best_epoch"]),
                              losses=[float(v) for v in state["losses"]])
        return {"format": RESUME_FORMAT, "epoch": int(state["epoch"]), "step": int(state["step"]),
                "record": record.state_dict(),
                "schedule": {"lr": saved["optimizer"]["param_groups"][0]["lr"], "scheduler": saved["scheduler"]},
                "parameters": {k: saved["model"][k] for k in names},
                "best": {k: state["best_state"][k] for k in names},
                "optimizer": {"step": int(state["step"]) if adam else 0,
                              "exp_avg": {k: adam[i]["exp_avg"] for i, k in enumerate(names) if i in adam},
                              "exp_avg_sq": {k: adam[i]["exp_avg_sq"] for i, k in enumerate(names) if i in adam},
                              "scaler": saved.get("scaler")},
                "extra": {}}
    except (KeyError, TypeError, IndexError) as e:
        raise InrError(f"an old resume point (model_current_.pth) is incomplete ({e}): delete it to restart the "
                       "fit") from None


def _from_old_batched(saved: dict, names: list[str]) -> dict:
    """model_current_batched.pth of batched.fit_many <= b577759 -> RESUME_FORMAT."""
    try:
        s = saved["state"]
        record = SignalRecord(best_loss=float(s["best_loss"]), best_epoch=int(s["best_epoch"]),
                              losses=[float(v) for v in s["losses"]], done=bool(s["done"]),
                              diverged=bool(s["diverged"]), stopped_early=bool(s["stopped_early"]))
        epoch = int(saved["epoch"])
        by_name = lambda key: dict(zip(names, saved[key], strict=True))  # noqa: E731
        return {"format": RESUME_FORMAT, "epoch": epoch, "step": epoch, "record": record.state_dict(),
                "schedule": saved["schedule"], "parameters": by_name("params"), "best": by_name("best"),
                "optimizer": {"step": epoch, "exp_avg": by_name("exp_avg"), "exp_avg_sq": by_name("exp_avg_sq")},
                "extra": {}}
    except (KeyError, TypeError, ValueError) as e:
        raise InrError(f"an old resume point (model_current_batched.pth) is incomplete ({e}): delete it to restart "
                       "the fit") from None


@dataclass
class Monitor:
    """A value measured every `every` steps (and at the end) that drives the schedule and the best
    state instead of the training loss (MAML's validation). measure(steps done) -> (value, scalars
    to log)."""

    measure: Callable[[int], tuple[float, dict[str, float]]]
    every: int


def run_fit(step: FitStep, cfg: TrainConfig, files: list[RunFiles | None], *,
            names: list[str] | None = None,
            on_summary: list[Callable | None] | None = None,
            progress_desc: str | None = None,
            progress_unit: str = "epoch",
            step_hook: Callable[[int], None] | None = None,
            show_progress: bool = True,
            monitor: Monitor | None = None,
            lr_scalar: str | None = None) -> list[FitResult]:
    """Fit step.n_signals signals for cfg.epochs epochs (see the module docstring); files[n]: where
    signal n writes (None: nothing written or resumed). names[n] labels warnings. on_summary[n](writer,
    step, model) is called every cfg.steps_til_summary steps. step_hook(step) runs after every step
    (tests interrupt a fit with it). lr_scalar: also log each step's learning rate under this name.
    On return every signal's module holds its best state."""
    n_signals = step.n_signals
    names = names or [f"signal {n}" for n in range(n_signals)]
    if monitor is not None and n_signals != 1:
        raise ValueError("a monitored fit has one signal")
    records = [SignalRecord() for _ in range(n_signals)]
    schedules = [PlateauSchedule(cfg.lr, cfg.patience) for _ in range(n_signals)]
    best = [step.parameters_of(n) for n in range(n_signals)]
    epoch = global_step = 0
    resumed_from = None
    saved = [read_resume_point(f, step.parameter_names) if f is not None else None for f in files]
    if any(s is not None for s in saved):
        points = {(s["epoch"], s["step"]) for s in saved if s is not None}
        if None in saved or len(points) != 1:
            raise InrError("signals fitted together resume only when every one saved the same epoch: fit them "
                           "one by one, or delete their checkpoints/ folders to restart them")
        epoch, global_step = points.pop()
        resumed_from = epoch
        print(f"{progress_desc or ', '.join(names)}: resuming at {progress_unit} {epoch} of {cfg.epochs} "
              f"(step {global_step}) from the saved resume point", flush=True)
        for n, s in enumerate(saved):
            step.load_parameters(n, s["parameters"])
            step.load_optimizer_state(n, s["optimizer"])
            schedules[n].load_state_dict(s["schedule"])
            records[n] = SignalRecord(**s["record"])
            best[n] = s["best"]
            files[n].extra.update(s.get("extra", {}))

    def save_resume_point(n: int) -> None:
        torch_save_atomic({"format": RESUME_FORMAT, "epoch": epoch, "step": global_step,
                           "record": records[n].state_dict(), "schedule": schedules[n].state_dict(),
                           "parameters": step.parameters_of(n), "best": best[n],
                           "optimizer": step.optimizer_state_of(n), "extra": files[n].extra},
                          files[n].resume_path)

    def run_monitor() -> None:
        value, scalars = monitor.measure(epoch)
        record = records[0]
        record.monitored_at = epoch
        schedules[0].step(value)
        if value < record.best_loss:
            record.best_loss, record.best_epoch = value, epoch
            best[0] = step.parameters_of(0)
        for key, v in scalars.items():
            log(0, key, v, epoch)

    writers = [None] * n_signals
    for n, f in enumerate(files):
        if f is not None:
            from torch.utils.tensorboard import SummaryWriter
            writers[n] = SummaryWriter(str(f.summaries_dir), purge_step=global_step or None)

    def log(n: int, key: str, value: float, at: int) -> None:
        if writers[n] is not None:
            writers[n].add_scalar(key, value, at)

    progress = None
    if show_progress:
        from tqdm.auto import tqdm
        progress = tqdm(total=cfg.epochs, initial=epoch, desc=progress_desc, unit=progress_unit,
                        dynamic_ncols=True, leave=False, mininterval=0.5)

    values = None
    try:
        while epoch < cfg.epochs and not all(r.done for r in records):
            if monitor is not None and epoch % monitor.every == 0 and records[0].monitored_at != epoch:
                run_monitor()
            epoch_losses = [0.0] * n_signals
            active_in_epoch = [not r.done for r in records]
            for index in range(step.steps_per_epoch):
                if all(r.done for r in records):
                    break
                global_step += 1
                warming = bool(cfg.warmup) and global_step <= cfg.warmup
                if warming:
                    for s in schedules:
                        s.lr = global_step * cfg.lr / cfg.warmup
                values = step.compute(epoch, index)
                totals = values.total.tolist()  # one transfer for every per-signal number of this step
                data_values = values.data.tolist()
                term_values = {k: v.tolist() for k, v in values.terms.items()}
                active = []
                for n, value in enumerate(totals):
                    record = records[n]
                    if record.done:
                        active.append(False)
                        continue
                    if not math.isfinite(value):
                        record.done = record.diverged = True
                        warnings.warn(f"{names[n]}: non-finite loss at step {global_step}: restored its best state "
                                      f"(epoch {record.best_epoch}) and stopped it")
                        active.append(False)
                        continue
                    active.append(True)
                    if monitor is None and step.steps_per_epoch == 1 and value < record.best_loss:
                        best[n] = step.parameters_of(n)  # the loss belongs to the parameters before the update
                step.update([schedules[n].lr if active[n] else 0.0 for n in range(n_signals)], active)
                for n, value in enumerate(totals):
                    if not active[n]:
                        continue
                    if monitor is None and not warming:
                        schedules[n].step(value)
                    epoch_losses[n] += value
                    log(n, step.loss.data_name, data_values[n], global_step)
                    for key, v in term_values.items():
                        log(n, key, v[n], global_step)
                    log(n, "total_train_loss", value, global_step)
                    for key, v in values.scalars.items():
                        log(n, key, v[n], global_step)
                    if lr_scalar is not None:
                        log(n, lr_scalar, schedules[n].lr, global_step)
                if on_summary is not None and global_step % cfg.steps_til_summary == 0:
                    for n in range(n_signals):
                        if writers[n] is not None and active[n] and on_summary[n] is not None:
                            on_summary[n](writers[n], global_step, step.model_of(n))
                if progress is not None and (global_step % 25 == 0 or global_step == 1):
                    live = [n for n in range(n_signals) if active[n]] or [0]
                    mean_data = sum(data_values[n] for n in live) / len(live)
                    postfix = {"loss": f"{sum(totals[n] for n in live) / len(live):.3g}",
                               "psnr": f"{psnr_from_mse(mean_data * UNIT_MSE_PER_VALUES_MSE):.2f}", "lr": f"{schedules[live[0]].lr:.2g}"}
                    if n_signals > 1:
                        postfix["signals"] = n_signals
                    progress.set_postfix(postfix, refresh=False)
                if step_hook is not None:
                    step_hook(global_step)
            for n, record in enumerate(records):
                if not active_in_epoch[n] or record.diverged:
                    continue
                record.losses.append(epoch_losses[n])
                if monitor is None and epoch_losses[n] < record.best_loss:
                    record.best_loss, record.best_epoch = epoch_losses[n], epoch
                    if step.steps_per_epoch > 1:  # the loss spans the epoch: keep its final parameters
                        best[n] = step.parameters_of(n)
                if not record.done and epoch - record.best_epoch > cfg.early_stop_epochs:
                    record.done = record.stopped_early = True
            epoch += 1
            if progress is not None:
                progress.update(1)
            if epoch % cfg.epochs_til_ckpt == 0 and epoch < cfg.epochs:
                for n, f in enumerate(files):
                    if f is not None:
                        if active_in_epoch[n]:
                            f.write_snapshot(epoch, step.model_of(n), values)
                        save_resume_point(n)
        if monitor is not None and not records[0].diverged and records[0].monitored_at != epoch:
            run_monitor()
    finally:
        if progress is not None:
            progress.close()
        for w in writers:
            if w is not None:
                w.close()

    results = []
    for n, record in enumerate(records):
        step.load_parameters(n, best[n])
        model = step.model_of(n)
        if files[n] is not None:
            files[n].finish(model, record)
        results.append(FitResult(best_loss=float(record.best_loss), best_epoch=int(record.best_epoch),
                                 epochs_run=len(record.losses), diverged=record.diverged,
                                 stopped_early=record.stopped_early, resumed_from=resumed_from,
                                 losses=list(record.losses)))
    return results
