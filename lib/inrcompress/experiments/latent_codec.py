"""Compressing one image with the latent-grid codec: fit (fit/latent.py), choose the parameters'
quantization steps by a rate-distortion search, code the file, decode it and measure.

Quantization of the network's own parameters (the synthesis's and the ARM's weights and biases):
nearest rounding (codec.quant.quantize) at power-of-two steps 2^-k, one step per group (the
synthesis's weights and biases, a LatentGridConv's convolution weights and biases and its upsampling
filters, the ARM's weights and biases: quant_groups, named "<part>.<kind>"), searched group by group
from INITIAL_EXPONENT, each exponent moved by one while that lowers (SEARCH_PASSES passes over the
groups)

    MSE on the [0, 1] scale (float synthesis, rounded latents) + rate_lambda x bpp,
    bpp = (the parameters' bits as the coder's models estimate them (codec.entropy.model_costs,
           the smallest) + the latents' ideal bits under the quantized fixed-point ARM) / pixels.

(The zeroth-order entropy of each tensor, 0.2 s cheaper per choice, underestimated the coded
parameters by 25-50 % on Kodak at 1/4 and so chose steps too fine.)

The ARM's steps must be powers of two no finer than 2^-WEIGHT_FRAC_BITS (the fixed-point ARM), so
its exponents stop there; the synthesis's could be any step, and powers of two are the search grid.
Symbols are coded at BITWIDTH bits (the header's one bit width; with steps this coarse the symbols'
range is far inside it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inrcompress.codec import entropy as coding
from inrcompress.codec import latent_coding
from inrcompress.codec.container import InrHeader, encode_inr
from inrcompress.codec.quant import QuantizedTensors, dequantize, load_quantized, quantize, symbols_from_integers
from inrcompress.codec.representations.latent import LatentGrid
from inrcompress.codec.representations.latent_module import LatentImageModel
from inrcompress.errors import InrError
from inrcompress.evaluate.metrics import psnr_from_mse
from inrcompress.experiments.image_codec import measure_decoded
from inrcompress.fit.engine import UNIT_MSE_PER_VALUES_MSE
from inrcompress.fit.latent import LatentSchedule, fit_latents
from inrcompress.signals.image import image_to_values

BITWIDTH = 16
CODER = "arithmetic"
SYNTHESIS_EXPONENTS = tuple(range(0, 15))
ARM_EXPONENTS = tuple(range(0, latent_coding.WEIGHT_FRAC_BITS + 1))
SEARCH_PASSES = 2
INITIAL_EXPONENT = 8


def _group_of(name: str) -> str:
    """"synthesis.0.weight" -> "synthesis.weight", "upsampling.taps" -> "upsampling.taps"."""
    parts = name.split(".")
    return f"{parts[0]}.{parts[-1]}"


def quant_groups(representation: LatentGrid) -> list[str]:
    """The step groups of a representation's declared tensors, in file order."""
    return list(dict.fromkeys(_group_of(spec.name) for spec in representation.tensor_specs()))


@dataclass
class QuantizedLatentModel:
    """The parameters' symbols and steps (declared-tensor order) and what the search measured."""

    exponents: dict[str, int]
    symbols: list[np.ndarray]
    steps: list[float]
    loss: float
    mse: float
    parameter_bits: float
    latent_bits: float


class _Evaluator:
    """Measures one choice of step exponents on a copy of the fitted module."""

    def __init__(self, model: LatentImageModel, target: torch.Tensor, rate_lambda: float):
        self.rep: LatentGrid = model.representation
        self.float_tensors = [t.detach().clone() for t in self.rep.tensors(model)]
        self.names = [spec.name for spec in self.rep.tensor_specs()]
        self.work = self.rep.build()
        self.work.load_state_dict(model.state_dict())
        self.latents = [g.numpy() for g in self.work.integer_latents()]
        self.work.load_integer_latents(self.latents)  # distortion is measured on what the file codes
        self.target = target
        self.rate_lambda = rate_lambda
        self.pixels = target.shape[0]

    def quantized(self, exponents: dict[str, int]) -> tuple[list[np.ndarray], list[float]]:
        steps = [2.0 ** -exponents[_group_of(name)] for name in self.names]
        symbols = [symbols_from_integers(quantize(t, s, BITWIDTH), BITWIDTH) for t, s in zip(self.float_tensors, steps)]
        return symbols, steps

    def load(self, symbols: list[np.ndarray], steps: list[float]) -> None:
        shapes = [spec.shape for spec in self.rep.tensor_specs()]
        load_quantized(self.work, QuantizedTensors(BITWIDTH, symbols, steps, shapes))

    @torch.no_grad()
    def measure(self, exponents: dict[str, int]) -> QuantizedLatentModel:
        symbols, steps = self.quantized(exponents)
        self.load(symbols, steps)
        mse = float(torch.mean((self.work.values() - self.target) ** 2)) * UNIT_MSE_PER_VALUES_MSE
        parameter_bits = min(coding.model_costs(symbols, BITWIDTH).values())
        latent_bits = latent_coding.latent_bits(self.latents, self.work.fixed_point_arm())
        loss = mse + self.rate_lambda * (parameter_bits + latent_bits) / self.pixels
        return QuantizedLatentModel(dict(exponents), symbols, steps, loss, mse, parameter_bits, latent_bits)


def search_steps(model: LatentImageModel, target: torch.Tensor, rate_lambda: float) -> QuantizedLatentModel:
    """The step exponents of the lowest measured loss (see the module docstring)."""
    evaluator = _Evaluator(model, target, rate_lambda)
    groups = quant_groups(model.representation)
    best = evaluator.measure({group: INITIAL_EXPONENT for group in groups})
    for _ in range(SEARCH_PASSES):
        for group in groups:
            allowed = ARM_EXPONENTS if group.startswith("arm") else SYNTHESIS_EXPONENTS
            for direction in (-1, 1):
                while best.exponents[group] + direction in allowed:
                    trial = evaluator.measure({**best.exponents, group: best.exponents[group] + direction})
                    if trial.loss >= best.loss:
                        break
                    best = trial
    return best


def code_latent_model(model: LatentImageModel, quantized: QuantizedLatentModel) -> bytes:
    """The .inr bytes: the quantized parameters loaded into `model` (as a decoder loads them), then
    its rounded latents coded under that model's fixed-point ARM."""
    rep: LatentGrid = model.representation
    load_quantized(model, QuantizedTensors(BITWIDTH, quantized.symbols, quantized.steps,
                                           [spec.shape for spec in rep.tensor_specs()]))
    header = InrHeader(modality="image", height=rep.height, width=rep.width, rotated=False, representation=rep,
                       bitwidth=BITWIDTH, coder=CODER, step_sizes=tuple(quantized.steps),
                       latent_stream=rep.encode_stream(model))
    return encode_inr(header, quantized.symbols)[0]


def compress_image_latent(image: np.ndarray, representation: LatentGrid, rate_lambda: float,
                          schedule: LatentSchedule, *, seed: int = 0, progress: bool = True,
                          desc: str | None = None, writer=None, resume_path: Path | None = None,
                          device: torch.device | str = "cpu") -> tuple[bytes, dict]:
    """Fit, quantize and code uint8 `image` (H, W, C); returns the file and what was measured:
    the fit's float PSNR and latent rate, the search's choice and estimate, and bpp / PSNR /
    MS-SSIM decoded from the file (measure_decoded), encode and decode seconds. resume_path: the
    fit's resume point (fit_latent). device: where the fit runs; the coding is on the CPU."""
    return compress_images_latent([image], representation, [rate_lambda], schedule, seeds=[seed], progress=progress,
                                  desc=desc, writers=[writer], resume_paths=[resume_path], device=device)[0]


def compress_images_latent(images: list[np.ndarray], representation: LatentGrid, rate_lambdas: list[float],
                           schedule: LatentSchedule, *, seeds: list[int], progress: bool = True,
                           desc: str | None = None, writers: list | None = None,
                           resume_paths: list[Path | None] | None = None,
                           device: torch.device | str = "cpu") -> list[tuple[bytes, dict]]:
    """compress_image_latent for images of one size (or one image at several lambdas), fitted as one
    batched computation (fit/latent.fit_latents; per image the same result up to float rounding),
    then coded one by one on the CPU. Every file's encode_seconds is the whole batched fit plus its
    own coding; info["fit_batch"] says how many were fitted together."""
    started = time.perf_counter()
    targets = [image_to_values(image) for image in images]
    fits = fit_latents(representation.build, [t.to(device) for t in targets], rate_lambdas, schedule, seeds=seeds,
                       progress=progress, desc=desc, writers=writers, resume_paths=resume_paths)
    fit_seconds = time.perf_counter() - started
    coded = []
    for image, target, (model, fitted), rate_lambda in zip(images, targets, fits, rate_lambdas):
        data, info = code_fitted_latent(image, target, model.cpu(), fitted, rate_lambda,
                                        time.perf_counter() - fit_seconds)
        coded.append((data, {**info, "fit_batch": len(images)}))
    return coded


def code_fitted_latent(image: np.ndarray, target: torch.Tensor, model: LatentImageModel, fitted,
                       rate_lambda: float, started: float) -> tuple[bytes, dict]:
    """compress_image_latent after its fit (target: image_to_values(image), what was fitted;
    fitted: fit/latent.LatentFitResult; started: the perf_counter at the encode's start). The
    module's parameters are quantized in place."""
    quantized = search_steps(model, target, rate_lambda)
    data = code_latent_model(model, quantized)
    encode_seconds = time.perf_counter() - started
    measured = measure_decoded(data, image)
    pixels = image.shape[0] * image.shape[1]
    representation = model.representation
    info = {**measured, "encode_seconds": encode_seconds, "rate_lambda": rate_lambda,
            "fit_psnr": fitted.psnr, "fit_latent_bpp": fitted.latent_bpp, "fit_start": fitted.start,
            "fit_iterations": fitted.iterations, "quantized_psnr_estimate": psnr_from_mse(quantized.mse),
            "parameter_bpp_estimate": quantized.parameter_bits / pixels,
            "latent_bpp_estimate": quantized.latent_bits / pixels, "step_exponents": quantized.exponents,
            "decoder_macs_per_point": representation.macs_per_point()}
    return data, info


# encode.py's flags that mean nothing for a latent grid (the SIREN's architecture, fit and
# quantization): given with --representation latent they are refused, never parsed and ignored.
SIREN_ONLY_FLAGS = ("hidden_dims", "hidden_layers", "ff_dims", "encoding", "activation", "encoding_scale", "epochs",
                    "lr", "l1_reg", "patience", "bitwidth", "adaround", "adaround_iterations", "adaround_reg",
                    "retrain", "retrain_epochs", "retrain_lr", "code", "quantizer", "step_scale", "rd_steps",
                    "qat_from_soft", "per_channel_steps", "compile", "amp")


def check_latent_flags(values: dict, given: set[str]) -> None:
    """Refuse (one line) what the latent encoder cannot honour, before any work."""
    refused = sorted(name for name in given if name in SIREN_ONLY_FLAGS)
    if refused:
        raise InrError(f"--representation latent does not use --{', --'.join(refused)} (a SIREN's settings); "
                       "it takes --latent_preset, --latent_schedule and --rate_lambda or --target_bpp / --target_psnr")
    targets = [name for name in ("target_bpp", "target_psnr") if values.get(name) is not None]
    if len(targets) > 1:
        raise InrError("give one of --target_bpp and --target_psnr")
    if targets and "rate_lambda" in given:
        raise InrError(f"--{targets[0]} chooses --rate_lambda itself (a search over lambda): give one of them")
    if not targets and not values.get("rate_lambda", 0) > 0:
        raise InrError("--representation latent needs --rate_lambda > 0 (bits are traded against MSE on the "
                       "[0, 1] scale; e.g. 0.0005 for high quality .. 0.01 for small files)")


def encode_latent_file(source: Path, target: Path, values: dict, given: set[str]) -> tuple[np.ndarray, dict]:
    """encode.py --representation latent: fit, code and write `target` from image `source` with
    encode.py's flag values (`given`: the flags set on the command line); returns the image and
    the measurements (of the file as written, decoded)."""
    from inrcompress.config import atomic_write_bytes
    from inrcompress.fit.latent import schedule_by_name
    from inrcompress.signals.image import load_image

    from inrcompress.experiments.runs import usable_device

    check_latent_flags(values, given)
    device = usable_device(values.get("device", "auto"))
    schedule = schedule_by_name(values["latent_schedule"])
    image = load_image(source, values["downscaling_factor"])
    representation = LatentGrid.preset(values["latent_preset"], image.shape[0], image.shape[1], image.shape[2])
    torch.manual_seed(values["seed"])
    if values.get("target_bpp") is not None or values.get("target_psnr") is not None:
        from inrcompress.experiments.latent_target import describe_choice, encode_latent_to_target

        data, info, chosen = encode_latent_to_target(image, representation, schedule,
                                                     target_bpp=values.get("target_bpp"),
                                                     target_psnr=values.get("target_psnr"), seed=values["seed"],
                                                     progress=True, desc=source.stem, device=device)
        print(describe_choice(chosen))
    else:
        data, info = compress_image_latent(image, representation, values["rate_lambda"], schedule,
                                           seed=values["seed"], progress=True, desc=source.stem, device=device)
    atomic_write_bytes(target, data)
    return image, {**info, **measure_decoded(target.read_bytes(), image), "schedule": schedule.name,
                   "preset": values["latent_preset"]}


# ------------------------------------------------------------------------------------------------
# overfitLatent.py: every image of a dataset folder


LATENT_RESULT_KEYS = {"bpp": "bpp", "psnr-rgb": "psnr", "ms-ssim-rgb": "ms_ssim", "ssim": "ssim",
                      "encoding_time": "encode_seconds", "decoding_time": "decode_seconds",
                      "decoder_mac_per_pixel": "decoder_macs_per_point"}


def latent_tag(flag_values: dict) -> str:
    """The setting's name in file names, e.g. latent_mac1000_fast_lambda0.002."""
    return f"latent_{flag_values['latent_preset']}_{flag_values['latent_schedule']}_lambda{flag_values['rate_lambda']:g}"


def latent_experiment_name(flag_values: dict) -> str:
    """e.g. KODAK_4x_latent_mac1000_fast (one folder holds every lambda of a preset and schedule)."""
    return (f"{flag_values['dataset']}_{flag_values['downscaling_factor']}x_latent_{flag_values['latent_preset']}_"
            f"{flag_values['latent_schedule']}")


# Latent experiments live in <exp_root>/latent/<name>/, one level below the SIREN experiments that
# quantize_and_test.py --exp_glob finds (as meta-learned inits live under <exp_root>/maml/).
LATENT_SUBFOLDER = "latent"


def run_overfit_latent(flag_values: dict, progress: bool = True) -> dict:
    """Fit, code and measure every image of data_root/dataset; per image in <exp>/<image>/ (<exp> =
    <exp_root>/latent/<name>):
    compressed_{tag}.inr and metrics_{tag}.yml; per experiment results_{tag}.json (CompressAI's
    layout, as quantize_and_test.py writes). An image whose metrics file exists is skipped, and an
    interrupted fit resumes from <image>/checkpoints/latent_resume_{tag}.pth (written every 100
    steps after the random starts). With batch_images > 1, up to that many images of one size
    (and one resume step) are fitted together (compress_images_latent). device: where the fits run
    (the coding is on the CPU). FLAGS.yml holds the flags and the schedule's values. Under
    torchrun each rank fits its share of the unfinished images (fit/distributed.py) and rank 0
    writes results_{tag}.json when every rank is done (the other ranks return {})."""
    import yaml

    from inrcompress.config import atomic_write_bytes, atomic_write_text, write_json
    from inrcompress.experiments.images import check_images
    from inrcompress.experiments.runs import (batch_groups, finite_mean, read_run_records, start_experiment,
                                              usable_device)
    from inrcompress.fit import distributed
    from inrcompress.fit.latent import resume_step, schedule_by_name
    from inrcompress.signals.image import list_images, load_image

    if not flag_values["rate_lambda"] > 0:
        raise InrError("--rate_lambda must be > 0 for a latent grid")
    schedule = schedule_by_name(flag_values["latent_schedule"])
    images = list_images(Path(flag_values["data_root"]) / flag_values["dataset"])
    check_images(images, flag_values["downscaling_factor"])
    device = usable_device(distributed.join(flag_values["device"]))
    progress = progress and distributed.is_main()
    exp_dir = start_experiment(Path(flag_values["exp_root"]) / LATENT_SUBFOLDER / latent_experiment_name(flag_values),
                               {**flag_values, **schedule.flags()}, len(images), "images", device)
    tag = latent_tag(flag_values)
    done = [p for p in images if (exp_dir / p.stem / f"metrics_{tag}.yml").is_file()]
    if distributed.is_main():
        for path in done:
            print(f"{path.stem}: {tag} done, skipped")
    pending = [(path, load_image(path, flag_values["downscaling_factor"]))
               for path in distributed.share([p for p in images if p not in done])]
    resume_paths = [exp_dir / path.stem / "checkpoints" / f"latent_resume_{tag}.pth" for path, _ in pending]
    batch = int(flag_values.get("batch_images", 1))
    # images of one size that resume at the same step (None: fresh) are fitted together
    keys = ([(image.shape, resume_step(path)) for (_, image), path in zip(pending, resume_paths)] if batch > 1
            else [None] * len(pending))
    for members in batch_groups(keys, batch):
        shape = pending[members[0]][1].shape
        rep = LatentGrid.preset(flag_values["latent_preset"], shape[0], shape[1], shape[2])
        writers = [None] * len(members)
        if flag_values.get("tensorboard", True):
            from torch.utils.tensorboard import SummaryWriter
            writers = [SummaryWriter(str(exp_dir / pending[i][0].stem / "summaries" / tag)) for i in members]
        try:
            coded = compress_images_latent([pending[i][1] for i in members], rep,
                                           [flag_values["rate_lambda"]] * len(members), schedule,
                                           seeds=[flag_values["seed"]] * len(members), progress=progress,
                                           desc=" ".join(pending[i][0].stem for i in members), writers=writers,
                                           resume_paths=[resume_paths[i] for i in members], device=device)
        finally:
            for writer in writers:
                if writer is not None:
                    writer.close()
        for i, (data, info) in zip(members, coded):
            path = pending[i][0]
            run_dir = exp_dir / path.stem
            atomic_write_bytes(run_dir / f"compressed_{tag}.inr", data)
            record = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in info.items()}
            atomic_write_text(run_dir / f"metrics_{tag}.yml", yaml.safe_dump(record, sort_keys=True))
            print(f"{path.stem}: {info['bytes']} bytes ({info['bpp']:.4f} bpp), PSNR {info['psnr']:.2f} dB, "
                  f"MS-SSIM {info['ms_ssim']:.4f} (decoded from the file; float fit {info['fit_psnr']:.2f} dB), "
                  f"{info['encode_seconds']:.0f} s"
                  + (f" ({len(members)} fitted together)" if len(members) > 1 else ""))
    distributed.barrier()
    if not distributed.is_main():
        return {}
    records = read_run_records(exp_dir, f"metrics_{tag}.yml", yaml.safe_load)
    summary = {"name": exp_dir.name,
               "description": f"inrcompress latent grid, {tag}; {len(records)} images; bpp from the .inr file sizes, "
                              "metrics on the decoded 8-bit images, averaged per image",
               "results": {key: finite_mean(r.get(source) for r in records.values())
                           for key, source in LATENT_RESULT_KEYS.items()},
               "per_image": {name: {k: r.get(k) for k in ("bpp", "bytes", "psnr", "ssim", "ms_ssim", "encode_seconds",
                                                          "decode_seconds", "decoder_macs_per_point", "rate_lambda")}
                             for name, r in records.items()}}
    write_json(exp_dir / f"results_{tag}.json", summary)
    results = summary["results"]
    print(f"{exp_dir.name}: {len(records)} images, {results['bpp']:.4f} bpp, PSNR {results['psnr-rgb']:.2f} dB "
          f"-> {exp_dir / f'results_{tag}.json'}")
    return summary
