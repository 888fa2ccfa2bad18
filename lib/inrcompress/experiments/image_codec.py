"""Compressing fitted image experiments (quantize_and_test.py) and single images (encode.py).

The image side of the experiment layer's quantize loop (quantize.py): ImageCodec loads a fitted
image, codes it and measures a file. Per image, in <exp>/<image>/: compressed_{code}_{cfg}.inr (the
file) and metrics_{code}_{cfg}.yml (measured on the decoder's 8-bit output of that file). Per
experiment: results_{code}_{cfg}.json in CompressAI's layout ({"name", "description", "results":
{"bpp", "psnr-rgb", "ms-ssim-rgb", ...}, "per_image"}). bpp = 8 x file bytes / pixels (header
included); bpp_payload counts only the coded weights and the step sizes, as the paper's numbers did.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import torch

from inrcompress.codec.compress import QuantConfig, decode_image
from inrcompress.config import model_config_from_flags
from inrcompress.errors import InrError
from inrcompress.evaluate.metrics import image_metrics
from inrcompress.experiments.quantize import FittedSignal, encode_signals, quantize_experiments
from inrcompress.fit.meta import MAML_INIT_FILE
from inrcompress.fit.engine import BEST_FILE, CHECKPOINT_DIR, load_checkpoint
from inrcompress.nn import INR
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import IMAGE_SUFFIXES, image_to_values, load_image, to_landscape



# Images quantized together by default on a CPU (benchmarks/encode_speed.py, RESULTS.md).
AUTO_CPU_BATCH_IMAGES = 12


def measure_decoded(data: bytes, original: np.ndarray, reference=None) -> dict:
    """Decode .inr bytes and measure them against the original uint8 image: bpp and quality."""
    started = time.perf_counter()
    _, decoded = decode_image(data, reference, limits=None)  # a file this process just wrote
    decode_seconds = time.perf_counter() - started
    if decoded.shape != original.shape:
        raise InrError(f"decoded image is {decoded.shape}, the original {original.shape}")
    metrics = image_metrics(decoded.astype(np.float64) / 255.0, original.astype(np.float64) / 255.0)
    pixels = original.shape[0] * original.shape[1]
    return {**metrics, "bytes": len(data), "bpp": 8 * len(data) / pixels, "decode_seconds": decode_seconds}


def compress_image_model(model: INR, image: np.ndarray, qcfg: QuantConfig, *, rotated: bool = False,
                         reference=None, seed: int = 0, progress: bool = False) -> tuple[bytes, dict]:
    """Quantize and code a network fitted to `image` (uint8, as fitted: landscape if rotated), on the
    model's device. Returns the file bytes and the size breakdown plus encode time."""
    return compress_image_models([model], [image], qcfg, rotated=[rotated], reference=reference, seed=seed,
                                 progress=progress)[0]


def compress_image_models(models: list[INR], images: list[np.ndarray], qcfg: QuantConfig, *,
                          rotated: list[bool], reference=None, seed: int = 0,
                          progress: bool = False) -> list[tuple[bytes, dict]]:
    """compress_image_model for networks of one architecture fitted to images of one size, quantized
    together (encode_signals)."""
    height, width = images[0].shape[:2]
    coded = encode_signals(models, coordinate_grid((height, width)), [image_to_values(im) for im in images], qcfg,
                           seed=seed, progress=progress, modality="image", height=height, width=width,
                           rotated=rotated, reference=reference)
    for _, info in coded:
        info["bpp_payload"] = 8 * info["paper_bytes"] / (height * width)
    return coded


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


class ImageCodec:
    """quantize.SignalCodec of the images of one experiment: originals from data_root/dataset at the
    experiment's downscaling factor; a meta-learned experiment (with model_maml.pth) codes the residual
    to that init, and its portrait images as fitted (turned to landscape)."""

    modality = "image"
    result_keys = {"bpp": "bpp", "bpp_payload": "bpp_payload", "psnr-rgb": "psnr", "ms-ssim-rgb": "ms_ssim",
                   "ssim": "ssim", "encoding_time": "encode_seconds", "decoding_time": "decode_seconds",
                   "decoder_mac_per_pixel": "decoder_macs_per_point"}
    per_signal_keys = ("bpp", "bpp_payload", "bytes", "psnr", "ssim", "ms_ssim", "encode_seconds", "decode_seconds",
                       "decoder_macs_per_point", "coded_together")
    quantization_progress = False  # many small images: one bar over them
    auto_batch = AUTO_CPU_BATCH_IMAGES
    description = ("inrcompress, {setting}, {code} coding; {count} images; "
                   "bpp from the .inr file sizes, metrics on the decoded 8-bit images, averaged per image")
    signal_report = "{bytes} bytes ({bpp:.4f} bpp), PSNR {psnr:.2f} dB, MS-SSIM {ms_ssim:.4f}"
    experiment_report = ("{bpp:.4f} bpp ({bpp_payload:.4f} payload only), PSNR {psnr-rgb:.2f} dB, "
                         "MS-SSIM {ms-ssim-rgb:.4f}")

    def __init__(self, exp_dir: Path, train_flags: dict, flag_values: dict):
        self.train_flags = train_flags
        self.originals = Path(flag_values["data_root"]) / flag_values["dataset"]
        self.downscaling = int(train_flags.get("downscaling_factor", 1))
        self.reference = load_reference(exp_dir)

    def load(self, run_dir: Path) -> FittedSignal:
        original = load_image(find_source_image(self.originals, run_dir.name), self.downscaling)
        # The orientation policy of meta-learned models.
        fitted, rotated = to_landscape(original) if self.reference is not None else (original, False)
        model = INR(model_config_from_flags(self.train_flags, in_features=2, out_features=fitted.shape[2]))
        model.load_state_dict(load_checkpoint(run_dir / CHECKPOINT_DIR / BEST_FILE))
        return FittedSignal(run_dir.name, model, (original, fitted, rotated),
                            {"height": original.shape[0], "width": original.shape[1]})

    def batch_key(self, signal: FittedSignal) -> tuple[int, ...]:
        return signal.source[1].shape  # the image as fitted

    def encode(self, signals: list[FittedSignal], qcfg: QuantConfig, *, seed: int,
               progress: bool) -> list[tuple[bytes, dict]]:
        return compress_image_models([s.model for s in signals], [s.source[1] for s in signals], qcfg,
                                     rotated=[s.source[2] for s in signals], reference=self.reference, seed=seed,
                                     progress=progress)

    def measure(self, data: bytes, signal: FittedSignal) -> tuple[dict, None]:
        return measure_decoded(data, signal.source[0], self.reference), None


def run_quantize_and_test(flag_values: dict, progress: bool = True) -> list[dict]:
    """quantize_and_test.py: compress every fitted image of every experiment matching exp_glob."""
    return quantize_experiments(flag_values, ImageCodec, progress)


def jpeg_at_size(image: np.ndarray, max_bytes: int) -> dict:
    """The largest JPEG (Pillow, 4:2:0, quality 1..95) not larger than max_bytes, for a like-for-like
    comparison printed beside our result: {"fits": True, quality, bytes, bpp, psnr}. When even
    the smallest is larger: {"fits": False} with the smallest one's numbers."""
    from PIL import Image

    from inrcompress.evaluate.metrics import psnr

    picture = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    encoded = {}
    for quality in range(1, 96):  # JPEG size is not monotone in quality everywhere: try them all
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=quality)
        encoded[quality] = buffer.getvalue()
    fitting = [q for q, data in encoded.items() if len(data) <= max_bytes]
    if fitting:
        quality = max(fitting, key=lambda q: (len(encoded[q]), q))
    else:
        quality = min(encoded, key=lambda q: (len(encoded[q]), -q))
    data = encoded[quality]
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert(picture.mode)).reshape(image.shape)
    return {"fits": bool(fitting), "quality": quality, "bytes": len(data),
            "bpp": 8 * len(data) / (image.shape[0] * image.shape[1]), "psnr": psnr(decoded / 255.0, image / 255.0)}
