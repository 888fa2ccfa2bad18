"""Compressing fitted shape experiments (quantize_and_test3D.py) and decoding shape files (decode_shape.py).

The image pipeline's quantization (quant.quantize_model via compress.compress_network), entropy
coding and .inr format (modality "shape": no height/width, in_features 3, one channel). Per shape, in
<exp>/<shape>/: compressed_{code}_{cfg}.inr (the file), metrics_{code}_{cfg}.yml and a preview
compressed_{code}_{cfg}.png, all measured on the network decoded from the file as it lies on disk.
bits_per_vertex = 8 x file bytes / vertices of the original mesh (the paper reported bytes only).
Per experiment: results_{code}_{cfg}.json.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from inrcompress.codec.compress import QuantConfig, compress_network, decode_network
from inrcompress.config import atomic_write_bytes, atomic_write_text, load_flags
from inrcompress.signals.image import save_png
from inrcompress.errors import InrError
from inrcompress.experiments.image_codec import experiment_folders, fitted_images
from inrcompress.nn import INR
from inrcompress.signals.shape_eval import CHAMFER_CONVENTION, evaluate_shape
from inrcompress.experiments.shape_fit import RESULT_FILE, preview_picture, shape_model_config
from inrcompress.signals.shape import SAMPLES_FILE, ShapeSamples, cached_samples, list_shapes
from inrcompress.fit.train import BEST_FILE, CHECKPOINT_DIR, load_checkpoint, resolve_device

QUANT_KEYS = ("bitwidth", "adaround", "adaround_iterations", "adaround_reg", "retrain", "retrain_epochs",
              "retrain_lr", "code")


def decode_shape(data: bytes) -> tuple:
    """(header, network) of a shape .inr file; an image file is refused."""
    header, model = decode_network(data)
    if header.modality != "shape":
        raise InrError(f"this .inr file holds an {header.modality}, not a shape (decode it with "
                       "image_compression/decode.py)")
    return header, model


def measure_decoded_shape(data: bytes, samples: ShapeSamples, resolution: int, seed: int = 0) -> tuple[dict, object]:
    """Decode .inr bytes and measure the network against the shape: IoU, Chamfer, MSE, size."""
    started = time.perf_counter()
    _, model = decode_shape(data)
    decode_seconds = time.perf_counter() - started
    metrics, surface = evaluate_shape(model, samples, resolution, seed=seed)
    vertices = samples.meta["mesh_vertices"]
    return {**metrics, "bytes": len(data), "bits_per_vertex": 8 * len(data) / vertices, "mesh_vertices": vertices,
            "decode_seconds": decode_seconds}, surface


def shape_samples(run_dir: Path, train_flags: dict, data_root: Path, dataset: str) -> ShapeSamples:
    """The samples a shape was fitted to: the fit's cache, else drawn again from the mesh found in
    data_root/dataset (or recorded in the shape's result.json)."""
    n, seed = int(train_flags["samples_per_shape"]), int(train_flags.get("seed", 0) or 0)
    if (run_dir / SAMPLES_FILE).is_file():
        try:
            return cached_samples(run_dir, None, n, seed)
        except InrError:
            pass
    try:
        mesh = dict(list_shapes(data_root, dataset)).get(run_dir.name)
    except InrError:
        mesh = None
    if mesh is None and (run_dir / RESULT_FILE).is_file():
        recorded = Path(json.loads((run_dir / RESULT_FILE).read_text()).get("mesh") or "")
        mesh = recorded if recorded.is_file() else None
    if mesh is None:
        raise InrError(f"{run_dir}: no cached samples and no mesh {run_dir.name} in {data_root / dataset}")
    return cached_samples(run_dir, mesh, n, seed)


def quantize_shape_experiment(exp_dir: Path, data_root: Path, dataset: str, qcfg: QuantConfig, quant_flags: dict, *,
                              skip_existing: bool, device: torch.device, resolution: int,
                              progress: bool = True) -> dict:
    """Compress every fitted shape of one experiment; returns the experiment's results JSON."""
    train_flags = load_flags(exp_dir / "FLAGS.yml")
    runs = fitted_images(exp_dir)
    if not runs:
        raise InrError(f"{exp_dir} holds no fitted shape (no */{CHECKPOINT_DIR}/{BEST_FILE})")
    tag = f"{qcfg.code}_{qcfg.tag}"
    seed = int(train_flags.get("seed", 0) or 0)
    for run_dir in runs:
        metrics_path = run_dir / f"metrics_{tag}.yml"
        if skip_existing and metrics_path.is_file():
            print(f"{exp_dir.name}/{run_dir.name}: {metrics_path.name} exists, skipped")
            continue
        samples = shape_samples(run_dir, train_flags, data_root, dataset)
        model = INR(shape_model_config(train_flags))
        model.load_state_dict(load_checkpoint(run_dir / CHECKPOINT_DIR / BEST_FILE))
        model = model.to(device)
        started = time.perf_counter()
        data, sizes = compress_network(model, torch.from_numpy(samples.points).to(device),
                                       torch.from_numpy(samples.sdf[:, None]).to(device), qcfg, modality="shape",
                                       seed=seed, progress=progress)
        encode_seconds = time.perf_counter() - started
        inr_path = run_dir / f"compressed_{tag}.inr"
        atomic_write_bytes(inr_path, data)
        # The numbers come from the file as it lies on disk, decoded from scratch.
        measured, surface = measure_decoded_shape(inr_path.read_bytes(), samples, resolution, seed)
        save_png(run_dir / f"compressed_{tag}.png", preview_picture(surface))
        record = {**measured, "file": inr_path.name, "encode_seconds": encode_seconds,
                  "payload_bytes": sizes.payload_bytes, "step_size_bytes": sizes.step_size_bytes,
                  "container_bytes": sizes.container_bytes, "paper_bytes": sizes.paper_bytes,
                  "coding_model": sizes.coding_model, "chamfer_convention": CHAMFER_CONVENTION,
                  **{f"train_{k}": v for k, v in train_flags.items()}, **quant_flags}
        record = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in record.items()}
        atomic_write_text(metrics_path, yaml.safe_dump(record, sort_keys=True))
        print(f"{exp_dir.name}/{run_dir.name}: {len(data)} bytes ({measured['bits_per_vertex']:.3f} bits/vertex), "
              f"IoU {measured['vol_iou']:.2f} %, Chamfer {measured['chamfer']:.3g} (decoded from {inr_path.name})")
    return summarize_shape_experiment(exp_dir, tag, qcfg)


def summarize_shape_experiment(exp_dir: Path, tag: str, qcfg: QuantConfig) -> dict:
    """results_{code}_{cfg}.json over every shape of the experiment with a metrics file."""
    records = {p.parent.name: yaml.safe_load(p.read_text()) for p in sorted(exp_dir.glob(f"*/metrics_{tag}.yml"))}
    keys = ("bytes", "bits_per_vertex", "vol_iou", "chamfer", "mse", "encode_seconds", "decode_seconds")

    def average(key):
        usable = [r[key] for r in records.values() if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return float(np.mean(usable)) if usable else None

    summary = {"name": exp_dir.name,
               "description": f"inrcompress 3D shapes, {qcfg.tag}, {qcfg.code} coding; {len(records)} shapes; "
                              "bytes from the .inr files, metrics of the decoded networks, averaged per shape; "
                              f"Chamfer: {CHAMFER_CONVENTION}",
               "results": {key: average(key) for key in keys},
               "per_shape": {name: {key: r.get(key) for key in keys} for name, r in records.items()}}
    atomic_write_text(exp_dir / f"results_{tag}.json", json.dumps(summary, indent=2))
    return summary


def _fmt(value, spec: str) -> str:
    """A mean that may be missing (no shape with a surface): formatted, or 'n/a'."""
    return "n/a" if value is None else format(value, spec)


def run_quantize_and_test3d(flag_values: dict, progress: bool = True) -> list[dict]:
    """quantize_and_test3D.py: compress every fitted shape of every experiment matching exp_glob."""
    qcfg = QuantConfig.from_flags(flag_values)
    device = resolve_device(flag_values["device"])
    folders = experiment_folders(Path(flag_values["exp_root"]), flag_values["exp_glob"], modality="shape")
    quant_flags = {k: flag_values[k] for k in QUANT_KEYS}
    tag = f"{qcfg.code}_{qcfg.tag}"
    summaries = []
    for exp_dir in folders:
        summary = quantize_shape_experiment(
            exp_dir, Path(flag_values["data_root"]), flag_values["dataset"], qcfg, quant_flags,
            skip_existing=flag_values["skip_existing"], device=device, resolution=flag_values["mc_resolution"],
            progress=progress)
        r = summary["results"]
        print(f"{exp_dir.name}: {len(summary['per_shape'])} shapes, means: {r['bytes']:.0f} bytes, "
              f"IoU {_fmt(r['vol_iou'], '.2f')} %, Chamfer {_fmt(r['chamfer'], '.3g')} -> results_{tag}.json")
        summaries.append(summary)
    return summaries
