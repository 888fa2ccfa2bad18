"""Frozen settings for the model, fitting and quantization, experiment names, FLAGS.yml and JSON files.

The experiment folder name is derived here and nowhere else, with the naming of the paper's code
(spec 4.1), so folders written by the paper's scripts and by ours line up.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from inrcompress.errors import InrError

ENCODINGS = ("mlp", "nerf", "positional", "gauss")
ACTIVATIONS = ("sine", "relu")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one INR: coordinates in [-1, 1]^in_features -> out_features values.

    hidden_layers counts the hidden h->h layers; the network has hidden_layers + 2 linear layers
    (input layer, hidden layers, linear output layer), as in the paper's FCBlock.
    """

    in_features: int = 2
    out_features: int = 3
    encoding: str = "nerf"
    activation: str = "sine"
    hidden_dims: int = 64
    hidden_layers: int = 3
    ff_dims: int = 16
    encoding_scale: float = 1.4
    gauss_seed: int = 0

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise InrError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.activation not in ACTIVATIONS:
            raise InrError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        for name in ("in_features", "out_features", "hidden_dims", "hidden_layers"):
            if int(getattr(self, name)) < 1:
                raise InrError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.encoding != "mlp" and int(self.ff_dims) < 1:
            raise InrError(f"ff_dims must be >= 1 for the {self.encoding} encoding, got {self.ff_dims}")
        if self.encoding != "mlp" and not float(self.encoding_scale) > 0:
            raise InrError(f"encoding_scale must be > 0, got {self.encoding_scale}")


@dataclass(frozen=True)
class TrainConfig:
    """How one signal is fitted (spec section 4).

    epochs: passes over the signal (one step per epoch for an image, whose pixels form one batch).
    batch_size: points per step; None = the whole signal in every step.
    warmup: linear learning-rate warm-up steps (used after a MAML initialization).
    early_stop_epochs: stop when the best epoch loss is this many epochs old (paper: 5000).
    """

    epochs: int = 10000
    lr: float = 1e-4
    l1_reg: float = 0.0
    patience: int = 500
    warmup: int = 0
    epochs_til_ckpt: int = 1000
    steps_til_summary: int = 1000
    early_stop_epochs: int = 5000
    batch_size: int | None = None
    seed: int = 0
    compile: bool = False
    amp: bool = False

    def __post_init__(self):
        if self.epochs < 1:
            raise InrError(f"epochs must be >= 1, got {self.epochs}")
        if not self.lr >= 0:
            raise InrError(f"lr must be >= 0, got {self.lr}")
        if not self.l1_reg >= 0:
            raise InrError(f"l1_reg must be >= 0, got {self.l1_reg}")
        if self.patience < 1:
            raise InrError(f"patience must be >= 1, got {self.patience}")
        if self.epochs_til_ckpt < 1 or self.steps_til_summary < 1:
            raise InrError("epochs_til_ckpt and steps_til_summary must be >= 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise InrError(f"batch_size must be >= 1, got {self.batch_size}")


def _num(value: float) -> str:
    """Python's str() of a float, as the paper's folder names use it (1e-05, 0.0005, 1.4)."""
    return str(float(value))


def architecture_suffix(flags: dict[str, Any], with_l1: bool = True) -> str:
    """The part of an experiment name that describes the network (spec 4.1)."""
    parts = []
    if flags.get("ff_dims"):
        parts.append(f"ffdims_{flags['ff_dims']}")
    parts.append(f"hdims{flags['hidden_dims']}_hlayer{flags['hidden_layers']}")
    parts.append(f"{flags['encoding']}_{flags['activation']}")
    if with_l1 and flags.get("l1_reg", 0) > 0:
        parts.append(f"l1_reg{_num(flags['l1_reg'])}")
    if flags.get("encoding_scale", 0) > 0:
        parts.append(f"enc_scale{_num(flags['encoding_scale'])}")
    return "_".join(parts)


def basic_experiment_name(flags: dict[str, Any]) -> str:
    """Folder name of an overfitINR experiment, e.g.
    KODAK_1x_epochs25000_lr0.0005_ffdims_16_hdims32_hlayer3_nerf_sine_l1_reg1e-05_enc_scale1.4
    (+ _rate_lambda<x> for a rate-aware fit)."""
    head = f"{flags['dataset']}_{flags['downscaling_factor']}x_epochs{flags['epochs']}_lr{_num(flags['lr'])}"
    # Beyond the paper (overfitINR.py --rate_lambda): rate-aware fits get their own folder; the
    # paper's names are unchanged.
    rate = f"_rate_lambda{_num(flags['rate_lambda'])}" if flags.get("rate_lambda") else ""
    return f"{head}_{architecture_suffix(flags)}{rate}"


MAML_SUBFOLDER = "maml"


def maml_init_name(flags: dict[str, Any]) -> str:
    """Folder name (under <exp_root>/maml/) of a meta-learned initialization (trainMetaSiren.py), e.g.
    MAML_DIV2K_1x_batch_size1_epochs1_outer_lr5e-05_inner_lr1e-05_lr_type_per_parameter_per_step_adapt_steps3
    _ffdims_16_hdims32_hlayer3_nerf_sine_enc_scale1.4 (one line; no l1_reg part)."""
    head = (f"MAML_{flags['maml_dataset']}_{flags['downscaling_factor']}x_batch_size{flags['maml_batch_size']}"
            f"_epochs{flags['maml_epochs']}_outer_lr{_num(flags['outer_lr'])}_inner_lr{_num(flags['inner_lr'])}"
            f"_lr_type_{flags['lr_type']}_adapt_steps{flags['maml_adaptation_steps']}")
    return f"{head}_{architecture_suffix(flags, with_l1=False)}"


def maml_init_folder(flags: dict[str, Any]) -> Path:
    """<exp_root>/maml/<maml_init_name>: where trainMetaSiren.py writes and overfitMetaSiren.py reads."""
    return Path(flags["exp_root"]) / MAML_SUBFOLDER / maml_init_name(flags)


def maml_experiment_name(flags: dict[str, Any]) -> str:
    """Folder name of an overfitMetaSiren experiment (fitting from a meta-learned init), e.g.
    KODAK_1x_maml_batch_size1_epochs25000_lr0.0005_outer_lr5e-05_inner_lr1e-05_lr_type_per_parameter_per_step
    _maml_epochs30_adapt_steps3_ffdims_16_hdims32_hlayer3_nerf_sine_l1_reg1e-05_enc_scale1.4 (one line).
    As in the paper the name does not hold maml_dataset."""
    head = (f"{flags['dataset']}_{flags['downscaling_factor']}x_maml_batch_size{flags['maml_batch_size']}"
            f"_epochs{flags['epochs']}_lr{_num(flags['lr'])}_outer_lr{_num(flags['outer_lr'])}"
            f"_inner_lr{_num(flags['inner_lr'])}_lr_type_{flags['lr_type']}_maml_epochs{flags['maml_epochs']}"
            f"_adapt_steps{flags['maml_adaptation_steps']}")
    return f"{head}_{architecture_suffix(flags)}"


def shape_experiment_name(flags: dict[str, Any]) -> str:
    """Folder name of an overfitINR3D experiment (no downscaling part)."""
    return f"{flags['dataset']}_epochs{flags['epochs']}_lr{_num(flags['lr'])}_{architecture_suffix(flags)}"


def model_config_from_flags(flags: dict[str, Any], in_features: int, out_features: int) -> ModelConfig:
    """The architecture recorded in a flag dictionary (a script's flags or a FLAGS.yml)."""
    missing = [k for k in ("encoding", "activation", "hidden_dims", "hidden_layers", "ff_dims", "encoding_scale")
               if k not in flags]
    if missing:
        raise InrError(f"flags lack the architecture keys {missing}")
    ff_dims = flags["ff_dims"]
    if ff_dims is None:
        raise InrError("ff_dims is not set; pass --ff_dims (the same value the model was trained with)")
    return ModelConfig(
        in_features=in_features,
        out_features=out_features,
        encoding=flags["encoding"],
        activation=flags["activation"],
        hidden_dims=int(flags["hidden_dims"]),
        hidden_layers=int(flags["hidden_layers"]),
        ff_dims=int(ff_dims),
        encoding_scale=float(flags["encoding_scale"]),
        gauss_seed=int(flags.get("seed", 0) or 0),
    )


def train_config_from_flags(flags: dict[str, Any], **overrides) -> TrainConfig:
    """The fitting settings in a script's flag dictionary; keys the script does not have keep defaults."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: flags[k] for k in names if k in flags}
    values.update(overrides)
    return TrainConfig(**values)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see either the old or the complete new content, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_ready(value: Any) -> Any:
    """value with every non-finite float (inf, -inf, NaN) as None, numpy / torch scalars as Python
    numbers and tuples as lists: what json.dumps turns into valid JSON (it has no Infinity or NaN)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # a numpy or torch scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write data as indented JSON, atomically; a non-finite float is written as null (never the
    Infinity / NaN that json.dumps would emit and JSON parsers refuse). Returns the path."""
    path = Path(path)
    atomic_write_text(path, json.dumps(json_ready(data), indent=2, allow_nan=False))
    return path


def save_flags(path: str | os.PathLike, flags: dict[str, Any]) -> None:
    """Write FLAGS.yml (the paper's name): the script's own flags, plain YAML."""
    atomic_write_text(path, yaml.safe_dump(dict(sorted(flags.items())), sort_keys=True))


def load_flags(path: str | os.PathLike, known: set[str] | None = None) -> dict[str, Any]:
    """Read a FLAGS.yml. With `known`, a key outside it is an error rather than silently ignored."""
    path = Path(path)
    if not path.is_file():
        raise InrError(f"missing {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise InrError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InrError(f"{path} does not hold a mapping of flags")
    if known is not None:
        unknown = sorted(set(data) - known)
        if unknown:
            raise InrError(f"{path} has unknown keys {unknown}")
    return data
