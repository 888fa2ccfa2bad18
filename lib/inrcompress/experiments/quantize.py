"""The quantize-over-a-glob loop of quantize_and_test.py (images) and quantize_and_test3D.py (shapes).

For every experiment folder of the modality under --exp_root matching --exp_glob, and in it every
fitted signal (a run folder with checkpoints/model_best_.pth): load the best state, quantize and code
it on --device (AdaRound's row sampling seeded with --seed), write <run>/compressed_{code}_{cfg}.inr,
then measure the file as it lies on disk, decoded from scratch, into <run>/metrics_{code}_{cfg}.yml
(and, where the modality renders one, the picture <run>/compressed_{code}_{cfg}.png). With
--skip_existing a signal whose metrics file exists is skipped. Per experiment, over every signal with
a metrics file: results_{code}_{cfg}.json in CompressAI's layout, {"name", "description",
"results": {means over the signals}, "per_<modality>": {signal: {...}}}, null where not finite.
Under torchrun each rank codes its share of the (experiment, signal) pairs and rank 0 writes the
results files after the others are done (fit/distributed.py). With --batch_images N > 1 (auto: the
codec's auto_batch on a CPU) up to N signals of one experiment with one architecture and size are
quantized together as one stacked computation (codec/quant_batched.py; per signal the result of
coding it alone, up to float rounding); the metrics record how many (coded_together) and the
group's encode time divided among them.

A modality supplies a SignalCodec (image_codec.ImageCodec, shape_codec.ShapeCodec): how to load a
fitted signal, code it, measure a file, and which keys its results hold.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Protocol

import numpy as np
import torch
import yaml

from inrcompress.codec.compress import QuantConfig, compress_networks
from inrcompress.codec.representations import representation_of
from inrcompress.config import atomic_write_bytes, atomic_write_text, load_flags, write_json
from inrcompress.errors import InrError
from inrcompress.experiments.runs import (
    FLAGS_FILE,
    experiment_folders,
    finite_mean,
    fitted_runs,
    read_run_records,
    usable_device,
)
from inrcompress.fit import distributed
from inrcompress.fit.engine import BEST_FILE, CHECKPOINT_DIR
from inrcompress.nn import INR
from inrcompress.signals.image import save_png

# The quantization flags recorded in every metrics file.
QUANT_KEYS = ("bitwidth", "adaround", "adaround_iterations", "adaround_reg", "retrain", "retrain_epochs",
              "retrain_lr", "code")


@dataclass
class FittedSignal:
    """One fitted signal ready to be coded.

    model: the network with the fit's best state. source: what the modality needs to code and
    measure it (the original image, the SDF samples). fields: entries of its metrics file that
    describe the signal (e.g. height and width)."""

    name: str
    model: INR
    source: Any
    fields: dict = field(default_factory=dict)


class SignalCodec(Protocol):
    """What a modality supplies to the loop; one instance per experiment folder, made by
    codec_type(exp_dir, train_flags, flag_values) (train_flags: the experiment's FLAGS.yml).

    The three templates are str.format templates; a mean that could not be taken prints as n/a.
    description: of results_{code}_{cfg}.json, with {setting} (QuantConfig.tag), {code}, {count}.
    signal_report: the line printed per coded signal, with the keys of its metrics file.
    experiment_report: the line printed per experiment after "<name>: <count> <modality>s, ", with
    the keys of "results" and {results_file}."""

    modality: str  # "image", "shape": the experiments it reads (runs.experiment_modality), its noun
    result_keys: dict[str, str]  # key of "results" -> the metrics-file key averaged into it
    per_signal_keys: tuple[str, ...]  # the metrics-file keys copied per signal into the results
    quantization_progress: bool  # show quantize_model's progress bars (signals that take minutes)
    description: str
    signal_report: str
    experiment_report: str

    auto_batch: int  # signals coded together by default on a CPU (--batch_images 0); 1 = one by one

    def load(self, run_dir: Path) -> FittedSignal: ...

    def batch_key(self, signal: FittedSignal) -> Hashable:
        """Signals of one experiment with equal keys can be coded together (encode with several)."""

    def encode(self, signals: list[FittedSignal], qcfg: QuantConfig, *, seed: int,
               progress: bool) -> list[tuple[bytes, dict]]:
        """The .inr bytes of each signal's model (on its device) and its size record (encode_signals'),
        the signals quantized together (one batch_key)."""

    def measure(self, data: bytes, signal: FittedSignal) -> tuple[dict, np.ndarray | None]:
        """Metrics of the decoded file and its picture (uint8 (H, W, C)) or None."""


class _NotAvailable:
    """A mean over no finite value (e.g. no shape with a surface): printed as n/a whatever the format."""

    def __format__(self, spec: str) -> str:
        return "n/a"


def fill(template: str, values: dict) -> str:
    """template.format with values; a None value prints as n/a."""
    return template.format_map({k: _NotAvailable() if v is None else v for k, v in values.items()})


def encode_signals(models: list[INR], coords: torch.Tensor | list[torch.Tensor], values: list[torch.Tensor],
                   qcfg: QuantConfig, *, seed: int = 0, progress: bool = False, **header) -> list[tuple[bytes, dict]]:
    """compress_networks on the models' device (coords: shared, or one per model; values[n]: the
    signal model n was fitted to; one model is coded alone, several together), timed. header:
    compress_networks' file fields (modality, height, width, rotated (one per model), reference). Returns per model the file bytes
    and {encode_seconds (the group's time / its size), payload_bytes, step_size_bytes,
    container_bytes, paper_bytes, coding_model, coded_together} (seconds, bytes, the group's size)."""
    device = next(models[0].parameters()).device
    started = time.perf_counter()
    coords = [c.to(device) for c in coords] if isinstance(coords, (list, tuple)) else coords.to(device)
    coded = compress_networks(models, coords, [v.to(device) for v in values], qcfg, seeds=seed,
                              progress=progress, **header)
    seconds = (time.perf_counter() - started) / len(models)
    return [(data, {"encode_seconds": seconds, "payload_bytes": sizes.payload_bytes,
                    "step_size_bytes": sizes.step_size_bytes, "container_bytes": sizes.container_bytes,
                    "paper_bytes": sizes.paper_bytes, "coding_model": sizes.coding_model,
                    "coded_together": len(models)})
            for data, sizes in coded]


def plain_numbers(record: dict) -> dict:
    """numpy scalars as Python numbers, so yaml.safe_dump can write the record."""
    return {k: (v.item() if isinstance(v, (np.floating, np.integer, np.bool_)) else v) for k, v in record.items()}


@dataclass
class CodedExperiment:
    """One experiment folder of the loop: its FLAGS.yml, its SignalCodec and its fitted run folders."""

    exp_dir: Path
    train_flags: dict
    codec: SignalCodec
    runs: list[Path]


def open_experiment(exp_dir: Path, codec_type: Callable[..., SignalCodec], flag_values: dict) -> CodedExperiment:
    """The experiment's codec and fitted runs; an experiment without a fitted signal is an error."""
    train_flags = load_flags(exp_dir / FLAGS_FILE)
    codec = codec_type(exp_dir, train_flags, flag_values)
    runs = fitted_runs(exp_dir)
    if not runs:
        raise InrError(f"{exp_dir} holds no fitted {codec.modality} (no */{CHECKPOINT_DIR}/{BEST_FILE})")
    return CodedExperiment(exp_dir, train_flags, codec, runs)


def quantize_runs(experiment: CodedExperiment, run_dirs: list[Path], qcfg: QuantConfig, flag_values: dict, *,
                  device: torch.device, batch: int = 1, progress: bool = True) -> None:
    """Compress fitted signals of one experiment (see the module docstring), up to `batch` signals
    with one codec.batch_key (and one architecture) quantized together, and print a line per signal."""
    exp_dir, codec = experiment.exp_dir, experiment.codec
    tag = f"{qcfg.code}_{qcfg.tag}"
    pending = []
    for run_dir in run_dirs:
        if flag_values["skip_existing"] and (run_dir / f"metrics_{tag}.yml").is_file():
            print(f"{exp_dir.name}/{run_dir.name}: metrics_{tag}.yml exists, skipped")
        else:
            pending.append(run_dir)
    loaded: dict[Path, FittedSignal] = {}
    for group in _coding_groups(codec, pending, batch, loaded):
        signals = [loaded.pop(run_dir, None) or codec.load(run_dir) for run_dir in group]
        for signal in signals:
            signal.model = signal.model.to(device)
        coded = codec.encode(signals, qcfg, seed=int(flag_values["seed"]),
                             progress=progress and codec.quantization_progress)
        for run_dir, signal, (data, sizes) in zip(group, signals, coded):
            _write_and_measure(experiment, run_dir, signal, data, sizes, tag, flag_values)


def _coding_groups(codec: SignalCodec, run_dirs: list[Path], batch: int,
                   loaded: dict[Path, FittedSignal]) -> list[list[Path]]:
    """The run folders to code together: one each without batching (each loaded when it is coded),
    else, in run order, at most `batch` a group, of one architecture and codec.batch_key (the
    signals loaded for that are kept in `loaded`)."""
    if batch <= 1:
        return [[run_dir] for run_dir in run_dirs]
    groups: dict = {}
    for run_dir in run_dirs:
        signal = loaded[run_dir] = codec.load(run_dir)
        groups.setdefault((representation_of(signal.model), codec.batch_key(signal)), []).append(run_dir)
    return [members[i:i + batch] for members in groups.values() for i in range(0, len(members), batch)]


def _write_and_measure(experiment: CodedExperiment, run_dir: Path, signal: FittedSignal, data: bytes, sizes: dict,
                       tag: str, flag_values: dict) -> None:
    exp_dir, codec = experiment.exp_dir, experiment.codec
    inr_path = run_dir / f"compressed_{tag}.inr"
    atomic_write_bytes(inr_path, data)
    # The numbers come from the file as it lies on disk, decoded from scratch.
    measured, picture = codec.measure(inr_path.read_bytes(), signal)
    if picture is not None:
        save_png(run_dir / f"compressed_{tag}.png", picture)
    quant_flags = {k: flag_values[k] for k in QUANT_KEYS}
    record = {**measured, **sizes, "file": inr_path.name, **signal.fields,
              "decoder_macs_per_point": representation_of(signal.model).macs_per_point(),
              **{f"train_{k}": v for k, v in experiment.train_flags.items()}, **quant_flags}
    atomic_write_text(run_dir / f"metrics_{tag}.yml", yaml.safe_dump(plain_numbers(record), sort_keys=True))
    print(f"{exp_dir.name}/{run_dir.name}: {fill(codec.signal_report, record)} (decoded from {inr_path.name})")


def batch_size_for(flag_values: dict, codec_type, device: torch.device) -> int:
    """--batch_images: signals quantized together; 0 (auto) is the codec's auto_batch on a CPU
    (benchmarks/encode_speed.py) and 1 on a GPU (not measured there)."""
    requested = int(flag_values.get("batch_images", 0))
    if requested >= 1:
        return requested
    return codec_type.auto_batch if device.type == "cpu" else 1


def summarize_experiment(experiment: CodedExperiment, qcfg: QuantConfig) -> dict:
    """Write the experiment's results file over its signals' metrics files, print its line, return it."""
    codec, tag = experiment.codec, f"{qcfg.code}_{qcfg.tag}"
    summary = aggregate_codec_results(experiment.exp_dir, tag, codec, qcfg)
    count = len(summary[f"per_{codec.modality}"])
    print(f"{experiment.exp_dir.name}: {count} {codec.modality}s, "
          + fill(codec.experiment_report, {**summary["results"], "results_file": f"results_{tag}.json"}))
    return summary


def aggregate_codec_results(exp_dir: Path, tag: str, codec: SignalCodec, qcfg: QuantConfig) -> dict:
    """Write and return results_{tag}.json over every signal of the experiment with a metrics file."""
    records = read_run_records(exp_dir, f"metrics_{tag}.yml", yaml.safe_load)
    summary = {"name": exp_dir.name,
               "description": fill(codec.description, {"setting": qcfg.tag, "code": qcfg.code, "count": len(records)}),
               "results": {key: finite_mean(r.get(source) for r in records.values())
                           for key, source in codec.result_keys.items()},
               f"per_{codec.modality}": {name: {k: r.get(k) for k in codec.per_signal_keys}
                                         for name, r in records.items()}}
    write_json(exp_dir / f"results_{tag}.json", summary)
    return summary


def quantize_experiments(flag_values: dict, codec_type: Callable[..., SignalCodec], progress: bool = True) -> list[dict]:
    """Compress every experiment of codec_type's modality under --exp_root matching --exp_glob, on
    --device, AdaRound seeded with --seed; returns their results (on rank 0; [] on the other ranks
    of a torchrun group, which write no results file)."""
    from tqdm.auto import tqdm

    qcfg = QuantConfig.from_flags(flag_values)
    device = usable_device(distributed.join(flag_values["device"]))
    progress = progress and distributed.is_main()
    folders = experiment_folders(Path(flag_values["exp_root"]), flag_values["exp_glob"], modality=codec_type.modality)
    experiments = [open_experiment(exp_dir, codec_type, flag_values) for exp_dir in folders]
    work = distributed.share([(e, run_dir) for e in experiments for run_dir in e.runs])
    batch = batch_size_for(flag_values, codec_type, device)
    by_experiment: dict[int, tuple[CodedExperiment, list[Path]]] = {}
    for experiment, run_dir in work:
        by_experiment.setdefault(id(experiment), (experiment, []))[1].append(run_dir)
    for experiment, run_dirs in tqdm(list(by_experiment.values()), desc="experiments", unit="exp",
                                     disable=not progress):
        quantize_runs(experiment, run_dirs, qcfg, flag_values, device=device, batch=batch, progress=progress)
    distributed.barrier()
    if not distributed.is_main():
        return []
    return [summarize_experiment(e, qcfg) for e in experiments]
