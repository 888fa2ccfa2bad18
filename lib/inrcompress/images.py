"""Fitting INRs to a folder of images: the experiment folder, per-image runs and results.

Layout (the paper's): <exp_root>/<experiment name>/FLAGS.yml, result.json (all images in the
folder), and per image <stem>/checkpoints/, <stem>/summaries/ (TensorBoard), <stem>/result.json,
<stem>/reconstruction.png.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import ModelConfig, TrainConfig, atomic_write_text, basic_experiment_name, save_flags
from .data import coordinate_grid, image_to_values, list_images, load_image, save_png, values_to_uint8, values_to_unit
from .errors import InrError
from .metrics import image_metrics
from .nn import INR, count_parameters
from .train import CHECKPOINT_DIR, COMPILE_MIN_POINTS, FINAL_FILE, fit, resolve_device

RESULT_FILE = "result.json"
METRIC_KEYS = ("mse", "psnr", "ssim", "ms_ssim")


@dataclass
class ImageSignal:
    """One image as a coordinate signal: coords (H*W, 2) in [-1, 1], values (H*W, C) in [-1, 1]."""

    name: str
    image: np.ndarray  # uint8 (H, W, C), what the network is fitted to
    coords: torch.Tensor
    values: torch.Tensor

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]

    @property
    def channels(self) -> int:
        return self.image.shape[2]


def image_signal(path: Path, downscaling_factor: int, device: torch.device) -> ImageSignal:
    image = load_image(path, downscaling_factor)
    coords = coordinate_grid(image.shape[:2]).to(device)
    return ImageSignal(path.stem, image, coords, image_to_values(image).to(device))


@torch.no_grad()
def predict(model: INR, coords: torch.Tensor, chunk_rows: int = 65536) -> torch.Tensor:
    """The network's output at coords, in chunks so that big images need little memory."""
    parts = [model(coords[s:s + chunk_rows]) for s in range(0, coords.shape[0], chunk_rows)]
    return torch.cat(parts, dim=0)


def evaluate(model: INR, signal: ImageSignal) -> tuple[dict, np.ndarray]:
    """Float metrics of the fit (prediction clipped to [0, 1], as the paper) and the 8-bit picture."""
    pred = predict(model, signal.coords)
    target = signal.image.astype(np.float64) / 255.0
    metrics = image_metrics(values_to_unit(pred, signal.height, signal.width), target)
    return metrics, values_to_uint8(pred, signal.height, signal.width)


def _summary_writer_callback(signal: ImageSignal):
    def on_summary(writer, step, model):
        metrics, picture = evaluate(model, signal)
        side_by_side = np.concatenate([signal.image, picture], axis=1)
        writer.add_image("train_gt_vs_pred", side_by_side, step, dataformats="HWC")
        writer.add_scalar("train_img_psnr", metrics["psnr"], step)
        writer.add_scalar("train_img_ssim", metrics["ssim"], step)
    return on_summary


def fit_image(signal: ImageSignal, model_cfg: ModelConfig, train_cfg: TrainConfig, run_dir: Path | None,
              device: torch.device, *, model: INR | None = None, reference_params=None,
              step_hook=None, show_progress: bool = True) -> dict:
    """Fit one image (resuming from run_dir's checkpoint), write its result.json and reconstruction.

    model: a starting network (a MAML init); None = a fresh one seeded with train_cfg.seed.
    Returns the per-image result: metrics, diverged flag, steps, timings.
    """
    if model is None:
        torch.manual_seed(train_cfg.seed)
        model = INR(model_cfg)
    model = model.to(device)
    started = time.perf_counter()
    outcome = fit(model, signal.coords, signal.values, train_cfg, run_dir, reference_params=reference_params,
                  loss_name="img_loss", on_summary=_summary_writer_callback(signal),
                  progress_desc=signal.name, step_hook=step_hook, show_progress=show_progress)
    seconds = time.perf_counter() - started
    metrics, picture = evaluate(model, signal)
    steps_done = outcome.epochs_run - (outcome.resumed_from or 0)
    result = {**metrics, "height": signal.height, "width": signal.width, "parameters": count_parameters(model),
              "epochs_run": outcome.epochs_run, "best_epoch": outcome.best_epoch,
              "stopped_early": outcome.stopped_early, "diverged": outcome.diverged,
              "resumed_from": outcome.resumed_from, "fit_seconds": seconds,
              "steps_per_second": steps_done / seconds if seconds > 0 else None}
    if run_dir is not None:
        save_png(run_dir / "reconstruction.png", picture)
        atomic_write_text(run_dir / RESULT_FILE, json.dumps(result, indent=2))
    return result


def check_images(images: list[Path], downscaling_factor: int) -> None:
    """Read every image before any work starts, so a bad file stops the run at once."""
    stems = [p.stem for p in images]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise InrError(f"several images share the name(s) {clashes}; their experiment folders would collide")
    for path in images:
        load_image(path, downscaling_factor)


def is_finished(run_dir: Path) -> bool:
    return (run_dir / CHECKPOINT_DIR / FINAL_FILE).is_file() and (run_dir / RESULT_FILE).is_file()


def aggregate_results(exp_dir: Path) -> dict:
    """result.json of an experiment: every image folder's metrics and their means (not only the
    images fitted in this invocation; the paper's code averaged only those)."""
    per_image = {}
    for path in sorted(exp_dir.glob(f"*/{RESULT_FILE}")):
        try:
            per_image[path.parent.name] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            warnings.warn(f"skipping unreadable {path}")
    summary: dict = {key: {name: r.get(key) for name, r in per_image.items()} for key in METRIC_KEYS}
    for key in METRIC_KEYS:
        finite = [v for v in summary[key].values() if isinstance(v, (int, float)) and math.isfinite(v)]
        summary[f"avg_{key}"] = float(np.mean(finite)) if finite else None
    summary["num_images"] = len(per_image)
    summary["diverged"] = sorted(name for name, r in per_image.items() if r.get("diverged"))
    atomic_write_text(exp_dir / RESULT_FILE, json.dumps(summary, indent=2))
    return summary


def run_overfit(flag_values: dict, *, step_hook=None, show_progress: bool = True) -> Path:
    """overfitINR.py: fit every image of data_root/dataset; returns the experiment folder."""
    device = resolve_device(flag_values["device"])
    images = list_images(Path(flag_values["data_root"]) / flag_values["dataset"])
    check_images(images, flag_values["downscaling_factor"])
    exp_dir = Path(flag_values["exp_root"]) / basic_experiment_name(flag_values)
    exp_dir.mkdir(parents=True, exist_ok=True)
    save_flags(exp_dir / "FLAGS.yml", flag_values)
    print(f"experiment: {exp_dir} ({len(images)} images, device {device})")
    for path in images:
        run_dir = exp_dir / path.stem
        if is_finished(run_dir):
            print(f"{path.stem}: already fitted, skipped")
            continue
        signal = image_signal(path, flag_values["downscaling_factor"], device)
        model_cfg = model_config_for(flag_values, signal.channels)
        train_cfg = train_config_for(flag_values, signal.coords.shape[0])
        result = fit_image(signal, model_cfg, train_cfg, run_dir, device, step_hook=step_hook,
                           show_progress=show_progress)
        note = "  DIVERGED (best state kept)" if result["diverged"] else ""
        print(f"{path.stem}: {signal.height}x{signal.width} PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f}, "
              f"MS-SSIM {result['ms_ssim']:.4f}, {result['epochs_run']} epochs, "
              f"{result['steps_per_second']:.1f} steps/s{note}")
    summary = aggregate_results(exp_dir)
    print(f"{summary['num_images']} images: mean PSNR {summary['avg_psnr']:.2f} dB -> {exp_dir / RESULT_FILE}")
    return exp_dir


def model_config_for(flag_values: dict, channels: int) -> ModelConfig:
    from .config import model_config_from_flags

    return model_config_from_flags(flag_values, in_features=2, out_features=channels)


def train_config_for(flag_values: dict, num_points: int) -> TrainConfig:
    """TrainConfig from the flags; --compile auto turns compilation on for big signals."""
    from .config import train_config_from_flags

    mode = flag_values.get("compile", "off")
    use_compile = mode == "on" or (mode == "auto" and num_points >= COMPILE_MIN_POINTS)
    return train_config_from_flags(flag_values, compile=use_compile)
