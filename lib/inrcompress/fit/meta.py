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
with the lowest validation loss is the result.

Implementation: a task (one image) is a pure function of (theta_0, rates, encoded grid, pixels) built
from torch.func.grad and nn.mlp_forward, so the inner loop never touches the module. Every image of a
meta-dataset has the same size, so the encoded grid is computed once for the whole run (model.encode
is constant) and shared, unbatched, by all images. A meta-batch runs as one torch.func.vmap'ed
computation or as a Python loop with one backward per image (`vectorize`); DEFAULT_VECTORIZE is the
faster of the two on a 2-core CPU (benchmarks/meta_rd.py --speed, numbers in benchmarks/RESULTS.md, section 6).

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
import csv
import dataclasses
import hashlib
import json
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn
from torch.func import grad_and_value, vmap

from inrcompress.config import (
    ModelConfig,
    atomic_write_text,
    maml_experiment_name,
    maml_init_folder,
    model_config_from_flags,
    save_flags,
)
from inrcompress.signals.image import IMAGE_SUFFIXES, MAX_PIXELS, coordinate_grid, image_to_values, list_images, load_image, to_landscape
from inrcompress.errors import InrError
from inrcompress.tools.flags import LR_TYPES
from inrcompress.experiments.image_codec import MAML_INIT_FILE
from inrcompress.nn import INR, mlp_forward
from inrcompress.fit.train import load_checkpoint, resolve_device, torch_save_atomic

MAML_OBJ_FILE = "maml_obj.pth"
MAML_RESULT_FILE = "maml_result.json"
RESUME_FILE = "maml_resume.pth"
MAML_FORMAT = "inrcompress-maml/1"
# Measured on 2 shared CPU cores (benchmarks/meta_rd.py --speed, benchmarks/RESULTS.md section 6): the Python loop over
# the images of a meta-batch (one backward each) costs less than the vmap'ed batch, so it is the default;
# --maml_vmap selects vmap (untimed on GPUs here).
DEFAULT_VECTORIZE = False
# Decoded, resized meta-training images kept in memory (bytes); beyond it images are re-read.
CACHE_BYTES = 2 << 30

DIV2K_SIZE = (512, 768)  # (H, W) before downscaling
CELEBA_SIZE = (218, 178)  # (H, W) before downscaling (turned to landscape afterwards)
FOLDER_VAL_FRACTION = 0.1


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
# Meta-training data

@dataclass
class MetaImages:
    """One split of a meta-dataset: every image prepared to the same (H, W, C), uint8, read lazily and
    cached in memory up to CACHE_BYTES."""

    name: str
    paths: list[Path]
    prepare: Callable[[Path], np.ndarray]
    shape: tuple[int, int, int]
    cache: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> np.ndarray:
        if i in self.cache:
            return self.cache[i]
        array = self.prepare(self.paths[i])
        if array.shape != self.shape:
            raise InrError(f"{self.paths[i]}: prepared to {array.shape}, expected {self.shape}")
        if (len(self.cache) + 1) * array.nbytes <= CACHE_BYTES:
            self.cache[i] = array
        return array

    def targets(self, indices, device) -> torch.Tensor:
        """(B, H*W, C) pixel values in [-1, 1]."""
        return torch.stack([image_to_values(self.image(int(i))) for i in indices]).to(device)


def _open_rgb_or_gray(path: Path, mode: str | None = None) -> Image.Image:
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise InrError(f"{path}: {img.width}x{img.height} is larger than {MAX_PIXELS} pixels")
            if mode is None:
                mode = "L" if img.mode in ("L", "I;16", "I", "1") else "RGB"
            img = img.convert(mode)
            img.load()
            return img
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InrError(f"cannot read image {path}: {e}") from None


def _landscape(img: Image.Image) -> Image.Image:
    # PIL's rotate(90, expand=True) turns counter-clockwise, like data.to_landscape.
    return img.rotate(90, expand=True) if img.height > img.width else img


def _as_array(img: Image.Image) -> np.ndarray:
    array = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(array[:, :, None] if array.ndim == 2 else array)


def _check_size(height: int, width: int, what: str) -> None:
    if height < 2 or width < 2:
        raise InrError(f"{what}: {height}x{width} after downscaling is too small")


def _div2k_prepare(factor: int) -> Callable[[Path], np.ndarray]:
    height, width = DIV2K_SIZE[0] // factor, DIV2K_SIZE[1] // factor

    def prepare(path: Path) -> np.ndarray:
        img = _landscape(_open_rgb_or_gray(path, "RGB"))
        img.thumbnail((DIV2K_SIZE[1], DIV2K_SIZE[0]), Image.LANCZOS)
        return _as_array(img.resize((width, height), Image.BILINEAR))
    return prepare


def _celeba_prepare(factor: int) -> Callable[[Path], np.ndarray]:
    height, width = CELEBA_SIZE[0] // factor, CELEBA_SIZE[1] // factor

    def prepare(path: Path) -> np.ndarray:
        img = _open_rgb_or_gray(path, "RGB").resize((width, height), Image.BILINEAR)
        return to_landscape(_as_array(img))[0]
    return prepare


def _folder_prepare(mode: str, height: int, width: int) -> Callable[[Path], np.ndarray]:
    def prepare(path: Path) -> np.ndarray:
        img = _landscape(_open_rgb_or_gray(path, mode))
        if (img.height, img.width) != (height, width):
            img = img.resize((width, height), Image.BILINEAR)
        return _as_array(img)
    return prepare


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _div2k(root: Path, factor: int) -> tuple[MetaImages, MetaImages]:
    height, width = DIV2K_SIZE[0] // factor, DIV2K_SIZE[1] // factor
    _check_size(height, width, "DIV2K")
    splits = []
    for split, sub in (("train", "DIV2K_train_HR"), ("val", "DIV2K_valid_HR")):
        folder = root / sub
        if not folder.is_dir():
            raise InrError(f"DIV2K folder not found: {folder} (python data/download_div2k.py fetches it)")
        paths = _images_in(folder)
        if not paths:
            raise InrError(f"no images in {folder}")
        splits.append(MetaImages(f"DIV2K/{split}", paths, _div2k_prepare(factor), (height, width, 3)))
    return splits[0], splits[1]


def _celeba(root: Path, factor: int) -> tuple[MetaImages, MetaImages]:
    """CelebA (spec 5.2): train = partition 0 of list_eval_partition.csv, val = the first 100 of
    partition 1, each resized to (218 // f, 178 // f) and then turned to landscape (178 // f, 218 // f).
    The turn departs from the paper, which meta-trained on upright faces: overfitMetaSiren and
    quantize_and_test turn every portrait image to landscape, so the init must be learned that way too."""
    height, width = CELEBA_SIZE[0] // factor, CELEBA_SIZE[1] // factor
    _check_size(height, width, "CelebA")
    folder, table = root / "img_align_celeba_png", root / "list_eval_partition.csv"
    for needed in (folder, table):
        if not needed.exists():
            raise InrError(f"CelebA needs {needed} (see data/README)")
    partitions: dict[int, list[Path]] = {0: [], 1: []}
    with open(table, newline="") as f:
        for row in csv.reader(f):
            if len(row) < 2 or not row[1].strip().isdigit():
                continue  # header or blank line
            part = int(row[1])
            if part in partitions:
                partitions[part].append(folder / (Path(row[0].strip()).stem + ".png"))
    train, val = partitions[0], partitions[1][:100]
    if not train or not val:
        raise InrError(f"{table} lists no training (0) or validation (1) images")
    missing = next((p for p in train + val if not p.is_file()), None)
    if missing is not None:
        raise InrError(f"CelebA image missing: {missing}")
    shape = (min(height, width), max(height, width), 3)  # turned to landscape
    prepare = _celeba_prepare(factor)
    return MetaImages("CelebA/train", train, prepare, shape), MetaImages("CelebA/val", val, prepare, shape)


def _plain_folder(folder: Path, factor: int) -> tuple[MetaImages, MetaImages]:
    """A folder of images: train/ and val/ subfolders when both exist, else the last 10% by sorted
    name (at least one image) are the validation images. Every image is turned to landscape and resized
    to the first (training) image's landscape size // factor; the mode (RGB or gray) is the first's."""
    if (folder / "train").is_dir() and (folder / "val").is_dir():
        train, val = list_images(folder / "train"), list_images(folder / "val")
    else:
        paths = list_images(folder)
        if len(paths) < 2:
            raise InrError(f"{folder} needs at least 2 images (training and validation)")
        n_val = max(1, round(FOLDER_VAL_FRACTION * len(paths)))
        train, val = paths[:-n_val], paths[-n_val:]
    first = _landscape(_open_rgb_or_gray(train[0]))
    height, width = first.height // factor, first.width // factor
    _check_size(height, width, str(train[0]))
    channels = 1 if first.mode == "L" else 3
    prepare = _folder_prepare(first.mode, height, width)
    name = folder.name
    return (MetaImages(f"{name}/train", train, prepare, (height, width, channels)),
            MetaImages(f"{name}/val", val, prepare, (height, width, channels)))


def meta_datasets(data_root: Path, name: str, factor: int) -> tuple[MetaImages, MetaImages]:
    """(train, val) of a meta-dataset (spec 5.2): DIV2K, CelebA, or any folder under data_root."""
    if factor < 1:
        raise InrError(f"downscaling_factor must be >= 1, got {factor}")
    root = Path(data_root) / name
    if not root.is_dir():
        raise InrError(f"meta-training data not found: {root}")
    if name == "DIV2K":
        return _div2k(root, factor)
    if name == "CelebA":
        return _celeba(root, factor)
    return _plain_folder(root, factor)


# ------------------------------------------------------------------------------------------------
# trainMetaSiren.py

def _outer_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def psnr_of_mse(mse: float) -> float:
    """PSNR (dB, [0, 1] scale) of an MSE on the [-1, 1] scale."""
    mse01 = mse / 4.0
    return 10 * math.log10(1.0 / mse01) if mse01 > 0 else float("inf")


def is_trained(folder: Path) -> bool:
    return (folder / MAML_INIT_FILE).is_file() and (folder / MAML_OBJ_FILE).is_file()


def train_meta(flag_values: dict, *, show_progress: bool = True, step_hook=None) -> Path:
    """trainMetaSiren.py: meta-learn an initialization; returns its folder. Resumable; a finished
    folder (model_maml.pth and maml_obj.pth present) is left as it is."""
    device = resolve_device(flag_values["device"])
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
    save_flags(folder / "FLAGS.yml", flag_values)

    torch.manual_seed(int(flag_values["seed"]))
    model_cfg = model_config_from_flags(flag_values, in_features=2, out_features=channels)
    meta = MetaSGD(INR(model_cfg), flag_values["maml_adaptation_steps"], flag_values["lr_type"],
                   flag_values["inner_lr"]).to(device)
    optimizer = torch.optim.Adam(meta.parameters(), lr=float(flag_values["outer_lr"]))
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.5, patience=10, threshold=1e-4, threshold_mode="rel", cooldown=0,
        min_lr=0, eps=1e-8)
    with torch.no_grad():
        features = meta.model.encode(coordinate_grid((height, width)).to(device))

    batch = int(flag_values["maml_batch_size"])
    steps_per_epoch = math.ceil(len(train_set) / batch)
    total_steps = steps_per_epoch * int(flag_values["maml_epochs"])
    val_every = int(flag_values.get("maml_val_every", 500))
    summary_every = int(flag_values["steps_til_summary"])
    state = {"step": 0, "best_val": math.inf, "best_step": -1, "best_state": None, "validated_at": None,
             "history": [], "diverged": False, "seconds": 0.0}
    resume = folder / RESUME_FILE
    if resume.is_file():
        saved = load_checkpoint(resume, map_location=device)
        meta.load_state_dict(saved["meta"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        print(f"resuming meta-training at outer step {state['step']} of {total_steps}")
    val_targets = val_set.targets(range(len(val_set)), device) if len(val_set) * height * width * channels <= (
        1 << 26) else None

    def validate() -> dict:
        outers, inners = [], []
        for s in range(0, len(val_set), batch):
            targets = val_targets[s:s + batch] if val_targets is not None else val_set.targets(
                range(s, min(s + batch, len(val_set))), device)
            o, i = meta.evaluate(features, targets, batch, vectorize=vectorize)
            outers.append(o)
            inners.append(i)
        outer, inner = torch.cat(outers).cpu(), torch.cat(inners).cpu()
        return {"step": state["step"], "val_loss": float(outer.sum()),
                "val_psnr_init": float(np.mean([psnr_of_mse(float(v)) for v in inner[:, 0]])),
                "val_psnr_adapted": float(np.mean([psnr_of_mse(float(v)) for v in outer]))}

    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(str(folder / "summaries"), purge_step=state["step"] or None)

    def run_validation():
        record = validate()
        state["validated_at"] = state["step"]
        state["history"].append(record)
        scheduler.step(record["val_loss"])
        if record["val_loss"] < state["best_val"]:
            state["best_val"] = record["val_loss"]
            state["best_step"] = state["step"]
            state["best_state"] = {k: v.detach().clone() for k, v in meta.state_dict().items()}
        for key in ("val_loss", "val_psnr_init", "val_psnr_adapted"):
            writer.add_scalar(key, record[key], state["step"])
        return record

    def save_resume():
        torch_save_atomic({"meta": meta.state_dict(), "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(), "state": state}, resume)

    progress = None
    if show_progress:
        from tqdm.auto import tqdm
        progress = tqdm(total=total_steps, initial=state["step"], desc=f"MAML {flag_values['maml_dataset']}",
                        unit="step", dynamic_ncols=True, mininterval=0.5)
    shuffle = torch.Generator()
    started = time.perf_counter() - state["seconds"]
    print(f"meta-training {folder} ({len(train_set)} training, {len(val_set)} validation images of "
          f"{height}x{width}, {total_steps} outer steps, device {device}, "
          f"{'vmap' if vectorize else 'loop'} meta-batches)")
    try:
        while state["step"] < total_steps:
            step = state["step"]
            if step % val_every == 0 and state["validated_at"] != step:
                record = run_validation()
                if progress is not None:
                    progress.set_postfix(val_psnr=f"{record['val_psnr_adapted']:.2f}", refresh=False)
            epoch, b = divmod(step, steps_per_epoch)
            order = torch.randperm(len(train_set), generator=shuffle.manual_seed(
                int(flag_values["seed"]) * 100003 + epoch))
            targets = train_set.targets(order[b * batch:(b + 1) * batch], device)
            optimizer.zero_grad(set_to_none=True)
            outer, inner = meta.meta_backward(features, targets, first_order=False, vectorize=vectorize)
            loss = float(outer.mean())
            if not math.isfinite(loss):
                state["diverged"] = True
                warnings.warn(f"non-finite meta-loss at outer step {step + 1}: restored the best state and stopped")
                break
            optimizer.step()
            state["step"] = step + 1
            state["seconds"] = time.perf_counter() - started
            writer.add_scalar("outer_loss", loss, state["step"])
            writer.add_scalar("train_psnr_adapted", psnr_of_mse(loss), state["step"])
            writer.add_scalar("train_psnr_init", psnr_of_mse(float(inner[:, 0].mean())), state["step"])
            writer.add_scalar("outer_lr", _outer_lr(optimizer), state["step"])
            if meta.lr_type != "static":
                writer.add_scalar("inner_lr_mean", meta.lr_summary()["mean"], state["step"])
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{loss:.3g}", psnr=f"{psnr_of_mse(loss):.2f}",
                                     lr=f"{_outer_lr(optimizer):.2g}", refresh=False)
            if state["step"] % summary_every == 0 and state["step"] < total_steps:
                torch_save_atomic(meta.model.state_dict(), folder / f"model_maml_step{state['step']}.pth")
                torch_save_atomic(meta.to_obj(), folder / f"maml_obj_step{state['step']}.pth")
                save_resume()
                if progress is None:
                    print(f"outer step {state['step']}/{total_steps}: loss {loss:.4g} "
                          f"(PSNR {psnr_of_mse(loss):.2f} dB after {meta.adaptation_steps} inner steps)")
            if step_hook is not None:
                step_hook(state["step"])
        if not state["diverged"] and state["validated_at"] != state["step"]:
            run_validation()
    finally:
        if progress is not None:
            progress.close()
        writer.close()

    if state["best_state"] is None:
        raise InrError("meta-training diverged before its first validation; lower --outer_lr or --inner_lr")
    meta.load_state_dict(state["best_state"])
    best = next(r for r in state["history"] if r["step"] == state["best_step"])
    result = {"best_step": state["best_step"], "steps_run": state["step"], "total_steps": total_steps,
              "best_val_loss": state["best_val"], "val_psnr_init": best["val_psnr_init"],
              "val_psnr_adapted": best["val_psnr_adapted"], "diverged": state["diverged"],
              "train_images": len(train_set), "val_images": len(val_set), "image_size": [height, width],
              "lr_type": meta.lr_type, "learned_lrs": meta.lr_summary(), "seconds": state["seconds"],
              "meta_batches": "vmap" if vectorize else "loop", "history": state["history"]}
    atomic_write_text(folder / MAML_RESULT_FILE, json.dumps(result, indent=2))
    torch_save_atomic(meta.to_obj(), folder / MAML_OBJ_FILE)
    # model_maml.pth marks the init as finished; written last.
    torch_save_atomic({k: v.detach().cpu() for k, v in meta.model.state_dict().items()}, folder / MAML_INIT_FILE)
    resume.unlink(missing_ok=True)
    print(f"best validation at outer step {state['best_step']}: PSNR {best['val_psnr_init']:.2f} dB at the init, "
          f"{best['val_psnr_adapted']:.2f} dB after {meta.adaptation_steps} inner steps -> {folder / MAML_INIT_FILE}")
    return folder


# ------------------------------------------------------------------------------------------------
# overfitMetaSiren.py

ARCH_KEYS = ("encoding", "activation", "hidden_dims", "hidden_layers", "ff_dims", "encoding_scale")


def find_init(flag_values: dict) -> Path:
    """The folder of the meta-learned init that the MAML and architecture flags name."""
    folder = maml_init_folder(flag_values)
    if not is_trained(folder):
        raise InrError(f"no meta-learned initialization at {folder} (expected {MAML_INIT_FILE} and {MAML_OBJ_FILE} "
                       "there): run trainMetaSiren.py with the same maml_* / inner_lr / outer_lr / lr_type, "
                       "downscaling_factor and architecture flags first")
    return folder


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_overfit_meta(flag_values: dict, *, step_hook=None, show_progress: bool = True) -> Path:
    """overfitMetaSiren.py: fit every image of data_root/dataset starting from the meta-learned init;
    returns the experiment folder."""
    from inrcompress.experiments.images import (
        ImageSignal,
        batch_images_for,
        check_images,
        evaluate,
        finish_experiment,
        fit_groups,
        fit_image,
        fit_images_batched,
        is_finished,
        report_fit,
        train_config_for,
    )

    device = resolve_device(flag_values["device"])
    init_dir = find_init(flag_values)
    meta = load_maml_obj(init_dir / MAML_OBJ_FILE, device)
    cfg = meta.model.cfg
    expected = model_config_from_flags(flag_values, in_features=2, out_features=cfg.out_features)
    if cfg.encoding == "gauss" and cfg.gauss_seed != expected.gauss_seed:
        raise InrError(f"the gauss encoding of {init_dir} was drawn with --seed {cfg.gauss_seed}; pass that seed")
    if dataclasses.replace(expected, gauss_seed=cfg.gauss_seed) != cfg:
        raise InrError(f"{init_dir / MAML_OBJ_FILE} holds another architecture than the flags ask for")
    init_state = load_checkpoint(init_dir / MAML_INIT_FILE)
    theta_0 = {k: v.to(device) for k, v in init_state.items()}
    for name, p in meta.model.named_parameters():
        if name not in init_state or not torch.equal(init_state[name].to(device), p.detach()):
            raise InrError(f"{init_dir}: {MAML_INIT_FILE} and {MAML_OBJ_FILE} hold different initializations")

    images = list_images(Path(flag_values["data_root"]) / flag_values["dataset"])
    factor = int(flag_values["downscaling_factor"])
    check_images(images, factor)
    exp_dir = Path(flag_values["exp_root"]) / maml_experiment_name(flag_values)
    exp_dir.mkdir(parents=True, exist_ok=True)
    marker = exp_dir / MAML_INIT_FILE
    if marker.is_file() and _file_digest(marker) != _file_digest(init_dir / MAML_INIT_FILE):
        raise InrError(f"{exp_dir} was fitted from another meta-learned init (its {MAML_INIT_FILE} differs from "
                       f"{init_dir / MAML_INIT_FILE}; the folder name does not hold maml_dataset): use another "
                       "--exp_root")
    if not marker.is_file():
        tmp = marker.with_name(f".{marker.name}.tmp")
        shutil.copyfile(init_dir / MAML_INIT_FILE, tmp)
        tmp.replace(marker)
    save_flags(exp_dir / "FLAGS.yml", {**flag_values, "maml_init": str(init_dir)})
    # The paper's --batch_size is unused (an image is one batch); it is not TrainConfig.batch_size (points).
    fit_flags = {k: v for k, v in flag_values.items() if k != "batch_size"}
    print(f"experiment: {exp_dir} ({len(images)} images, init {init_dir.name}, device {device})")
    pending = []  # (signal, adapted model, extra result entries, run_dir)
    for path in images:
        run_dir = exp_dir / path.stem
        if is_finished(run_dir):
            print(f"{path.stem}: already fitted, skipped")
            continue
        original = load_image(path, factor)
        if original.shape[2] != cfg.out_features:
            raise InrError(f"{path} has {original.shape[2]} channel(s), the meta-learned init {cfg.out_features}")
        fitted, rotated = to_landscape(original)
        coords = coordinate_grid(fitted.shape[:2]).to(device)
        signal = ImageSignal(path.stem, fitted, coords, image_to_values(fitted).to(device), rotated=rotated)
        with torch.no_grad():
            features = meta.model.encode(coords)
        adapted, inner_losses = meta.adapt(features, signal.values)
        inner_metrics, _ = evaluate(adapted, signal)
        extra = {"rotated": rotated, "inner_losses": inner_losses,
                 **{f"{k}_after_inner_steps": v for k, v in inner_metrics.items()}}
        pending.append((signal, adapted, extra, run_dir))
    groups = fit_groups([p[0] for p in pending], [p[3] for p in pending], batch_images_for(flag_values, device))
    for group in groups:
        members = [pending[i] for i in group]
        train_cfg = train_config_for(fit_flags, members[0][0].coords.shape[0] * len(members))
        if len(members) == 1:
            signal, adapted, extra, run_dir = members[0]
            results = [fit_image(signal, cfg, train_cfg, run_dir, device, model=adapted, reference_params=theta_0,
                                 step_hook=step_hook, show_progress=show_progress, extra=extra)]
        else:
            results = fit_images_batched([m[0] for m in members], cfg, train_cfg, [m[3] for m in members], device,
                                         models=[m[1] for m in members],
                                         reference_params=[theta_0] * len(members),
                                         extras=[m[2] for m in members], step_hook=step_hook,
                                         show_progress=show_progress)
        for (signal, _, extra, _), result in zip(members, results):
            turned = " (fitted turned)" if extra["rotated"] else ""
            report_fit(signal.name, result, len(members),
                       f"{turned} PSNR {extra['psnr_after_inner_steps']:.2f} dB after the inner steps ->")
    finish_experiment(exp_dir)
    return exp_dir
