"""Compressing fitted shape experiments (quantize_and_test3D.py) and decoding shape files (decode_shape.py).

The shape side of the experiment layer's quantize loop (quantize.py): ShapeCodec loads a fitted shape's
network and samples, codes it (modality "shape" of the .inr format: no height/width, in_features 3,
one channel) and measures a file. Per shape, in
<exp>/<shape>/: compressed_{code}_{cfg}.inr (the file), metrics_{code}_{cfg}.yml and a preview
compressed_{code}_{cfg}.png, all measured on the network decoded from the file as it lies on disk.
bits_per_vertex = 8 x file bytes / vertices of the original mesh (the paper reported bytes only).
Per experiment: results_{code}_{cfg}.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from inrcompress.codec.compress import QuantConfig, decode_network
from inrcompress.codec.container import DecodeLimits
from inrcompress.errors import InrError
from inrcompress.experiments.quantize import FittedSignal, encode_signals, quantize_experiments
from inrcompress.experiments.runs import RESULT_FILE
from inrcompress.experiments.shape_fit import preview_picture, shape_model_config
from inrcompress.fit.engine import BEST_FILE, CHECKPOINT_DIR, load_checkpoint
from inrcompress.nn import INR
from inrcompress.signals.shape import SAMPLES_FILE, ShapeSamples, cached_samples, list_shapes
from inrcompress.signals.shape_eval import CHAMFER_CONVENTION, evaluate_shape

# The metrics-file keys of a shape kept per shape in results_{code}_{cfg}.json and averaged there.
SHAPE_RESULT_KEYS = ("bytes", "bits_per_vertex", "vol_iou", "chamfer", "mse", "encode_seconds", "decode_seconds")


def decode_shape(data: bytes, limits: DecodeLimits | None = DecodeLimits()) -> tuple:
    """(header, network) of a shape .inr file; an image file is refused, and one beyond `limits`
    (None: the format's bounds only, for a file this process wrote)."""
    header, model = decode_network(data, limits=limits)
    if header.modality != "shape":
        raise InrError(f"this .inr file holds an {header.modality}, not a shape (decode it with "
                       "image_compression/decode.py)")
    return header, model


def measure_decoded_shape(data: bytes, samples: ShapeSamples, resolution: int, seed: int = 0) -> tuple[dict, object]:
    """Decode .inr bytes and measure the network against the shape: IoU, Chamfer, MSE, size."""
    started = time.perf_counter()
    _, model = decode_shape(data, limits=None)  # a file this process just wrote
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


class ShapeCodec:
    """quantize.SignalCodec of the shapes of one experiment: the SDF samples each shape was fitted to
    (shape_samples); metrics measured with the fit's seed, so they compare with its result.json."""

    modality = "shape"
    result_keys = {key: key for key in SHAPE_RESULT_KEYS}
    per_signal_keys = SHAPE_RESULT_KEYS
    quantization_progress = True  # one shape takes minutes: show quantize_model's bars
    auto_batch = 1  # hundreds of thousands of samples a shape: batching not measured faster
    description = ("inrcompress 3D shapes, {setting}, {code} coding; {count} shapes; bytes from the .inr files, "
                   "metrics of the decoded networks, averaged per shape; Chamfer: " + CHAMFER_CONVENTION)
    signal_report = "{bytes} bytes ({bits_per_vertex:.3f} bits/vertex), IoU {vol_iou:.2f} %, Chamfer {chamfer:.3g}"
    experiment_report = "means: {bytes:.0f} bytes, IoU {vol_iou:.2f} %, Chamfer {chamfer:.3g} -> {results_file}"

    def __init__(self, exp_dir: Path, train_flags: dict, flag_values: dict):
        self.train_flags = train_flags
        self.data_root, self.dataset = Path(flag_values["data_root"]), flag_values["dataset"]
        self.resolution = int(flag_values["mc_resolution"])
        self.seed = int(train_flags.get("seed", 0) or 0)

    def load(self, run_dir: Path) -> FittedSignal:
        samples = shape_samples(run_dir, self.train_flags, self.data_root, self.dataset)
        model = INR(shape_model_config(self.train_flags))
        model.load_state_dict(load_checkpoint(run_dir / CHECKPOINT_DIR / BEST_FILE))
        return FittedSignal(run_dir.name, model, samples, {"chamfer_convention": CHAMFER_CONVENTION})

    def batch_key(self, signal: FittedSignal) -> int:
        return len(signal.source.sdf)  # shapes with as many samples can be quantized together

    def encode(self, signals: list[FittedSignal], qcfg: QuantConfig, *, seed: int,
               progress: bool) -> list[tuple[bytes, dict]]:
        return encode_signals([s.model for s in signals], [torch.from_numpy(s.source.points) for s in signals],
                              [torch.from_numpy(s.source.sdf[:, None]) for s in signals], qcfg, seed=seed,
                              progress=progress, modality="shape")

    def measure(self, data: bytes, signal: FittedSignal) -> tuple[dict, np.ndarray]:
        measured, surface = measure_decoded_shape(data, signal.source, self.resolution, self.seed)
        return measured, preview_picture(surface)


def run_quantize_and_test3d(flag_values: dict, progress: bool = True) -> list[dict]:
    """quantize_and_test3D.py: compress every fitted shape of every experiment matching exp_glob."""
    return quantize_experiments(flag_values, ShapeCodec, progress)
