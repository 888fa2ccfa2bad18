"""Compressing fitted image experiments (quantize_and_test.py) and single images (encode.py).

Per image, in <exp>/<image>/: compressed_{code}_{cfg}.inr (the file) and metrics_{code}_{cfg}.yml
(measured on the decoder's 8-bit output of that file). Per experiment: results_{code}_{cfg}.json in
CompressAI's layout ({"name", "description", "results": {"bpp", "psnr-rgb", "ms-ssim-rgb", ...}}).
bpp = 8 x file bytes / pixels (header included); bpp_payload counts only the coded weights and the
step sizes, as the paper's numbers did.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from inrcompress.codec.compress import QuantConfig, compress_network, decode_image
from inrcompress.config import atomic_write_bytes, atomic_write_text, load_flags, model_config_from_flags
from inrcompress.signals.image import IMAGE_SUFFIXES, coordinate_grid, image_to_values, load_image, to_landscape
from inrcompress.errors import InrError
from inrcompress.evaluate.metrics import image_metrics
from inrcompress.nn import INR
from inrcompress.fit.train import BEST_FILE, CHECKPOINT_DIR, load_checkpoint

MAML_INIT_FILE = "model_maml.pth"


def measure_decoded(data: bytes, original: np.ndarray, reference=None) -> dict:
    """Decode .inr bytes and measure them against the original uint8 image: bpp and quality."""
    started = time.perf_counter()
    _, decoded = decode_image(data, reference)
    decode_seconds = time.perf_counter() - started
    if decoded.shape != original.shape:
        raise InrError(f"decoded image is {decoded.shape}, the original {original.shape}")
    metrics = image_metrics(decoded.astype(np.float64) / 255.0, original.astype(np.float64) / 255.0)
    pixels = original.shape[0] * original.shape[1]
    return {**metrics, "bytes": len(data), "bpp": 8 * len(data) / pixels, "decode_seconds": decode_seconds}


def compress_image_model(model: INR, image: np.ndarray, qcfg: QuantConfig, *, rotated: bool = False,
                         reference=None, seed: int = 0, progress: bool = False) -> tuple[bytes, dict]:
    """Quantize and code a network fitted to `image` (uint8, as fitted: landscape if rotated).
    Returns the file bytes and the size breakdown plus encode time."""
    device = next(model.parameters()).device
    coords = coordinate_grid(image.shape[:2]).to(device)
    values = image_to_values(image).to(device)
    started = time.perf_counter()
    data, sizes = compress_network(model, coords, values, qcfg, modality="image", height=image.shape[0],
                                   width=image.shape[1], rotated=rotated, reference=reference, seed=seed,
                                   progress=progress)
    pixels = image.shape[0] * image.shape[1]
    info = {"encode_seconds": time.perf_counter() - started, "payload_bytes": sizes.payload_bytes,
            "step_size_bytes": sizes.step_size_bytes, "container_bytes": sizes.container_bytes,
            "coding_model": sizes.coding_model,
            "bpp_payload": 8 * (sizes.payload_bytes + sizes.step_size_bytes) / pixels}
    return data, info


def find_source_image(folder: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    raise InrError(f"no original image {stem}.png/.jpg in {folder}")


def load_reference(exp_dir: Path) -> dict[str, torch.Tensor] | None:
    """The meta-learned init an experiment was fitted from (its model_maml.pth), if any."""
    path = exp_dir / MAML_INIT_FILE
    return load_checkpoint(path) if path.is_file() else None


def experiment_folders(exp_root: Path, pattern: str, modality: str | None = None) -> list[Path]:
    """Experiment folders (holding a FLAGS.yml) under exp_root matching the glob; with `modality`
    ("image" or "shape") only those of that kind (shape experiments have samples_per_shape)."""
    if not exp_root.is_dir():
        raise InrError(f"experiment root not found: {exp_root}")
    folders = sorted(p for p in exp_root.glob(pattern) if (p / "FLAGS.yml").is_file())
    if modality is not None:
        folders = [p for p in folders
                   if ("samples_per_shape" in load_flags(p / "FLAGS.yml")) == (modality == "shape")]
    if not folders:
        kind = f"{modality} " if modality else ""
        raise InrError(f"no {kind}experiment folder (with a FLAGS.yml) matches {exp_root / pattern}")
    return folders


def fitted_images(exp_dir: Path) -> list[Path]:
    return sorted(p for p in exp_dir.iterdir() if (p / CHECKPOINT_DIR / BEST_FILE).is_file())


def quantize_experiment(exp_dir: Path, data_root: Path, dataset: str, qcfg: QuantConfig, quant_flags: dict, *,
                        skip_existing: bool, progress: bool = True) -> dict:
    """Compress every fitted image of one experiment; returns the experiment's results JSON."""
    from tqdm.auto import tqdm

    train_flags = load_flags(exp_dir / "FLAGS.yml")
    reference = load_reference(exp_dir)
    downscaling = int(train_flags.get("downscaling_factor", 1))
    rotate = reference is not None  # the orientation policy of meta-learned models
    images = fitted_images(exp_dir)
    if not images:
        raise InrError(f"{exp_dir} holds no fitted image (no */checkpoints/{BEST_FILE})")
    tag = f"{qcfg.code}_{qcfg.tag}"
    for run_dir in tqdm(images, desc=exp_dir.name[:40], unit="image", disable=not progress, leave=False):
        metrics_path = run_dir / f"metrics_{tag}.yml"
        if skip_existing and metrics_path.is_file():
            continue
        original = load_image(find_source_image(data_root / dataset, run_dir.name), downscaling)
        fitted, rotated = to_landscape(original) if rotate else (original, False)
        state = load_checkpoint(run_dir / CHECKPOINT_DIR / BEST_FILE)
        model = INR(model_config_from_flags(train_flags, in_features=2, out_features=fitted.shape[2]))
        model.load_state_dict(state)
        data, info = compress_image_model(model, fitted, qcfg, rotated=rotated, reference=reference,
                                          seed=int(train_flags.get("seed", 0) or 0), progress=False)
        inr_path = run_dir / f"compressed_{tag}.inr"
        atomic_write_bytes(inr_path, data)
        # The numbers come from the file as it lies on disk, decoded from scratch.
        measured = measure_decoded(inr_path.read_bytes(), original, reference)
        record = {**measured, **info, "file": inr_path.name, "height": original.shape[0],
                  "width": original.shape[1], **{f"train_{k}": v for k, v in train_flags.items()},
                  **quant_flags}
        atomic_write_text(metrics_path, yaml.safe_dump(_plain(record), sort_keys=True))
    return aggregate_experiment(exp_dir, qcfg)


def _plain(record: dict) -> dict:
    return {k: (float(v) if isinstance(v, (np.floating,)) else v) for k, v in record.items()}


def aggregate_experiment(exp_dir: Path, qcfg: QuantConfig) -> dict:
    """results_{code}_{cfg}.json over every image of the experiment with a metrics file."""
    tag = f"{qcfg.code}_{qcfg.tag}"
    per_image = {}
    for path in sorted(exp_dir.glob(f"*/metrics_{tag}.yml")):
        per_image[path.parent.name] = yaml.safe_load(path.read_text())

    def mean(key):
        vals = [r[key] for r in per_image.values() if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return float(np.mean(vals)) if vals else None

    summary = {
        "name": exp_dir.name,
        "description": f"inrcompress, {qcfg.tag}, {qcfg.code} coding; {len(per_image)} images; "
                       "bpp from the .inr file sizes, metrics on the decoded 8-bit images, averaged per image",
        "results": {"bpp": mean("bpp"), "bpp_payload": mean("bpp_payload"), "psnr-rgb": mean("psnr"),
                    "ms-ssim-rgb": mean("ms_ssim"), "ssim": mean("ssim"), "encoding_time": mean("encode_seconds"),
                    "decoding_time": mean("decode_seconds")},
        "per_image": {name: {k: r.get(k) for k in ("bpp", "bpp_payload", "bytes", "psnr", "ssim", "ms_ssim",
                                                    "encode_seconds", "decode_seconds")}
                      for name, r in per_image.items()},
    }
    atomic_write_text(exp_dir / f"results_{tag}.json", json.dumps(summary, indent=2))
    return summary


def run_quantize_and_test(flag_values: dict, progress: bool = True) -> list[dict]:
    """quantize_and_test.py: compress every fitted image of every experiment matching exp_glob."""
    from tqdm.auto import tqdm

    qcfg = QuantConfig.from_flags(flag_values)
    folders = experiment_folders(Path(flag_values["exp_root"]), flag_values["exp_glob"], modality="image")
    quant_keys = ("bitwidth", "adaround", "adaround_iterations", "adaround_reg", "retrain", "retrain_epochs",
                  "retrain_lr", "code")
    quant_flags = {k: flag_values[k] for k in quant_keys}
    summaries = []
    for exp_dir in tqdm(folders, desc="experiments", unit="exp", disable=not progress):
        summary = quantize_experiment(exp_dir, Path(flag_values["data_root"]), flag_values["dataset"], qcfg,
                                      quant_flags, skip_existing=flag_values["skip_existing"], progress=progress)
        r = summary["results"]
        print(f"{exp_dir.name}: {len(summary['per_image'])} images, {r['bpp']:.4f} bpp "
              f"({r['bpp_payload']:.4f} payload only), PSNR {r['psnr-rgb']:.2f} dB, MS-SSIM {r['ms-ssim-rgb']:.4f}")
        summaries.append(summary)
    return summaries


def jpeg_at_size(image: np.ndarray, max_bytes: int) -> dict:
    """The best JPEG (Pillow, 4:2:0, quality 1..95) that is not larger than max_bytes; the smallest if
    none fits. For a like-for-like comparison printed beside our result."""
    from PIL import Image

    from inrcompress.evaluate.metrics import psnr

    picture = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    best = None
    for quality in range(1, 96):
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=quality)
        size = buffer.tell()
        if best is not None and size > max_bytes:
            break
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert(picture.mode))
        decoded = decoded.reshape(image.shape)
        best = {"quality": quality, "bytes": size, "bpp": 8 * size / (image.shape[0] * image.shape[1]),
                "psnr": psnr(decoded / 255.0, image / 255.0)}
    return best
