"""Fitting INRs to the meshes of a dataset folder (overfitINR3D.py): experiment folders and results.

Layout (the paper's): <exp_root>/<shape experiment name>/FLAGS.yml, result.json (every shape of the
folder), and per shape <name>/checkpoints/, <name>/summaries/ (TensorBoard: sdf_loss every step;
vol_iou, chamfer_dist and a rendered preview every steps_til_summary steps), <name>/sdf_samples.npz
(the samples, so a resumed or re-evaluated run does not recompute them), <name>/result.json,
<name>/reconstruction.ply (marching cubes of the best state) and <name>/reconstruction.png.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from inrcompress.config import ModelConfig, TrainConfig, model_config_from_flags, shape_experiment_name
from inrcompress.errors import InrError
from inrcompress.experiments.runs import (
    RESULT_FILE,
    aggregate_fits,
    start_experiment,
    train_config_for,
    unfinished,
    usable_device,
    write_run_result,
)
from inrcompress.fit import distributed
from inrcompress.fit.train import fit
from inrcompress.nn import INR, count_parameters
from inrcompress.signals.shape import ShapeSamples, cached_samples, list_shapes, load_mesh, save_mesh
from inrcompress.signals.shape_eval import CHAMFER_CONVENTION, empty_preview, evaluate_shape, render_preview

RECONSTRUCTION_MESH = "reconstruction.ply"
SHAPE_METRICS = ("vol_iou", "chamfer", "mse")
# Marching-cubes resolution of the TensorBoard summaries during a fit (kept cheap).
SUMMARY_RESOLUTION = 64


def shape_model_config(flag_values: dict) -> ModelConfig:
    """The architecture of a shape network: (x, y, z) -> signed distance."""
    return model_config_from_flags(flag_values, in_features=3, out_features=1)


def preview_picture(surface) -> np.ndarray:
    return empty_preview() if surface is None else render_preview(*surface)


def _summary_callback(samples: ShapeSamples, resolution: int):
    def on_summary(writer, step, model):
        metrics, surface = evaluate_shape(model, samples, min(resolution, SUMMARY_RESOLUTION), with_mse=False)
        writer.add_scalar("vol_iou", metrics["vol_iou"], step)
        if math.isfinite(metrics["chamfer"]):
            writer.add_scalar("chamfer_dist", metrics["chamfer"], step)
        writer.add_image("reconstruction", preview_picture(surface), step, dataformats="HWC")
    return on_summary


def fit_shape(name: str, samples: ShapeSamples, model_cfg: ModelConfig, train_cfg: TrainConfig,
              run_dir: Path | None, device: torch.device, *, resolution: int = 128, step_hook=None,
              show_progress: bool = True) -> tuple[dict, INR]:
    """Fit one shape's SDF samples (resuming from run_dir's checkpoint); evaluate the best state and,
    with a run_dir, write its result.json, reconstruction mesh and picture. Returns (result, model)."""
    torch.manual_seed(train_cfg.seed)
    model = INR(model_cfg).to(device)
    coords = torch.from_numpy(samples.points).to(device)
    values = torch.from_numpy(samples.sdf[:, None]).to(device)
    started = time.perf_counter()
    outcome = fit(model, coords, values, train_cfg, run_dir, loss_name="sdf_loss",
                  on_summary=_summary_callback(samples, resolution), progress_desc=name, step_hook=step_hook,
                  show_progress=show_progress)
    seconds = time.perf_counter() - started
    metrics, surface = evaluate_shape(model, samples, resolution, seed=train_cfg.seed)
    history = {k: v for k, v in dataclasses.asdict(outcome).items() if k != "losses"}
    steps = (outcome.epochs_run - (outcome.resumed_from or 0)) * math.ceil(len(samples.sdf) / (
        train_cfg.batch_size or len(samples.sdf)))
    result = {**metrics, **history, "chamfer_convention": CHAMFER_CONVENTION, "mesh": samples.meta["mesh"],
              "mesh_vertices": samples.meta["mesh_vertices"], "sign_method": samples.meta["sign_method"],
              "samples": len(samples.sdf), "parameters": count_parameters(model), "fit_seconds": seconds,
              "seconds_per_step": seconds / steps if steps else None}
    if run_dir is not None:
        if surface is not None:
            save_mesh(run_dir / RECONSTRUCTION_MESH, *surface)
        write_run_result(run_dir, result, preview_picture(surface))
    return result, model


def aggregate_shape_results(exp_dir: Path) -> dict:
    """result.json of a shape experiment: every shape folder's metrics and their means."""
    return aggregate_fits(exp_dir, SHAPE_METRICS, "num_shapes", {"chamfer_convention": CHAMFER_CONVENTION})


def run_overfit3d(flag_values: dict, *, step_hook=None, show_progress: bool = True) -> Path:
    """overfitINR3D.py: fit every shape of data_root/dataset; returns the experiment folder. Under
    torchrun each rank fits its share of the unfinished shapes (fit/distributed.py)."""
    device = usable_device(distributed.join(flag_values["device"]))
    step_hook, show_progress = distributed.with_test_kill(step_hook), show_progress and distributed.is_main()
    shapes = list_shapes(flag_values["data_root"], flag_values["dataset"])
    for _, path in shapes:  # read every mesh before any work starts, so a bad file stops the run at once
        load_mesh(path)
    exp_dir = start_experiment(Path(flag_values["exp_root"]) / shape_experiment_name(flag_values), flag_values,
                               len(shapes), "shapes", device)
    model_cfg = shape_model_config(flag_values)
    train_cfg = train_config_for(flag_values, flag_values["batch_size"])
    pending = set(distributed.share(unfinished(exp_dir, [name for name, _ in shapes])))
    for name, path in shapes:
        if name not in pending:
            continue
        run_dir = exp_dir / name
        started = time.perf_counter()
        samples = cached_samples(run_dir, path, flag_values["samples_per_shape"], flag_values["seed"])
        if samples.meta["sign_method"] != "pseudonormal":
            print(f"{name}: the mesh is not watertight: the sign of the distance comes from the winding number")
        print(f"{name}: {len(samples.sdf)} SDF samples ready in {time.perf_counter() - started:.1f} s")
        result, _ = fit_shape(name, samples, model_cfg, train_cfg, run_dir, device,
                              resolution=flag_values["mc_resolution"], step_hook=step_hook,
                              show_progress=show_progress)
        note = "  DIVERGED (best state kept)" if result["diverged"] else ""
        print(f"{name}: IoU {result['vol_iou']:.2f} %, Chamfer {result['chamfer']:.3g}, MSE {result['mse']:.3g}, "
              f"{result['epochs_run']} epochs, {1000 * (result['seconds_per_step'] or 0):.1f} ms/step{note}")
    distributed.barrier()
    if not distributed.is_main():
        return exp_dir
    summary = aggregate_shape_results(exp_dir)
    if summary["avg_vol_iou"] is None:
        raise InrError(f"no shape of {exp_dir} has a result")
    chamfer = "n/a (no surface)" if summary["avg_chamfer"] is None else f"{summary['avg_chamfer']:.3g}"
    print(f"{summary['num_shapes']} shapes: mean IoU {summary['avg_vol_iou']:.2f} %, mean Chamfer {chamfer} "
          f"-> {exp_dir / RESULT_FILE}")
    return exp_dir
