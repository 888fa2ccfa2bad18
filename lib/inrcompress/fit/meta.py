"""Meta-learned initializations: MAML with learned inner learning rates (spec section 5), on the
ordinary INR through torch.func.

Meta-training (trainMetaSiren.py) learns an initialization theta_0 of the INR and the inner-loop
learning rates such that a few plain SGD steps on one image's MSE fit that image well:

    theta_{j+1} = theta_j - lr(j, p) * grad_p MSE(f_{theta_j}(x), y)      j = 0 .. steps-1
    outer loss  = MSE(f_{theta_steps}(x), y)          (context = query = every pixel of the image)

lr_type (the init value of every learned rate is inner_lr):
    static                   one scalar buffer, not learned
    global                   one learned scalar
    per_step                 one learned scalar per inner step
    per_parameter            a learned tensor shaped like each parameter (Meta-SGD), shared by the steps
    per_parameter_per_step   a learned tensor shaped like each parameter for every step

Second-order meta-gradients during meta-training (the inner gradients are differentiated through);
first order at validation and when fitting (overfitMetaSiren.py). The outer optimizer is Adam at
outer_lr over theta_0 and the learned rates; ReduceLROnPlateau (factor 0.5, patience 10, threshold
1e-4 rel) follows the summed validation loss, measured every `val_every` (500) outer steps; the state
with the lowest validation loss is the result. With maml_early_stop = N > 0 (not the paper's: it ran
a fixed number of passes; 0, the default, is off) meta-training stops once the best validation is
more than N outer steps old, so a run given many passes ends where validation stops improving.

The outer loop is the fit engine's (fit/engine.py): MetaStep is its step, the validation its monitor
(schedule and best state follow it), MetaRunFiles its files; warm-up is off, early stop is maml_early_stop.

Implementation: a task (one image) is a pure function of (theta_0, rates, encoded grid, pixels) built
from torch.func.grad and nn.mlp_forward, so the inner loop never touches the module. Every image of a
meta-dataset has the same size, so the encoded grid is computed once for the whole run (model.encode
is constant) and shared, unbatched, by all images. A meta-batch runs as one torch.func.vmap'ed
computation or as a Python loop with one backward per image (`vectorize`); DEFAULT_VECTORIZE is the
faster of the two on a 2-core CPU (benchmarks/meta_rd.py --speed, numbers in benchmarks/RESULTS.md, section 6).

Data-parallel under torchrun (fit/distributed.py): every rank holds the whole meta-learner and
steps it alike; each takes its share of every meta-batch (images rank, rank + N, ... of it), and the
meta-gradients of the shares, each weighted by its share's size, are summed over the ranks
(all-reduce): the gradient of the mean outer loss over the whole meta-batch, as in one process. The
validation images are shared out the same way and their losses gathered. Rank 0 writes the files;
the other ranks resume from its resume point and write theirs into a scratch folder only.

Orientation: every image a meta-learned model sees is landscape (data.to_landscape), at meta-training
(DIV2K, CelebA, plain folders) and at fitting and quantization (overfitMetaSiren, quantize_and_test).

Files in <exp_root>/maml/<config.maml_init_name>/: FLAGS.yml; model_maml.pth (the INR state_dict =
theta_0, what quantize_and_test and decode --init use); maml_obj.pth (theta_0, the learned rates,
lr_type, steps, architecture); maml_result.json; summaries/ (TensorBoard); while training
maml_resume.pth (atomic, every steps_til_summary outer steps) and model_maml_step{N}.pth /
maml_obj_step{N}.pth snapshots.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import grad_and_value, vmap

from inrcompress.config import (ModelConfig, TrainConfig, maml_init_folder, model_config_from_flags, save_flags,
                                write_json)
from inrcompress.errors import InrError
from inrcompress.evaluate.metrics import psnr_from_mse
from inrcompress.fit import distributed
from inrcompress.fit.engine import (
    UNIT_MSE_PER_VALUES_MSE,
    Monitor,
    RunFiles,
    SignalRecord,
    StepValues,
    load_checkpoint,
    resolve_device,
    run_fit,
    torch_save_atomic,
)
from inrcompress.fit.losses import FitLoss
from inrcompress.fit.steps import adam_state_by_name, load_adam_state_by_name
from inrcompress.nn import INR, mlp_forward
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.meta_datasets import MetaImages, meta_datasets

MAML_INIT_FILE = "model_maml.pth"
MAML_OBJ_FILE = "maml_obj.pth"
MAML_RESULT_FILE = "maml_result.json"
RESUME_FILE = "maml_resume.pth"
MAML_FORMAT = "inrcompress-maml/1"
LR_TYPES = ("static", "global", "per_step", "per_parameter", "per_parameter_per_step")
# Measured on 2 shared CPU cores (benchmarks/meta_rd.py --speed, benchmarks/RESULTS.md section 6): the Python loop over
# the images of a meta-batch (one backward each) costs less than the vmap'ed batch, so it is the default;
# --maml_vmap selects vmap (untimed on GPUs here).
DEFAULT_VECTORIZE = False
# The outer schedule: ReduceLROnPlateau's patience, in validations.
OUTER_PATIENCE = 10


# ------------------------------------------------------------------------------------------------
# The functional inner loop

def layer_param_names(n_layers: int) -> list[str]:
    return [f"layers.{i}.{kind}" for i in range(n_layers) for kind in ("weight", "bias")]


def inner_loss(params: dict[str, torch.Tensor], features: torch.Tensor, target: torch.Tensor,
               activation: str) -> torch.Tensor:
    """MSE of the MLP with `params` (INR state-dict names) on encoded coordinates."""
    n = len(params) // 2
    weights = [params[f"layers.{i}.weight"] for i in range(n)]
    biases = [params[f"layers.{i}.bias"] for i in range(n)]
    return ((mlp_forward(features, weights, biases, activation) - target) ** 2).mean()


def adapt_params(params: dict[str, torch.Tensor], step_lrs: list[dict[str, torch.Tensor]], features: torch.Tensor,
                 target: torch.Tensor, activation: str, first_order: bool
                 ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """The inner loop: len(step_lrs) plain SGD steps on the MSE; returns the adapted parameters and
    the loss before each step. first_order: the inner gradients are constants for the outer gradient
    (their inputs are detached); otherwise they are differentiated through (second order)."""
    losses = []
    for lrs in step_lrs:
        inputs = {k: v.detach() for k, v in params.items()} if first_order else params
        grads, loss = grad_and_value(inner_loss)(inputs, features, target, activation)
        params = {k: params[k] - lrs[k] * grads[k] for k in params}
        losses.append(loss.detach())
    return params, losses


def task_loss(params: dict[str, torch.Tensor], step_lrs: list[dict[str, torch.Tensor]], features: torch.Tensor,
              target: torch.Tensor, activation: str, first_order: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One image: (outer loss after the inner steps, the inner losses before each step)."""
    adapted, losses = adapt_params(params, step_lrs, features, target, activation, first_order)
    return inner_loss(adapted, features, target, activation), torch.stack(losses)


# ------------------------------------------------------------------------------------------------
# The meta-learner

class MetaSGD(nn.Module):
    """An INR initialization (`self.model`, an ordinary INR whose parameters are theta_0) and the
    inner-loop learning rates of `lr_type`."""

    def __init__(self, model: INR, adaptation_steps: int, lr_type: str, inner_lr: float):
        super().__init__()
        if lr_type not in LR_TYPES:
            raise InrError(f"lr_type must be one of {LR_TYPES}, got {lr_type!r}")
        if int(adaptation_steps) < 1:
            raise InrError(f"maml_adaptation_steps must be >= 1, got {adaptation_steps}")
        self.model = model
        self.adaptation_steps = int(adaptation_steps)
        self.lr_type = lr_type
        self.inner_lr = float(inner_lr)
        self.names = layer_param_names(len(model.layers))
        shapes = dict(model.named_parameters())
        if [n for n, _ in model.named_parameters()] != self.names:
            raise InrError("the INR's parameters are not its layers' weights and biases")
        like = next(model.parameters())
        if lr_type == "static":
            self.register_buffer("lr", torch.tensor(self.inner_lr, dtype=like.dtype, device=like.device))
        elif lr_type == "global":
            self.lr = nn.Parameter(torch.tensor(self.inner_lr, dtype=like.dtype, device=like.device))
        elif lr_type == "per_step":
            self.lr = nn.Parameter(torch.full((self.adaptation_steps,), self.inner_lr, dtype=like.dtype,
                                              device=like.device))
        elif lr_type == "per_parameter":
            self.lrs = nn.ParameterList([nn.Parameter(torch.full_like(shapes[n], self.inner_lr).detach())
                                         for n in self.names])
        else:
            self.lrs = nn.ParameterList([
                nn.Parameter(torch.full((self.adaptation_steps, *shapes[n].shape), self.inner_lr, dtype=like.dtype,
                                        device=like.device)) for n in self.names])

    @property
    def activation(self) -> str:
        return self.model.cfg.activation

    def lr_parameters(self) -> list[nn.Parameter]:
        """The learned learning rates (empty for static)."""
        return [p for name, p in self.named_parameters() if not name.startswith("model.")]

    def step_lrs(self, detach: bool = False) -> list[dict[str, torch.Tensor]]:
        """The learning rate of every parameter at every inner step (scalars or parameter-shaped)."""
        out = []
        for j in range(self.adaptation_steps):
            if self.lr_type in ("static", "global"):
                lrs = {n: self.lr for n in self.names}
            elif self.lr_type == "per_step":
                lrs = {n: self.lr[j] for n in self.names}
            elif self.lr_type == "per_parameter":
                lrs = {n: self.lrs[i] for i, n in enumerate(self.names)}
            else:
                lrs = {n: self.lrs[i][j] for i, n in enumerate(self.names)}
            out.append({k: v.detach() for k, v in lrs.items()} if detach else lrs)
        return out

    def init_params(self, detach: bool = False) -> dict[str, torch.Tensor]:
        params = dict(self.model.named_parameters())
        return {k: v.detach() for k, v in params.items()} if detach else params

    def meta_losses(self, features: torch.Tensor, targets: torch.Tensor, *, first_order: bool = False,
                    vectorize: bool = DEFAULT_VECTORIZE) -> tuple[torch.Tensor, torch.Tensor]:
        """Outer losses (B,) and inner losses (B, steps) of a meta-batch; differentiable with respect to
        theta_0 and the rates. features: (P, D) encoded grid shared by the batch; targets (B, P, C)."""
        params, step_lrs = self.init_params(), self.step_lrs()
        if vectorize:
            run = vmap(task_loss, in_dims=(None, None, None, 0, None, None))
            return run(params, step_lrs, features, targets, self.activation, first_order)
        outs = [task_loss(params, step_lrs, features, t, self.activation, first_order) for t in targets]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])

    def meta_backward(self, features: torch.Tensor, targets: torch.Tensor, *, first_order: bool = False,
                      vectorize: bool = DEFAULT_VECTORIZE) -> tuple[torch.Tensor, torch.Tensor]:
        """Accumulate the gradient of the mean outer loss of the batch into .grad (the loop runs one
        backward per image, so it holds one image's graph at a time). Returns the detached losses."""
        if vectorize:
            outer, inner = self.meta_losses(features, targets, first_order=first_order, vectorize=True)
            outer.mean().backward()
            return outer.detach(), inner.detach()
        outers, inners = [], []
        for t in targets:
            outer, inner = task_loss(self.init_params(), self.step_lrs(), features, t, self.activation, first_order)
            (outer / targets.shape[0]).backward()
            outers.append(outer.detach())
            inners.append(inner.detach())
        return torch.stack(outers), torch.stack(inners)

    def evaluate(self, features: torch.Tensor, targets: torch.Tensor, batch_size: int,
                 vectorize: bool = DEFAULT_VECTORIZE) -> tuple[torch.Tensor, torch.Tensor]:
        """First-order adaptation without an outer graph: (outer losses (N,), inner losses (N, steps))."""
        params, step_lrs = self.init_params(detach=True), self.step_lrs(detach=True)
        outers, inners = [], []
        for s in range(0, targets.shape[0], batch_size):
            chunk = targets[s:s + batch_size]
            if vectorize:
                run = vmap(task_loss, in_dims=(None, None, None, 0, None, None))
                outer, inner = run(params, step_lrs, features, chunk, self.activation, True)
            else:
                res = [task_loss(params, step_lrs, features, t, self.activation, True) for t in chunk]
                outer, inner = torch.stack([r[0] for r in res]), torch.stack([r[1] for r in res])
            outers.append(outer.detach())
            inners.append(inner.detach())
        return torch.cat(outers), torch.cat(inners)

    def adapt(self, features: torch.Tensor, target: torch.Tensor) -> tuple[INR, list[float]]:
        """Run the inner steps with the learned rates (first order) on one image: a new INR holding the
        adapted parameters, and the loss before each step."""
        params, losses = adapt_params(self.init_params(detach=True), self.step_lrs(detach=True), features, target,
                                      self.activation, first_order=True)
        adapted = copy.deepcopy(self.model)
        with torch.no_grad():
            for name, p in adapted.named_parameters():
                p.copy_(params[name])
        return adapted, [float(v) for v in losses]

    # -- files

    def to_obj(self) -> dict:
        """What maml_obj.pth holds."""
        return {"format": MAML_FORMAT, "lr_type": self.lr_type, "adaptation_steps": self.adaptation_steps,
                "inner_lr": self.inner_lr, "model_config": dataclasses.asdict(self.model.cfg),
                "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}}

    @classmethod
    def from_obj(cls, obj: dict, source: str = "maml_obj") -> MetaSGD:
        if not isinstance(obj, dict) or obj.get("format") != MAML_FORMAT:
            raise InrError(f"{source} is not a maml_obj.pth of this package (format {MAML_FORMAT})")
        try:
            model = INR(ModelConfig(**obj["model_config"]))
            meta = cls(model, obj["adaptation_steps"], obj["lr_type"], obj["inner_lr"])
            meta.load_state_dict(obj["state_dict"], strict=True)
        except (KeyError, TypeError, RuntimeError) as e:
            raise InrError(f"{source} is inconsistent: {str(e).splitlines()[0]}") from None
        return meta

    def lr_summary(self) -> dict:
        """Mean, min and max of the learning rates (what TensorBoard and maml_result.json show)."""
        values = torch.cat([v.detach().reshape(-1) for v in (self.lrs if hasattr(self, "lrs") else [self.lr])])
        return {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}


def load_maml_obj(path: Path, device: torch.device | str = "cpu") -> MetaSGD:
    if not Path(path).is_file():
        raise InrError(f"missing {path}")
    try:
        obj = load_checkpoint(Path(path))
    except Exception as e:  # noqa: BLE001 - a damaged file of any kind is a user error here
        raise InrError(f"cannot read {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return MetaSGD.from_obj(obj, str(path)).to(device)


# ------------------------------------------------------------------------------------------------
# trainMetaSiren.py: the outer loop is the fit engine's (one "signal": the meta-learner; one engine
# epoch: one outer step), with the validation as its monitor

def is_trained(folder: Path) -> bool:
    return (folder / MAML_INIT_FILE).is_file() and (folder / MAML_OBJ_FILE).is_file()


class MetaStep:
    """The engine's step for meta-training: one second-order meta-batch, Adam over theta_0 and the
    learned rates. The engine's epoch e is outer step e: meta-epoch e // steps_per_meta_epoch, whose
    order of the training images is drawn from the seed. In a torchrun group the rank computes its
    share of the meta-batch and the ranks sum their weighted meta-gradients (module docstring)."""

    n_signals = 1
    steps_per_epoch = 1

    def __init__(self, meta: MetaSGD, train_set: MetaImages, features: torch.Tensor, batch: int, seed: int,
                 outer_lr: float, vectorize: bool, device: torch.device):
        self.meta, self.train_set, self.features, self.batch = meta, train_set, features, batch
        self.seed, self.vectorize, self.device = seed, vectorize, device
        self.loss = FitLoss(data_name="outer_loss")
        self.optimizer = torch.optim.Adam(meta.parameters(), lr=outer_lr)
        self.named = list(meta.named_parameters())
        self.parameter_names = [name for name, _ in self.named]
        self.steps_per_meta_epoch = math.ceil(len(train_set) / batch)
        self._shuffle = torch.Generator()

    def compute(self, epoch: int, index: int) -> StepValues:
        meta_epoch, b = divmod(epoch, self.steps_per_meta_epoch)
        order = torch.randperm(len(self.train_set), generator=self._shuffle.manual_seed(self.seed * 100003 + meta_epoch))
        chosen = order[b * self.batch:(b + 1) * self.batch]
        ranks = distributed.ranks()
        self.optimizer.zero_grad(set_to_none=True)
        if ranks.world_size == 1:
            targets = self.train_set.targets(chosen, self.device)
            outer, inner = self.meta.meta_backward(self.features, targets, first_order=False, vectorize=self.vectorize)
            loss, init_loss = outer.mean().reshape(1), inner[:, 0].mean()
        else:
            loss, init_loss = self._share_of_meta_batch(chosen[ranks.rank::ranks.world_size], len(chosen))
        scalars = {"train_psnr_adapted": [psnr_from_mse(float(loss) * UNIT_MSE_PER_VALUES_MSE)],
                   "train_psnr_init": [psnr_from_mse(float(init_loss) * UNIT_MSE_PER_VALUES_MSE)]}
        if self.meta.lr_type != "static":  # the rates this step adapted with
            scalars["inner_lr_mean"] = [self.meta.lr_summary()["mean"]]
        return StepValues(total=loss, data=loss, scalars=scalars)

    def _share_of_meta_batch(self, mine: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Backward over this rank's images `mine` of a meta-batch of `total`; then .grad of every
        rank holds the gradient of the mean over the meta-batch. Returns the mean outer loss (1,) and
        the mean loss at the init over the meta-batch."""
        parameters = list(self.meta.parameters())
        outer_sum = init_sum = torch.zeros((), device=self.device)
        if len(mine):
            targets = self.train_set.targets(mine, self.device)
            outer, inner = self.meta.meta_backward(self.features, targets, first_order=False, vectorize=self.vectorize)
            outer_sum, init_sum = outer.sum(), inner[:, 0].sum()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        # meta_backward's gradient is of the mean over `mine`: weighted by len(mine) / total, the sum
        # over the ranks is the gradient of the mean over the meta-batch.
        buffer = torch.cat([torch.cat([g.reshape(-1) for g in grads]) * (len(mine) / total),
                            torch.stack([outer_sum, init_sum]).to(grads[0].dtype) / total])
        distributed.all_reduce_sum(buffer)
        offset = 0
        for p in parameters:
            p.grad = buffer[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        return buffer[offset:offset + 1], buffer[offset + 1]

    def update(self, lrs: list[float], active: list[bool]) -> None:
        if active[0]:
            self.optimizer.param_groups[0]["lr"] = lrs[0]
            self.optimizer.step()

    def parameters_of(self, n: int) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.meta.state_dict().items()}

    def load_parameters(self, n: int, params: dict[str, torch.Tensor]) -> None:
        self.meta.load_state_dict(params)

    def optimizer_state_of(self, n: int) -> dict:
        return adam_state_by_name(self.optimizer, self.named)

    def load_optimizer_state(self, n: int, state: dict) -> None:
        load_adam_state_by_name(self.optimizer, self.named, state)

    def model_of(self, n: int) -> nn.Module:
        return self.meta


class MetaRunFiles(RunFiles):
    """Where meta-training writes (module docstring); extra holds the validation history and the
    training time, saved with the resume point."""

    def __init__(self, folder: Path, total_steps: int, describe: dict, show_progress: bool):
        super().__init__(folder)
        self.checkpoint_dir = self.run_dir
        self.resume_path = self.run_dir / RESUME_FILE
        self.total_steps, self.describe, self.show_progress = total_steps, describe, show_progress
        self.extra = {"history": [], "seconds": 0.0}

    def old_resume_paths(self) -> list[Path]:
        return []

    def write_snapshot(self, epoch: int, model: MetaSGD, values: StepValues | None) -> None:
        torch_save_atomic(model.model.state_dict(), self.run_dir / f"model_maml_step{epoch}.pth")
        torch_save_atomic(model.to_obj(), self.run_dir / f"maml_obj_step{epoch}.pth")
        if not self.show_progress and values is not None:
            loss = float(values.data[0])
            print(f"outer step {epoch}/{self.total_steps}: loss {loss:.4g} (PSNR "
                  f"{psnr_from_mse(loss * UNIT_MSE_PER_VALUES_MSE):.2f} dB after {model.adaptation_steps} inner steps)")

    def finish(self, model: MetaSGD, record: SignalRecord) -> None:
        if record.best_epoch < 0:
            raise InrError("meta-training diverged before its first finite validation; lower --outer_lr or "
                           "--inner_lr")
        history = self.extra["history"]
        best = next(r for r in history if r["step"] == record.best_epoch)
        result = {"best_step": record.best_epoch, "steps_run": len(record.losses), "total_steps": self.total_steps,
                  "stopped_early": record.stopped_early,
                  "best_val_loss": record.best_loss, "val_psnr_init": best["val_psnr_init"],
                  "val_psnr_adapted": best["val_psnr_adapted"], "diverged": record.diverged, **self.describe,
                  "lr_type": model.lr_type, "learned_lrs": model.lr_summary(), "seconds": self.extra["seconds"],
                  "history": history}
        write_json(self.run_dir / MAML_RESULT_FILE, result)
        torch_save_atomic(model.to_obj(), self.run_dir / MAML_OBJ_FILE)
        # model_maml.pth marks the init as finished; written last.
        torch_save_atomic({k: v.detach().cpu() for k, v in model.model.state_dict().items()},
                          self.run_dir / MAML_INIT_FILE)
        self.resume_path.unlink(missing_ok=True)
        print(f"best validation at outer step {record.best_epoch}: PSNR {best['val_psnr_init']:.2f} dB at the init, "
              f"{best['val_psnr_adapted']:.2f} dB after {model.adaptation_steps} inner steps -> "
              f"{self.run_dir / MAML_INIT_FILE}")


class FollowerRunFiles(MetaRunFiles):
    """The files of a rank other than 0 in data-parallel meta-training: it resumes from rank 0's
    resume point, copied into the private `scratch` folder where its own resume points and
    summaries then go, and writes nothing else."""

    def __init__(self, folder: Path, scratch: Path, total_steps: int):
        super().__init__(scratch, total_steps, {}, show_progress=True)
        if (folder / RESUME_FILE).is_file():
            shutil.copyfile(folder / RESUME_FILE, self.resume_path)

    def write_snapshot(self, epoch: int, model: MetaSGD, values: StepValues | None) -> None:
        pass

    def finish(self, model: MetaSGD, record: SignalRecord) -> None:
        pass


def train_meta(flag_values: dict, *, show_progress: bool = True, step_hook=None) -> Path:
    """trainMetaSiren.py: meta-learn an initialization; returns its folder. Resumable; a finished
    folder (model_maml.pth and maml_obj.pth present) is left as it is. Data-parallel under torchrun
    (module docstring)."""
    device = resolve_device(distributed.join(flag_values["device"]))
    step_hook, show_progress = distributed.with_test_kill(step_hook), show_progress and distributed.is_main()
    vectorize = bool(flag_values.get("maml_vmap", DEFAULT_VECTORIZE))
    folder = maml_init_folder(flag_values)
    if is_trained(folder):
        print(f"meta-learned init already trained: {folder}")
        return folder
    train_set, val_set = meta_datasets(Path(flag_values["data_root"]), flag_values["maml_dataset"],
                                       int(flag_values["downscaling_factor"]))
    height, width, channels = train_set.shape
    for split in (train_set, val_set):  # read the first images now: a bad file stops the run at once
        split.image(0)
    folder.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        save_flags(folder / "FLAGS.yml", flag_values)

    torch.manual_seed(int(flag_values["seed"]))
    model_cfg = model_config_from_flags(flag_values, in_features=2, out_features=channels)
    meta = MetaSGD(INR(model_cfg), flag_values["maml_adaptation_steps"], flag_values["lr_type"],
                   flag_values["inner_lr"]).to(device)
    with torch.no_grad():
        features = meta.model.encode(coordinate_grid((height, width)).to(device))
    batch = int(flag_values["maml_batch_size"])
    step = MetaStep(meta, train_set, features, batch, int(flag_values["seed"]), float(flag_values["outer_lr"]),
                    vectorize, device)
    total_steps = step.steps_per_meta_epoch * int(flag_values["maml_epochs"])
    summary_every = int(flag_values["steps_til_summary"])
    early_stop = int(flag_values.get("maml_early_stop", 0))
    if early_stop < 0:
        raise InrError(f"maml_early_stop must be >= 0 (0: off), got {early_stop}")
    cfg = TrainConfig(epochs=total_steps, lr=float(flag_values["outer_lr"]), patience=OUTER_PATIENCE,
                      epochs_til_ckpt=summary_every, steps_til_summary=summary_every,
                      early_stop_epochs=early_stop or total_steps)
    scratch = None if distributed.is_main() else Path(tempfile.mkdtemp(prefix=f".rank{distributed.ranks().rank}.",
                                                                         dir=folder))
    files = MetaRunFiles(folder, total_steps, {
        "train_images": len(train_set), "val_images": len(val_set), "image_size": [height, width],
        "meta_batches": "vmap" if vectorize else "loop"}, show_progress) if scratch is None else FollowerRunFiles(
        folder, scratch, total_steps)
    if files.resume_path.is_file():
        print(f"resuming meta-training from {files.resume_path}")
    val_targets = val_set.targets(range(len(val_set)), device) if len(val_set) * height * width * channels <= (
        1 << 26) else None

    def validate(at: int) -> tuple[float, dict[str, float]]:
        ranks = distributed.ranks()  # each rank adapts to its share of the images; the sums gather them
        share = range(ranks.rank, len(val_set), ranks.world_size)
        outer = torch.zeros(len(val_set), dtype=features.dtype, device=device)
        inner = torch.zeros(len(val_set), meta.adaptation_steps, dtype=features.dtype, device=device)
        for s in range(0, len(share), batch):
            chunk = share[s:s + batch]
            rows = slice(chunk.start, chunk.stop, chunk.step)
            targets = val_targets[rows] if val_targets is not None else val_set.targets(chunk, device)
            outer[rows], inner[rows] = meta.evaluate(features, targets, batch, vectorize=vectorize)
        outer, inner = distributed.all_reduce_sum(outer).cpu(), distributed.all_reduce_sum(inner).cpu()
        record = {"step": at, "val_loss": float(outer.sum()),
                  "val_psnr_init": float(np.mean([psnr_from_mse(float(v) * UNIT_MSE_PER_VALUES_MSE) for v in inner[:, 0]])),
                  "val_psnr_adapted": float(np.mean([psnr_from_mse(float(v) * UNIT_MSE_PER_VALUES_MSE) for v in outer]))}
        files.extra["history"].append(record)
        return record["val_loss"], {k: v for k, v in record.items() if k != "step"}

    clock = [time.perf_counter()]

    def after_step(step_number: int) -> None:  # the training time, kept across resumes
        now = time.perf_counter()
        files.extra["seconds"] += now - clock[0]
        clock[0] = now
        if step_hook is not None:
            step_hook(step_number)

    print(f"meta-training {folder} ({len(train_set)} training, {len(val_set)} validation images of "
          f"{height}x{width}, {total_steps} outer steps, device {device}, "
          f"{'vmap' if vectorize else 'loop'} meta-batches)")
    try:
        run_fit(step, cfg, [files], names=["meta-training"], progress_desc=f"MAML {flag_values['maml_dataset']}",
                progress_unit="step", step_hook=after_step, show_progress=show_progress,
                monitor=Monitor(validate, int(flag_values.get("maml_val_every", 500))), lr_scalar="outer_lr")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    distributed.barrier()  # the files are complete before any rank returns
    return folder
