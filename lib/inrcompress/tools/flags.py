"""absl flag groups, each defined once; every script composes the groups it needs.

Names and defaults are the paper's (spec section 2). Each tool builds its own FlagValues, so
`main(argv)` can be called repeatedly in one process (tests) without absl's global state.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from absl import flags

from inrcompress.codec.quantizers import QUANTIZERS
from inrcompress.codec.container import DEFAULT_MAX_PARAMETERS, DEFAULT_MAX_PIXELS, MAX_PARAMETERS, MAX_PIXELS, DecodeLimits
from inrcompress.codec.entropy import METHODS
from inrcompress.errors import InrError

# Flags of absl itself that FlagValues may carry; never part of an experiment's settings.
_ABSL_FLAGS = {"help", "helpshort", "helpfull", "helpxml", "flagfile", "undefok"}


def define_general(fv: flags.FlagValues, *, folders: bool = True) -> None:
    """--data_root, --exp_root (folders=False leaves them out: tools that take files), --device, --seed."""
    if folders:
        define_data_root(fv)
        define_output_dir(fv, "exp_root", "exp", "Root directory of the experiments.")
    define_device(fv)
    flags.DEFINE_integer("seed", 0, "Random seed of the initialisation (and the gauss encoding matrix).",
                         lower_bound=0, upper_bound=2**32 - 1, flag_values=fv)


def define_data_root(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("data_root", "data", "Root directory of the datasets: <data_root>/<dataset>.", flag_values=fv)


def define_images(fv: flags.FlagValues, dataset: str = "KODAK") -> None:
    """--data_root, --dataset, --downscaling_factor: the images a tool reads without fitting them
    (evaluate.py codecs and report), downscaled as the fitting tools do."""
    define_data_root(fv)
    flags.DEFINE_string("dataset", dataset, "Image folder under data_root (KODAK, CelebA100, any folder).",
                        flag_values=fv)
    define_downscaling(fv)


def define_device(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("device", "auto", "Torch device: auto (cuda when available), cpu, cuda, cuda:1, ...",
                        flag_values=fv)
    flags.register_validator("device", _is_device_name, "must be auto or a torch device (cpu, cuda, cuda:1, ...)",
                             flag_values=fv)


def _is_device_name(name: str) -> bool:
    import torch

    try:
        return name == "auto" or torch.device(name) is not None
    except (RuntimeError, ValueError):
        return False


def define_architecture(fv: flags.FlagValues, hidden_dims: int = 64, ff_dims: int | None = 16) -> None:
    flags.DEFINE_enum("activation", "sine", ["sine", "relu"], "Activation: sine = sin(30x) as in SIREN.",
                      flag_values=fv)
    flags.DEFINE_enum("encoding", "nerf", ["mlp", "nerf", "positional", "gauss"],
                      "Coordinate encoding: mlp = none; nerf = NeRF-style; positional/gauss = Tancik et al. 2020.",
                      flag_values=fv)
    flags.DEFINE_integer("hidden_dims", hidden_dims, "Width of the MLP.", lower_bound=1, upper_bound=4096,
                         flag_values=fv)
    flags.DEFINE_integer("hidden_layers", 3, "Number of hidden (h x h) layers.", lower_bound=1, upper_bound=64,
                         flag_values=fv)
    flags.DEFINE_integer("ff_dims", ff_dims, "Number of Fourier-feature frequencies of the encoding.",
                         lower_bound=1, upper_bound=1024, flag_values=fv)
    flags.DEFINE_float("encoding_scale", 1.4, "Scale of the encoding (spacing of the frequencies).",
                       lower_bound=0.0, flag_values=fv)


def define_downscaling(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("downscaling_factor", 1, "Integer factor by which images are downscaled.",
                         lower_bound=1, flag_values=fv)




def define_maml(fv: flags.FlagValues, *, training: bool = False) -> None:
    """The MAML flags of trainMetaSiren.py and overfitMetaSiren.py (spec 2.2, 2.3; same names and
    defaults in both, because overfitMetaSiren.py finds the init folder from them). training=True adds
    the meta-training-only flags (steps_til_summary, maml_val_every)."""
    from inrcompress.fit.meta import LR_TYPES  # here, not at the top: decode.py checks a file without torch

    flags.DEFINE_string("maml_dataset", "DIV2K",
                        "Meta-training data under data_root: DIV2K, CelebA, or any folder of images.",
                        flag_values=fv)
    flags.DEFINE_enum("lr_type", "per_parameter_per_step", list(LR_TYPES),
                      "Inner-loop learning rates: static (fixed), global, per_step, per_parameter (Meta-SGD), "
                      "per_parameter_per_step (learned, except static).", flag_values=fv)
    flags.DEFINE_integer("maml_epochs", 1, "Passes over the meta-training images.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("maml_batch_size", 1, "Images per outer (meta) step.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("maml_adaptation_steps", 3, "Inner-loop SGD steps.", lower_bound=1, upper_bound=100,
                         flag_values=fv)
    flags.DEFINE_float("inner_lr", 1e-5, "Initial value of the inner-loop learning rate(s).", lower_bound=0.0,
                       flag_values=fv)
    flags.DEFINE_float("outer_lr", 5e-5, "Adam learning rate of the outer (meta) loop.", lower_bound=0.0,
                       flag_values=fv)
    if training:
        flags.DEFINE_integer("steps_til_summary", 1000,
                             "Outer steps between progress lines, resume checkpoints and step snapshots.",
                             lower_bound=1, flag_values=fv)
        flags.DEFINE_integer("maml_val_every", 500,
                             "Outer steps between validations (paper: 500); the LR schedule and the kept best "
                             "state follow the validation loss. Also validated at the start and the end.",
                             lower_bound=1, flag_values=fv)
        flags.DEFINE_bool("maml_vmap", False,
                          "Run a meta-batch as one torch.func.vmap computation instead of a loop over its images "
                          "(the loop was faster on CPU; same gradients).", flag_values=fv)


def define_overfitting(fv: flags.FlagValues, *, dataset: str | None = "KODAK", epochs: int = 10000,
                       lr: float = 1e-4, l1_reg: float = 0.0, downscaling: bool = True,
                       run_folder: bool = True, batched: bool = True) -> None:
    """Fitting flags. dataset=None leaves out --dataset and run_folder=False the checkpoint and
    TensorBoard cadences (tools that fit one file into no experiment folder); batched=False leaves out
    --batch_images (fits that are always one by one)."""
    if dataset is not None:
        flags.DEFINE_string("dataset", dataset, "Dataset folder under data_root (KODAK, CelebA100, any folder).",
                            flag_values=fv)
    flags.DEFINE_integer("epochs", epochs, "Maximum epochs (= steps for an image: one image is one batch).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_float("lr", lr, "Adam learning rate.", lower_bound=0.0, flag_values=fv)
    flags.DEFINE_float("l1_reg", l1_reg, "L1 regularisation strength on the weights.", lower_bound=0.0,
                       flag_values=fv)
    if downscaling:
        define_downscaling(fv)
    flags.DEFINE_integer("patience", 500, "Patience of the ReduceLROnPlateau schedule (steps).", lower_bound=1,
                         flag_values=fv)
    if run_folder:
        flags.DEFINE_integer("epochs_til_ckpt", 1000, "Epochs between checkpoints.", lower_bound=1, flag_values=fv)
        flags.DEFINE_integer("steps_til_summary", 1000, "Steps between TensorBoard image summaries.", lower_bound=1,
                             flag_values=fv)
    flags.DEFINE_enum("compile", "auto", ["auto", "on", "off"],
                      "torch.compile the training step: auto = on when a step covers >= 65536 points "
                      "(one image, or all images fitted at once with --batch_images).",
                      flag_values=fv)
    if batched:
        flags.DEFINE_integer("batch_images", 0, "Fit up to this many images of the same size at once, as one "
                             "batched computation (results as one by one, up to float rounding). 0 = auto: 24 on "
                             "a CPU (measured 1.8-2.5x faster there), 1 on a GPU (not yet measured faster).",
                             lower_bound=0, flag_values=fv)
    flags.DEFINE_bool("amp", False, "Mixed precision (float16 autocast) on CUDA; changes results slightly.",
                      flag_values=fv)


def define_quantization(fv: flags.FlagValues, *, retrain_epochs: int = 300, adaround_iterations: int = 1000,
                        code: str = "arithmetic", dataset: str = "KODAK", experiments: bool = True) -> None:
    """Quantization flags; experiments=False leaves out exp_glob, dataset, skip_existing and batch_images."""
    if experiments:
        flags.DEFINE_integer("batch_images", 0, "Quantize up to this many signals of one experiment with the same "
                             "size at once, as one stacked computation (results as one by one, up to float "
                             "rounding). 0 = auto: 12 images on a CPU (measured faster, benchmarks/encode_speed.py), "
                             "shapes and GPUs one by one.", lower_bound=0, flag_values=fv)
        flags.DEFINE_string("exp_glob", "*", "Glob (not regex) of experiment folders under exp_root.",
                            flag_values=fv)
        flags.DEFINE_string("dataset", dataset, "Dataset folder under data_root with the original images.",
                            flag_values=fv)
        flags.DEFINE_bool("skip_existing", True, "Skip an image whose metrics file for this setting exists.",
                          flag_values=fv)
    flags.DEFINE_integer("retrain_epochs", retrain_epochs, "Quantization-aware retraining steps.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_float("retrain_lr", 1e-6, "Adam learning rate of quantization-aware retraining.",
                       lower_bound=0.0, flag_values=fv)
    flags.DEFINE_integer("bitwidth", 8, "Bits per weight and bias (2..16: a signed step grid needs two levels).",
                         lower_bound=2, upper_bound=16, flag_values=fv)
    flags.DEFINE_bool("adaround", True, "Use AdaRound (--noadaround: nearest rounding).", flag_values=fv)
    flags.DEFINE_bool("retrain", True, "Quantization-aware retraining (--noretrain to skip).", flag_values=fv)
    flags.DEFINE_float("adaround_reg", 1e-4, "Weight of AdaRound's rounding regulariser.", lower_bound=0.0,
                       flag_values=fv)
    flags.DEFINE_integer("adaround_iterations", adaround_iterations, "AdaRound iterations per layer.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("code", code, list(METHODS), "Lossless coder of the quantized weights.",
                      flag_values=fv)
    flags.DEFINE_enum("quantizer", "native", list(QUANTIZERS), "Who computes steps, AdaRound and retraining: native "
                      "(this toolkit) or aimet (the paper's aimet-torch; needs `make setup-aimet` and "
                      ".venv-aimet/bin/python). The file and its decoding are the same either way.", flag_values=fv)
    flags.DEFINE_float("step_scale", 1.0, "Beyond the paper: every quantization step times this factor (> 1: "
                       "coarser steps, a smaller file; 1 = the paper's steps).", lower_bound=1e-6, flag_values=fv)
    flags.DEFINE_bool("rd_steps", False, "Beyond the paper: per-tensor steps by a rate-distortion allocation "
                      "(step ~ 1/sqrt(the tensor's measured sensitivity)) instead of each tensor's MSE-optimal "
                      "step at --bitwidth.", flag_values=fv)
    flags.DEFINE_bool("qat_from_soft", False, "Beyond the paper: quantization-aware retraining starts from AdaRound's "
                      "soft levels (as AIMET's does) instead of its hard integers.", flag_values=fv)
    flags.DEFINE_bool("per_channel_steps", False, "Beyond the paper: one quantization step per output channel of "
                      "every weight (each row's MSE-optimal step at --bitwidth; one byte a row in the file) "
                      "instead of one per tensor.", flag_values=fv)


def define_rate_target(fv: flags.FlagValues) -> None:
    """The target mode of encode.py and quantize_and_test.py (beyond the paper): a file size or a
    quality instead of fixed quantization settings (QuantConfig.target_bpp / target_psnr)."""
    flags.DEFINE_float("target_bpp", None, "Write a file within 3 percent of this many bits per pixel: bit width "
                       "and step scale are searched on real files (encode.py also picks the width unless "
                       "--hidden_dims is given).", flag_values=fv)
    flags.DEFINE_float("target_psnr", None, "Write the smallest file the search finds whose decoded PSNR reaches "
                       "this (dB), at the given architecture.", flag_values=fv)


def define_rate_fitting(fv: flags.FlagValues) -> None:
    """The rate term of a fit (beyond the paper)."""
    flags.DEFINE_float("rate_lambda", 0.0, "Beyond the paper: add rate_lambda x the estimated bits per pixel of the "
                       "quantized weights (codec/rate.py) to the fitting loss (0 = the paper's loss).",
                       lower_bound=0.0, flag_values=fv)


def define_latent_codec(fv: flags.FlagValues, presets: Sequence[str], schedules: Sequence[str], *,
                        representation: bool = False, rate_lambda: bool = False,
                        batch_images: bool = False) -> None:
    """The latent-grid codec's flags (issue 18; beyond the paper): --latent_preset (the decoder's
    size: codec/representations/latent.PRESETS) and --latent_schedule (the fit: fit/latent.SCHEDULES),
    passed in so that this module does not import torch. representation=True adds --representation
    (encode.py: siren, the paper's, or latent); rate_lambda=True adds --rate_lambda where no other
    group defines it; batch_images=True adds --batch_images (overfitLatent.py)."""
    if representation:
        flags.DEFINE_enum("representation", "siren", ["siren", "latent"], "What is fitted: siren (the paper's "
                          "MLP) or latent (latent grids + auto-regressive model: --latent_preset, --latent_schedule, "
                          "--rate_lambda).", flag_values=fv)
    flags.DEFINE_enum("latent_preset", "mac1000", list(presets), "Latent grid: decoder preset: mac500 / mac1000 / "
                      "mac2000 (about that many multiply-accumulates per decoded pixel; bicubic upsampling, per-pixel "
                      "MLP), conv600 / conv1100 (learned upsampling and two residual 3x3 convolutions).", flag_values=fv)
    flags.DEFINE_enum("latent_schedule", "fast", list(schedules), "Latent grid: the fit's named schedule "
                      "(iterations, learning rate, noise phase, random starts; written to FLAGS.yml).",
                      flag_values=fv)
    if rate_lambda:
        flags.DEFINE_float("rate_lambda", 0.002, "Latent grid: loss = MSE on the [0, 1] scale + rate_lambda x bits "
                           "per pixel (larger: smaller files).", lower_bound=0.0, flag_values=fv)
    if batch_images:
        flags.DEFINE_integer("batch_images", 1, "Latent grid: fit up to this many images of the same size at once, "
                             "as one batched computation (results as one by one, up to float rounding). On a CPU "
                             "it measured no faster than one by one (benchmarks/RESULTS.md), hence 1; on a GPU, "
                             "where one small image leaves the device idle, try 8-24.", lower_bound=1, flag_values=fv)


def define_decode_limits(fv: flags.FlagValues, *, images: bool = True) -> None:
    """--max_pixels (images=True) and --max_parameters: what a decoder may do for one file
    (container.DecodeLimits; checked right after the header, before anything is decoded)."""
    if images:
        flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS, "Refuse an image file of more pixels than this "
                             "(memory: 3 bytes a pixel; work: pixels x parameters).", lower_bound=1,
                             upper_bound=MAX_PIXELS, flag_values=fv)
    flags.DEFINE_integer("max_parameters", DEFAULT_MAX_PARAMETERS, "Refuse a file whose network has more "
                         "parameters than this.", lower_bound=1, upper_bound=MAX_PARAMETERS, flag_values=fv)


def decode_limits(fv: flags.FlagValues) -> DecodeLimits:
    """The DecodeLimits of the flags define_decode_limits defined (max_pixels at its default without it)."""
    max_pixels = fv["max_pixels"].value if "max_pixels" in fv else DEFAULT_MAX_PIXELS
    return DecodeLimits(max_pixels=max_pixels, max_parameters=fv["max_parameters"].value)


def define_shapes(fv: flags.FlagValues, *, sampling: bool = True) -> None:
    """3D shape flags (spec 2.5, 8); sampling=False keeps only the evaluation's mc_resolution."""
    if sampling:
        flags.DEFINE_integer("batch_size", 10000, "SDF samples per optimisation step.", lower_bound=1,
                             flag_values=fv)
        flags.DEFINE_integer("samples_per_shape", 100000,
                             "Points per sampling technique (uniform, near surface x2, on surface x2): "
                             "5 x this many SDF samples per shape.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("mc_resolution", 128, "Grid of the marching cubes that extracts the network's surface "
                         "(Chamfer distance, exported mesh).", lower_bound=8, upper_bound=1024, flag_values=fv)


def check_output_dir(path: str | os.PathLike, written: str | os.PathLike | None = None) -> Path:
    """Refuse, before any work, a folder that outputs cannot be written under: the path, or its
    nearest existing ancestor (the folders in between are made when written), must be a directory
    a file can be created in (tried: on a read-only file system or without permission even root's
    access() says yes). `written` names the output in the message (default: the folder). Returns the
    path; raises InrError with one line."""
    path = Path(path)
    what = f"write {written}" if written is not None else f"write under {path}"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InrError(f"cannot {what}: {existing} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".inrcompress-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InrError(f"cannot {what}: {existing} is not writable ({e.strerror or e})") from None
    return path


def check_output_file(path: str | os.PathLike, suffixes: Sequence[str]) -> Path:
    """Refuse, before any work, an output file that cannot be written: an existing directory, a
    suffix that is not one of `suffixes` (the formats the tool writes, lower case with the dot), or
    a folder check_output_dir refuses. Returns the path; raises InrError with one line."""
    path = Path(path)
    if path.is_dir():
        raise InrError(f"{path} is a directory; name the output file ({' or '.join(suffixes)})")
    if path.suffix.lower() not in suffixes:
        raise InrError(f"{path}: this tool writes {' or '.join(suffixes)} files; name the output so")
    check_output_dir(path.parent, written=path)
    return path


def define_output_dir(fv: flags.FlagValues, name: str, default: str, help_text: str) -> None:
    """A string flag naming a folder the tool writes under, checked writable when parsed."""
    flags.DEFINE_string(name, default, help_text, flag_values=fv)

    def writable(value: str) -> bool:
        try:
            check_output_dir(value)
        except InrError as e:
            raise flags.ValidationError(str(e)) from None
        return True
    flags.register_validator(name, writable, flag_values=fv)


def usage_line(prog: str, positional: Sequence[str] = ()) -> str:
    """`usage: prog POSITIONAL ... [--flag=value ...]`."""
    return f"usage: {' '.join([prog, *positional])} [--flag=value ...]"


def define_paper_only(fv: flags.FlagValues, name: str, value: int | float, why: str) -> None:
    """A flag that the paper's script defined but that changes nothing here: accepted at its one value
    so that the paper's command lines run, any other value refused (never parsed and ignored)."""
    define = flags.DEFINE_integer if isinstance(value, int) else flags.DEFINE_float
    define(name, value, f"{_PAPER_ONLY}{value}: {why}", flag_values=fv)
    flags.register_validator(name, lambda v: v == value, f"can only be {value}: {why}", flag_values=fv)


_PAPER_ONLY = "Only "


def paper_only_flags(fv: flags.FlagValues) -> set[str]:
    """The names of the flags define_paper_only defined."""
    return {name for name in fv if (fv[name].help or "").startswith(_PAPER_ONLY)}


def parse(fv: flags.FlagValues, argv: list[str] | None, prog: str,
          positional: Sequence[str] | None = None) -> list[str]:
    """Parse argv (without the program name); returns the positional arguments.

    positional names the tool's positional arguments for the usage line (e.g. ("INPUT.inr",
    "OUTPUT.png")) and fixes their count; a last name ending in "..." takes one or more. None leaves
    the count to the caller. argv None is the command line, and the usage line then shows the name
    the tool was started by (inr-decode, decode.py). --help prints the usage line and the flags and
    raises HelpShown; a bad flag, a bad value or a wrong count raises InrError (one line, exit 2)."""
    if argv is None:
        argv, prog = sys.argv[1:], Path(sys.argv[0]).name or prog
    argv = list(argv)
    usage = usage_line(prog, positional or ())
    if any(a in ("-h", "--help", "--helpfull", "--helpshort") for a in argv):
        print(f"{usage}\n\n{fv.get_help()}")
        raise HelpShown()
    try:
        rest = fv([prog] + argv)[1:]
    except flags.Error as e:
        raise InrError(str(e).splitlines()[0]) from None
    if positional is not None:
        variadic = bool(positional) and positional[-1].endswith("...")
        if len(rest) < len(positional) or (len(rest) > len(positional) and not variadic):
            got = f"got {len(rest)} positional argument{'s' if len(rest) != 1 else ''}"
            raise InrError(f"{usage} ({got}{': ' + ' '.join(rest) if rest else ''})")
    return rest


class HelpShown(Exception):
    """--help was given: the help text is printed and the tool exits with 0."""


def values(fv: flags.FlagValues) -> dict:
    """The tool's own flags as a plain dict (what goes into FLAGS.yml)."""
    return {k: v for k, v in fv.flag_values_dict().items() if k not in _ABSL_FLAGS}


def parse_values(fv: flags.FlagValues, argv: list[str] | None, prog: str) -> dict:
    """parse() a tool's argv that takes no positional arguments, then its flags as values()."""
    parse(fv, argv, prog, positional=())
    return values(fv)


# Exit code of a tool whose reader closed the pipe (what a shell reports for a command SIGPIPE ended).
BROKEN_PIPE_EXIT = 128 + 13


def run_tool(body: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a tool's body; report an InrError as one line on stderr and return exit code 2. A reader
    that closes stdout early (`inr-overfit --help | head -1`) ends the tool quietly with
    BROKEN_PIPE_EXIT, as `ls | head` does: stdout is flushed here so that the error comes here, and
    pointed at /dev/null so that the interpreter's own flush at exit finds nothing to complain about."""
    try:
        try:
            code = body(argv)
        except HelpShown:
            code = 0
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE_EXIT
    except InrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is kept; run the same command again to resume", file=sys.stderr)
        return 130
    return int(code or 0)
