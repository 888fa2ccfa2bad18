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
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from inrcompress.codec.compress import QuantConfig, decode_image
from inrcompress.codec.container import InrHeader, encode_inr
from inrcompress.codec.representations import representation_of
from inrcompress.config import model_config_from_flags
from inrcompress.errors import InrError
from inrcompress.evaluate.metrics import image_metrics, psnr
from inrcompress.experiments.quantize import FittedSignal, encode_signals, quantize_experiments
from inrcompress.fit.meta import MAML_INIT_FILE
from inrcompress.fit.engine import BEST_FILE, CHECKPOINT_DIR, load_checkpoint
from inrcompress.nn import INR
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import IMAGE_SUFFIXES, from_landscape, image_to_values, load_image, to_landscape



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


# --------------------------------------------------------------------------------------------------
# Encoding to a target rate or quality (beyond the paper: encode.py --target_bpp / --target_psnr)

# A file lands within this relative distance of a --target_bpp.
TARGET_TOLERANCE = 0.03
# Step scales the target search tries: 1 (the bit width's MSE-optimal steps) .. 2^MAX_LOG2_SCALE.
MAX_LOG2_SCALE = 8.0
BISECTION_STEPS = 14
# Bit widths the search tries below the configured one (their own step grids: at the same rate a
# lower bit width's clipped MSE-optimal steps beat a coarser scale of a higher one, measured on
# kodim23 at 1/4 size, width 32: 7 bit scale 1 1.304 bpp 32.23 dB, 8 bit scale 2 1.303 bpp 32.07 dB).
TARGET_BITWIDTHS_BELOW = 2
# Final encodes (AdaRound and QAT move roundings, so the file's size can differ a little from the
# nearest-rounding candidate's): after the first, this many corrections of the candidate's goal.
TARGET_CORRECTIONS = 2


def smallest_file_bytes(model_or_config, height: int, width: int, qcfg: QuantConfig, *, meta: bool = False) -> int:
    """Bytes of the smallest file of this architecture and image size: every parameter zero (the
    header, the step sizes, with meta the hash of the meta-learned initialization, and an empty
    payload), the floor no step scale goes below."""
    representation = representation_of(model_or_config)
    header = InrHeader(modality="image", height=height, width=width, rotated=False, representation=representation,
                       bitwidth=qcfg.bitwidth, coder=qcfg.code,
                       step_sizes=tuple(1.0 for _ in representation.tensor_specs()),
                       init_hash=bytes(32) if meta else b"")
    zero = 1 << (qcfg.bitwidth - 1)
    symbols = [np.full(int(np.prod(spec.shape)), zero, dtype=np.int64) for spec in representation.tensor_specs()]
    return len(encode_inr(header, symbols)[0])


def check_rate_target(qcfg: QuantConfig, model_or_config, height: int, width: int, *, meta: bool = False) -> None:
    """Refuse, before any fitting, a --target_bpp below the smallest file of the architecture (with
    meta: of a file coded against a meta-learned initialization)."""
    if qcfg.target_bpp is None:
        return
    floor = smallest_file_bytes(model_or_config, height, width, qcfg, meta=meta)
    floor_bpp = 8 * floor / (height * width)
    if qcfg.target_bpp * (1 + TARGET_TOLERANCE) < floor_bpp:
        raise InrError(f"--target_bpp {qcfg.target_bpp} is below the smallest file this architecture can write for a "
                       f"{width}x{height} image ({floor} bytes of header and step sizes: {floor_bpp:.4f} bpp)")


# The architecture per rate of --target_bpp without --hidden_dims: the width whose file at this many
# bits per parameter (header and step sizes aside) matches the target. On 1/4-size Kodak the
# paper's pipeline at 7 bits, where its curve is best (benchmarks/RESULTS.md section 3), codes
# 5.8 bits per parameter (width 16: 0.4586 bpp, 1,939 parameters, 24,576 pixels).
TARGET_BITS_PER_PARAMETER = 5.8
TARGET_WIDTHS = (8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128)


def width_for_rate(target_bpp: float, height: int, width: int, model_cfg, qcfg: QuantConfig) -> int:
    """The hidden width (of TARGET_WIDTHS; the other architecture fields of model_cfg kept) whose
    parameters at TARGET_BITS_PER_PARAMETER fill the target's bits beyond the smallest file."""
    from dataclasses import replace as replace_config

    best, best_miss = TARGET_WIDTHS[0], math.inf
    for hidden in TARGET_WIDTHS:
        cfg = replace_config(model_cfg, hidden_dims=hidden)
        budget = target_bpp * height * width - 8 * smallest_file_bytes(cfg, height, width, qcfg)
        parameters = sum(int(np.prod(spec.shape)) for spec in representation_of(cfg).tensor_specs())
        if budget <= 0:
            continue
        miss = abs(math.log(parameters * TARGET_BITS_PER_PARAMETER / budget))
        if miss < best_miss:
            best, best_miss = hidden, miss
    return best


@dataclass(frozen=True)
class TargetSignal:
    """What every encode of one target search codes: the network, the image as fitted (landscape
    if rotated), its orientation and the meta-learned init its residual is coded against (or None)."""

    model: INR
    image: np.ndarray
    rotated: bool = False
    reference: dict | None = None

    @property
    def original(self) -> np.ndarray:
        return from_landscape(self.image, self.rotated)  # what a decoder returns


@dataclass
class Candidate:
    """One quantization tried by the target search: its settings, file and measurements."""

    qcfg: QuantConfig
    data: bytes
    info: dict
    signal: TargetSignal
    measured: dict = field(default_factory=dict)

    @property
    def psnr(self) -> float:
        """The PSNR (dB) of the decoded file, as measure_decoded computes it; decoded when first
        asked, since a bpp search needs only the sizes of most of its candidates."""
        if "psnr" not in self.measured:
            _, decoded = decode_image(self.data, self.signal.reference, limits=None)
            self.measured["psnr"] = psnr(decoded / 255.0, self.signal.original / 255.0)
        return self.measured["psnr"]


def _try(signal: TargetSignal, qcfg: QuantConfig, seed: int, progress: bool = False,
         final: bool = False) -> Candidate:
    """Code the network with qcfg: a candidate of the search (its PSNR measured when asked), or
    with every metric of the decoded file for a final encode."""
    data, info = compress_image_model(signal.model, signal.image, qcfg, rotated=signal.rotated,
                                      reference=signal.reference, seed=seed, progress=progress)
    measured = measure_decoded(data, signal.original, signal.reference) if final else {}
    return Candidate(qcfg, data, info, signal, measured)


def _bisect_scale(signal: TargetSignal, qcfg: QuantConfig, seed: int, holds, holds_at_large: bool) -> Candidate | None:
    """The candidate (nearest rounding at qcfg's bit width) at the boundary of `holds` over step
    scales [1, 2^MAX_LOG2_SCALE], bisected on log2(scale): holds_at_large (a file size limit) gives
    the smallest scale that holds (the largest file within the limit), else (a quality floor) the
    largest scale that holds. None when no scale holds; the end of the range when all do."""
    quick = replace(qcfg, adaround=False, retrain=False)
    ends = {0.0: _try(signal, replace(quick, step_scale=1.0), seed),
            MAX_LOG2_SCALE: _try(signal, replace(quick, step_scale=2.0 ** MAX_LOG2_SCALE), seed)}
    inside, outside = (MAX_LOG2_SCALE, 0.0) if holds_at_large else (0.0, MAX_LOG2_SCALE)
    if not holds(ends[inside]):
        return None
    if holds(ends[outside]):
        return ends[outside]
    best = ends[inside]
    for _ in range(BISECTION_STEPS):
        mid = (inside + outside) / 2
        candidate = _try(signal, replace(quick, step_scale=float(np.float32(2.0 ** mid))), seed)
        if holds(candidate):
            inside, best = mid, candidate
        else:
            outside = mid
    return best


def encode_to_target(model: INR, image: np.ndarray, qcfg: QuantConfig, *, rotated: bool = False,
                     reference=None, seed: int = 0, progress: bool = False) -> tuple[bytes, dict, dict]:
    """Quantize and code a fitted image network to qcfg's target size or quality (target_bpp or
    target_psnr; the rest of qcfg is the pipeline of every encode).

    The search: for qcfg's bit width and the TARGET_BITWIDTHS_BELOW below it, a bisection on the
    step scale with nearest rounding (cheap: no AdaRound, no QAT) measures real files: for a bpp
    target the largest scale whose file is not larger than the target, for a PSNR target the largest
    whose decoded PSNR reaches it. It keeps the bit width whose candidate is best (highest PSNR, or
    smallest file), then encodes with qcfg's full pipeline (AdaRound, QAT) at that scale and measures
    the file; when that misses a bpp target by more than TARGET_TOLERANCE (or a PSNR target at all),
    the candidate's goal is corrected by the miss and the final encode repeated (TARGET_CORRECTIONS
    times at most). Returns the file bytes, its size record and what was chosen:
    {bitwidth, step_scale, bpp, psnr, target_bpp | target_psnr, tries}."""
    if not qcfg.has_target:
        raise InrError("encode_to_target needs a target_bpp or a target_psnr")
    height, width = image.shape[:2]
    check_rate_target(qcfg, model, height, width, meta=reference is not None)
    signal = TargetSignal(model, image, rotated, reference)
    target_bpp, target_psnr = qcfg.target_bpp, qcfg.target_psnr
    sized = target_bpp is not None
    qcfg = replace(qcfg, target_bpp=None, target_psnr=None)  # the settings of each encode
    bitwidths = [b for b in range(qcfg.bitwidth, qcfg.bitwidth - TARGET_BITWIDTHS_BELOW - 1, -1) if b >= 2]
    target_bytes = target_bpp * height * width / 8 if sized else None
    goal = target_bytes if sized else target_psnr  # what the candidates aim at; corrected after a miss
    for tries in range(1, TARGET_CORRECTIONS + 2):
        if sized:
            holds, better = (lambda c, limit=goal: len(c.data) <= limit), (lambda c: c.psnr)
        else:
            holds, better = (lambda c, limit=goal: c.psnr >= limit), (lambda c: -len(c.data))
        found = [c for c in (_bisect_scale(signal, replace(qcfg, bitwidth=b), seed, holds, holds_at_large=sized)
                             for b in bitwidths) if c is not None]
        _check_found(found, qcfg, target_bpp, target_psnr, goal, signal, seed)
        chosen = max(found, key=better)
        final = _try(signal, replace(qcfg, bitwidth=chosen.qcfg.bitwidth, step_scale=chosen.qcfg.step_scale),
                     seed, progress, final=True)
        if sized and abs(len(final.data) / target_bytes - 1) <= TARGET_TOLERANCE:
            break
        if not sized and final.psnr >= target_psnr:
            break
        # the candidate size (or PSNR) that the final encode turns into the target's
        goal = goal * len(chosen.data) / len(final.data) if sized else goal + target_psnr - final.psnr + 0.05
    else:
        reached = f"{final.measured['bpp']:.4f} bpp" if sized else f"{final.psnr:.2f} dB"
        raise InrError(f"the target search ended at {reached} after {tries} final encodes: outside the target")
    record = {"bitwidth": final.qcfg.bitwidth, "step_scale": final.qcfg.step_scale, "bpp": final.measured["bpp"],
              "psnr": final.psnr, "tries": tries}
    record.update({"target_bpp": target_bpp} if sized else {"target_psnr": target_psnr})
    return final.data, final.info, record


def _check_found(found: list[Candidate], qcfg: QuantConfig, target_bpp, target_psnr, goal, signal: TargetSignal,
                 seed: int) -> None:
    """Refuse a target no candidate of the search can meet (one line: what bounds it)."""
    pixels = signal.image.shape[0] * signal.image.shape[1]
    if not found and target_bpp is not None:
        raise InrError(f"--target_bpp {target_bpp}: even the coarsest steps give a larger file; lower --hidden_dims "
                       "or raise the target")
    if not found:
        top = _try(signal, replace(qcfg, adaround=False, retrain=False), seed).psnr
        raise InrError(f"--target_psnr {target_psnr}: this network reaches {top:.2f} dB at {qcfg.bitwidth} bits "
                       "(nearest rounding); fit longer or wider (--epochs, --hidden_dims)")
    if target_bpp is not None and all(len(c.data) < goal * (1 - TARGET_TOLERANCE) for c in found):
        largest = max(len(c.data) for c in found)
        raise InrError(f"--target_bpp {target_bpp} is above the largest file of this network at {qcfg.bitwidth} bits "
                       f"({8 * largest / pixels:.4f} bpp): raise --bitwidth or --hidden_dims")


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
        if qcfg.has_target:  # a search per image (its chosen settings go into its metrics file)
            coded = []
            for s in signals:
                data, info, chosen = encode_to_target(s.model, s.source[1], qcfg, rotated=s.source[2],
                                                      reference=self.reference, seed=seed, progress=progress)
                coded.append((data, {**info, **{f"chose_{k}": v for k, v in chosen.items()}}))
            return coded
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
