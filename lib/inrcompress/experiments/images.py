"""Fitting INRs to a folder of images: the experiment folder, per-image runs and results.

Layout (the paper's): <exp_root>/<experiment name>/FLAGS.yml, result.json (all images in the
folder), and per image <stem>/checkpoints/, <stem>/summaries/ (TensorBoard), <stem>/result.json,
<stem>/reconstruction.png.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inrcompress.fit import distributed
from inrcompress.fit.batched import fit_many
from inrcompress.config import ModelConfig, TrainConfig, basic_experiment_name
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import (
    from_landscape,
    image_to_values,
    list_images,
    load_image,
    values_to_uint8,
    values_to_unit,
)
from inrcompress.errors import InrError
from inrcompress.evaluate.metrics import image_metrics
from inrcompress.experiments.quantize import fill
from inrcompress.experiments.runs import (
    RESULT_FILE,
    aggregate_fits,
    batch_groups,
    start_experiment,
    train_config_for,
    unfinished,
    usable_device,
    write_run_result,
)
from inrcompress.nn import INR, count_parameters, predict
from inrcompress.fit.engine import resume_epoch
from inrcompress.fit.train import fit

METRIC_KEYS = ("mse", "psnr", "ssim", "ms_ssim")


@dataclass
class ImageSignal:
    """One image as a coordinate signal: coords (H*W, 2) in [-1, 1], values (H*W, C) in [-1, 1].

    rotated: `image` is a portrait original turned to landscape (data.to_landscape, the policy of
    meta-learned models); metrics and pictures are then reported in the original orientation.
    """

    name: str
    image: np.ndarray  # uint8 (H, W, C), what the network is fitted to
    coords: torch.Tensor
    values: torch.Tensor
    rotated: bool = False

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


def evaluate(model: INR, signal: ImageSignal) -> tuple[dict, np.ndarray]:
    """Float metrics of the fit (prediction clipped to [0, 1], as the paper) and the 8-bit picture,
    both in the original orientation of the image."""
    pred = predict(model, signal.coords)
    target = from_landscape(signal.image, signal.rotated).astype(np.float64) / 255.0
    unit = from_landscape(values_to_unit(pred, signal.height, signal.width), signal.rotated)
    metrics = image_metrics(unit, target)
    return metrics, from_landscape(values_to_uint8(pred, signal.height, signal.width), signal.rotated)


def _summary_writer_callback(signal: ImageSignal):
    def on_summary(writer, step, model):
        metrics, picture = evaluate(model, signal)
        side_by_side = np.concatenate([from_landscape(signal.image, signal.rotated), picture], axis=1)
        writer.add_image("train_gt_vs_pred", side_by_side, step, dataformats="HWC")
        writer.add_scalar("train_img_psnr", metrics["psnr"], step)
        if metrics["ssim"] is not None:  # None: the image is smaller than SSIM's window
            writer.add_scalar("train_img_ssim", metrics["ssim"], step)
    return on_summary


def fit_image(signal: ImageSignal, model_cfg: ModelConfig, train_cfg: TrainConfig, run_dir: Path | None,
              device: torch.device, *, model: INR | None = None, reference_params=None,
              step_hook=None, show_progress: bool = True, extra: dict | None = None, terms=()) -> dict:
    """Fit one image (resuming from run_dir's checkpoint), write its result.json and reconstruction.

    model: a starting network (a MAML init); None = a fresh one seeded with train_cfg.seed.
    extra: more entries for the result (e.g. the metrics after MAML's inner steps).
    terms: more parameter terms of the loss (e.g. codec.rate.RateTerm).
    Returns the per-image result: metrics, diverged flag, steps, timings.
    """
    if model is None:
        torch.manual_seed(train_cfg.seed)
        model = INR(model_cfg)
    model = model.to(device)
    started = time.perf_counter()
    outcome = fit(model, signal.coords, signal.values, train_cfg, run_dir, reference_params=reference_params,
                  loss_name="img_loss", on_summary=_summary_writer_callback(signal),
                  progress_desc=signal.name, step_hook=step_hook, show_progress=show_progress, terms=terms)
    return finish_image(signal, model, outcome, time.perf_counter() - started, run_dir, extra)


def finish_image(signal: ImageSignal, model: INR, outcome, seconds: float, run_dir: Path | None,
                 extra: dict | None = None) -> dict:
    """Measure a fitted image and write its result.json and reconstruction.png. seconds: the wall
    time of its fit (for images fitted together, the group's: each step advanced all of them)."""
    metrics, picture = evaluate(model, signal)
    steps_done = outcome.epochs_run - (outcome.resumed_from or 0)
    result = {**metrics, "height": picture.shape[0], "width": picture.shape[1],
              "parameters": count_parameters(model),
              "epochs_run": outcome.epochs_run, "best_epoch": outcome.best_epoch,
              "stopped_early": outcome.stopped_early, "diverged": outcome.diverged,
              "resumed_from": outcome.resumed_from, "fit_seconds": seconds,
              "steps_per_second": steps_done / seconds if seconds > 0 else None, **(extra or {})}
    if run_dir is not None:
        write_run_result(run_dir, result, picture)
    return result


def fit_images_batched(signals: list[ImageSignal], model_cfg: ModelConfig, train_cfg: TrainConfig,
                       run_dirs: list[Path | None], device: torch.device, *, models: list[INR] | None = None,
                       reference_params: list[dict] | None = None, extras: list[dict] | None = None,
                       step_hook=None, show_progress: bool = True, terms=()) -> list[dict]:
    """Fit images of one size together (batched.fit_many) with the same per-image outputs as
    fit_image. models: starting networks (MAML-adapted ones); None = the init fit_image would give
    each image (seed train_cfg.seed). reference_params / extras: per image, as in fit_image. terms:
    more parameter terms of the loss, each over the N images at once (e.g. codec.rate.RateTerm)."""
    if models is None:
        models = []
        for _ in signals:
            torch.manual_seed(train_cfg.seed)
            models.append(INR(model_cfg).to(device))
    started = time.perf_counter()
    outcomes = fit_many(models, signals[0].coords, [s.values for s in signals], train_cfg, run_dirs,
                        reference_params=reference_params, loss_name="img_loss",
                        on_summary=[_summary_writer_callback(s) for s in signals],
                        progress_desc=f"{len(signals)} images", step_hook=step_hook, show_progress=show_progress,
                        grid_shape=(signals[0].height, signals[0].width), terms=terms)
    seconds = time.perf_counter() - started
    extras = extras or [None] * len(signals)
    return [finish_image(s, m, o, seconds, d, e)
            for s, m, o, d, e in zip(signals, models, outcomes, run_dirs, extras)]


AUTO_CPU_BATCH_IMAGES = 24


def batch_images_for(flag_values: dict, device: torch.device) -> int:
    """--batch_images, with 0 (auto) resolved from measurements (benchmarks/RESULTS.md, section 2):
    on a CPU batches of up to 24 same-size images were 1.8-2.5x faster than one by one; on a GPU
    only the previous batched code was measured, and it was slower, so there it stays one by one."""
    requested = int(flag_values.get("batch_images", 0))
    if requested >= 1:
        return requested
    return AUTO_CPU_BATCH_IMAGES if device.type == "cpu" else 1


def fit_groups(signals: list[ImageSignal], run_dirs: list[Path], batch_images: int) -> list[list[int]]:
    """The groups of images to fit together (each a list of indices): images of one size that resume
    at the same epoch (0: fresh); one per image without batching."""
    if batch_images <= 1:
        return [[i] for i in range(len(signals))]
    return batch_groups([(s.image.shape, resume_epoch(d)) for s, d in zip(signals, run_dirs)], batch_images)


def check_images(images: list[Path], downscaling_factor: int) -> None:
    """Read every image before any work starts, so a bad file stops the run at once."""
    stems = [p.stem for p in images]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise InrError(f"several images share the name(s) {clashes}; their experiment folders would collide")
    for path in images:
        load_image(path, downscaling_factor)


def run_overfit(flag_values: dict, *, step_hook=None, show_progress: bool = True) -> Path:
    """overfitINR.py: fit every image of data_root/dataset; returns the experiment folder. Under
    torchrun each rank fits its share of the unfinished images (fit/distributed.py)."""
    device = usable_device(distributed.join(flag_values["device"]))
    step_hook, show_progress = distributed.with_test_kill(step_hook), show_progress and distributed.is_main()
    images = list_images(Path(flag_values["data_root"]) / flag_values["dataset"])
    check_images(images, flag_values["downscaling_factor"])
    exp_dir = start_experiment(Path(flag_values["exp_root"]) / basic_experiment_name(flag_values), flag_values,
                               len(images), "images", device)
    to_fit = set(unfinished(exp_dir, [p.stem for p in images]))
    pending = distributed.share([p for p in images if p.stem in to_fit])
    batch_images = batch_images_for(flag_values, device)
    signals = None
    if batch_images <= 1:
        groups = [[i] for i in range(len(pending))]
    else:  # grouping needs every image's size: load them all once, here
        signals = [image_signal(p, flag_values["downscaling_factor"], device) for p in pending]
        groups = fit_groups(signals, [exp_dir / p.stem for p in pending], batch_images)
    for group in groups:
        group_signals = ([signals[i] for i in group] if signals is not None else
                         [image_signal(pending[group[0]], flag_values["downscaling_factor"], device)])
        first = group_signals[0]
        model_cfg = model_config_for(flag_values, first.channels)
        train_cfg = train_config_for(flag_values, first.coords.shape[0] * len(group))
        run_dirs = [exp_dir / pending[i].stem for i in group]
        terms = rate_terms(flag_values.get("rate_lambda", 0.0), model_cfg, first.height * first.width)
        if len(group) == 1:
            results = [fit_image(first, model_cfg, train_cfg, run_dirs[0], device, step_hook=step_hook,
                                 show_progress=show_progress, terms=terms)]
        else:
            results = fit_images_batched(group_signals, model_cfg, train_cfg, run_dirs, device, step_hook=step_hook,
                                         show_progress=show_progress, terms=terms)
        for signal, result in zip(group_signals, results):
            report_fit(signal.name, result, len(group))
    distributed.barrier()
    if distributed.is_main():
        finish_experiment(exp_dir)
    return exp_dir


# The bit width the rate term of overfitINR.py --rate_lambda estimates the weights at: the fit does
# not know the later quantize_and_test.py --bitwidth; 8 is the one rd_beyond.py's rate fits used.
RATE_FIT_BITWIDTH = 8


def rate_terms(rate_lambda: float, model_cfg: ModelConfig, pixels: int) -> list:
    """The fit's extra loss terms for --rate_lambda (none at 0, the paper's loss): a fresh term
    per fit (it keeps the steps it last computed)."""
    if not rate_lambda:
        return []
    from inrcompress.codec.rate import RateTerm

    return [RateTerm.for_model(rate_lambda, model_cfg, pixels, RATE_FIT_BITWIDTH)]


def report_fit(name: str, result: dict, group_size: int = 1, prefix: str = "") -> None:
    """The line printed for a fitted image; prefix goes before its PSNR (e.g. the inner-step PSNR).
    Images fitted together share each step: the line gives the steps per second and, for the group,
    the image-steps per second (group_size x that)."""
    rate = result["steps_per_second"]
    at_once = ""
    if group_size > 1:
        at_once = fill(", {n} images at once ({total:.1f} image-steps/s)",
                       {"n": group_size, "total": None if rate is None else group_size * rate})
    resumed = f", resumed at epoch {result['resumed_from']}" if result.get("resumed_from") else ""
    note = "  DIVERGED (best state kept)" if result["diverged"] else ""
    print(fill("{name}: {height}x{width}{prefix} PSNR {psnr:.2f} dB, SSIM {ssim:.4f}, MS-SSIM {ms_ssim:.4f}, "
               "{epochs_run} epochs{resumed}, {rate:.1f} steps/s{at_once}{note}",
               {**result, "name": name, "prefix": prefix, "rate": rate, "resumed": resumed, "at_once": at_once,
                "note": note}))
    if result.get("note"):
        print(f"  note: {result['note']}")


def finish_experiment(exp_dir: Path) -> dict:
    """Write and print the experiment's result.json over all its images."""
    summary = aggregate_fits(exp_dir, METRIC_KEYS, "num_images")
    print(f"{summary['num_images']} images: mean PSNR {summary['avg_psnr']:.2f} dB -> {exp_dir / RESULT_FILE}")
    return summary


def model_config_for(flag_values: dict, channels: int) -> ModelConfig:
    from inrcompress.config import model_config_from_flags

    return model_config_from_flags(flag_values, in_features=2, out_features=channels)
