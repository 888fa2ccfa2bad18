"""The experiment layer every modality shares: experiment and run folders, their checks, results.

An experiment is a folder <exp_root>/<name>/ with the fit's FLAGS.yml and one run folder per signal
(an image, a shape), <name>/<signal>/, holding checkpoints/ (fit.train's files), result.json (the
fit's metrics) and reconstruction.png. The experiment's result.json covers every run folder, not
only the signals fitted by the last invocation: each metric per signal, its mean over the signals
where it is finite, and the list of diverged signals. Every JSON file is written by
config.write_json, so a non-finite number is null (valid JSON), never Infinity or NaN.

A modality supplies only what is its own: loading and fitting its signals, its metrics and pictures
(images.py, shape_fit.py) and, for compression, a SignalCodec for quantize.py's loop.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import yaml

from inrcompress.config import TrainConfig, load_flags, save_flags, train_config_from_flags, write_json
from inrcompress.errors import InrError
from inrcompress.fit.engine import BEST_FILE, CHECKPOINT_DIR, FINAL_FILE, resolve_device
from inrcompress.fit.steps import COMPILE_MIN_POINTS
from inrcompress.signals.image import save_png

FLAGS_FILE = "FLAGS.yml"
RESULT_FILE = "result.json"
RECONSTRUCTION_PICTURE = "reconstruction.png"

# How an experiment's FLAGS.yml shows its modality: a flag that only that modality's fitting tool
# defines (folders written by the paper's scripts carry no other mark). An experiment with none of
# these flags is of DEFAULT_MODALITY. A new modality adds its flag here.
MODALITY_FLAGS = {"shape": "samples_per_shape"}
DEFAULT_MODALITY = "image"


def experiment_modality(flags: dict) -> str:
    """The modality ("image", "shape") of an experiment whose FLAGS.yml holds `flags`."""
    return next((name for name, flag in MODALITY_FLAGS.items() if flag in flags), DEFAULT_MODALITY)


def usable_device(name: str) -> torch.device:
    """--device resolved (auto: cuda when available); a device this machine lacks (cuda without a
    GPU, an ordinal past the last GPU) is a one-line InrError here, before any work starts."""
    device = resolve_device(name)
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as e:  # torch built without CUDA raises AssertionError
        raise InrError(f"device {name} cannot be used here: {(str(e).splitlines() or [type(e).__name__])[0]}") from None
    return device


def is_fitted(run_dir: Path) -> bool:
    """A run folder with a best state to compress (a fit may still be running or resumable)."""
    return (run_dir / CHECKPOINT_DIR / BEST_FILE).is_file()


def is_finished(run_dir: Path) -> bool:
    """A run folder whose fit ran to its end and wrote its result."""
    return (run_dir / CHECKPOINT_DIR / FINAL_FILE).is_file() and (run_dir / RESULT_FILE).is_file()


def fitted_runs(exp_dir: Path) -> list[Path]:
    """The run folders of an experiment that hold a best state, sorted by name."""
    return sorted(p for p in exp_dir.iterdir() if is_fitted(p))


def experiment_folders(exp_root: Path, pattern: str, modality: str | None = None) -> list[Path]:
    """Experiment folders (holding a FLAGS.yml) under exp_root matching the glob `pattern`; with
    `modality` only those of that modality (experiment_modality). None found is an error."""
    if not exp_root.is_dir():
        raise InrError(f"experiment root not found: {exp_root}")
    folders = sorted(p for p in exp_root.glob(pattern) if (p / FLAGS_FILE).is_file())
    if modality is not None:
        folders = [p for p in folders if experiment_modality(load_flags(p / FLAGS_FILE)) == modality]
    if not folders:
        kind = f"{modality} " if modality else ""
        raise InrError(f"no {kind}experiment folder (with a {FLAGS_FILE}) matches {exp_root / pattern}")
    return folders


def start_experiment(exp_dir: Path, flag_values: dict, signals: int, plural: str, device: torch.device) -> Path:
    """Create the experiment folder, write its FLAGS.yml and print the experiment line."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    save_flags(exp_dir / FLAGS_FILE, flag_values)
    print(f"experiment: {exp_dir} ({signals} {plural}, device {device})")
    return exp_dir


def unfinished(exp_dir: Path, names: Iterable[str]) -> list[str]:
    """The signal names whose run folder is not finished; a line is printed for each one skipped."""
    pending = []
    for name in names:
        if is_finished(exp_dir / name):
            print(f"{name}: already fitted, skipped")
        else:
            pending.append(name)
    return pending


def batch_groups(keys: list, batch: int) -> list[list[int]]:
    """Indices of the signals to fit together: those of equal key (e.g. size and resume point), in
    chunks of at most `batch`, in index order; one group per signal when batch <= 1."""
    if batch <= 1:
        return [[i] for i in range(len(keys))]
    groups: dict = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return sorted(members[i:i + batch] for members in groups.values() for i in range(0, len(members), batch))


def train_config_for(flag_values: dict, num_points: int) -> TrainConfig:
    """TrainConfig from the flags; --compile auto turns compilation on when a step covers at least
    COMPILE_MIN_POINTS points (num_points: the points of one step, over every signal fitted at once)."""
    mode = flag_values.get("compile", "off")
    use_compile = mode == "on" or (mode == "auto" and num_points >= COMPILE_MIN_POINTS)
    return train_config_from_flags(flag_values, compile=use_compile)


def write_run_result(run_dir: Path, result: dict, picture: np.ndarray | None = None) -> None:
    """A fitted signal's reconstruction.png (uint8 (H, W, C)) and then its result.json (the file
    is_finished looks for, so it comes last)."""
    if picture is not None:
        save_png(run_dir / RECONSTRUCTION_PICTURE, picture)
    write_json(run_dir / RESULT_FILE, result)


def finite_mean(values: Iterable) -> float | None:
    """Mean of the finite numbers among values (None, inf, NaN and non-numbers are left out);
    None when there is none."""
    usable = [float(v) for v in values
              if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return float(np.mean(usable)) if usable else None


def read_run_records(exp_dir: Path, file_name: str, parse: Callable[[str], dict] = json.loads) -> dict[str, dict]:
    """{run folder name: parsed <run>/<file_name>} over every run folder of the experiment that has
    one, sorted by name; an unreadable file is skipped with a warning."""
    records = {}
    for path in sorted(exp_dir.glob(f"*/{file_name}")):
        try:
            record = parse(path.read_text())
        except (OSError, ValueError, yaml.YAMLError) as e:  # json.JSONDecodeError is a ValueError
            warnings.warn(f"skipping unreadable {path}: {(str(e).splitlines() or [type(e).__name__])[0]}")
            continue
        if isinstance(record, dict):
            records[path.parent.name] = record
        else:
            warnings.warn(f"skipping {path}: it does not hold a mapping")
    return records


def aggregate_fits(exp_dir: Path, metric_keys: Iterable[str], count_key: str, extra: dict | None = None) -> dict:
    """Write and return the experiment's result.json over every run folder's result.json:
    {metric: {signal: value}, "avg_<metric>": mean of the finite values (None if none),
    count_key: number of signals, "diverged": sorted names, **extra}."""
    records = read_run_records(exp_dir, RESULT_FILE)
    summary: dict = {count_key: len(records), **(extra or {}),
                     "diverged": sorted(name for name, r in records.items() if r.get("diverged"))}
    for key in metric_keys:
        column = {name: r.get(key) for name, r in records.items()}
        summary[key] = column
        summary[f"avg_{key}"] = finite_mean(column.values())
    write_json(exp_dir / RESULT_FILE, summary)
    return summary
