"""overfitMetaSiren.py: fitting a folder of images from a meta-learned initialization (fit/meta.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import torch

from inrcompress.config import maml_experiment_name, maml_init_folder, model_config_from_flags, save_flags
from inrcompress.errors import InrError
from inrcompress.experiments.images import (
    ImageSignal,
    batch_images_for,
    check_images,
    evaluate,
    finish_experiment,
    fit_groups,
    fit_image,
    fit_images_batched,
    report_fit,
)
from inrcompress.experiments.runs import train_config_for, unfinished
from inrcompress.fit import distributed
from inrcompress.fit.engine import load_checkpoint, resolve_device
from inrcompress.fit.meta import MAML_INIT_FILE, MAML_OBJ_FILE, is_trained, load_maml_obj
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values, list_images, load_image, to_landscape


def find_init(flag_values: dict) -> Path:
    """The folder of the meta-learned init that the MAML and architecture flags name."""
    folder = maml_init_folder(flag_values)
    if not is_trained(folder):
        raise InrError(f"no meta-learned initialization at {folder} (expected {MAML_INIT_FILE} and {MAML_OBJ_FILE} "
                       "there): run trainMetaSiren.py with the same maml_* / inner_lr / outer_lr / lr_type, "
                       "downscaling_factor and architecture flags first")
    return folder


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_overfit_meta(flag_values: dict, *, step_hook=None, show_progress: bool = True) -> Path:
    """overfitMetaSiren.py: fit every image of data_root/dataset starting from the meta-learned init;
    returns the experiment folder. Under torchrun each rank fits its share of the unfinished images
    (fit/distributed.py)."""
    device = resolve_device(distributed.join(flag_values["device"]))
    step_hook, show_progress = distributed.with_test_kill(step_hook), show_progress and distributed.is_main()
    init_dir = find_init(flag_values)
    meta = load_maml_obj(init_dir / MAML_OBJ_FILE, device)
    cfg = meta.model.cfg
    expected = model_config_from_flags(flag_values, in_features=2, out_features=cfg.out_features)
    if cfg.encoding == "gauss" and cfg.gauss_seed != expected.gauss_seed:
        raise InrError(f"the gauss encoding of {init_dir} was drawn with --seed {cfg.gauss_seed}; pass that seed")
    if dataclasses.replace(expected, gauss_seed=cfg.gauss_seed) != cfg:
        raise InrError(f"{init_dir / MAML_OBJ_FILE} holds another architecture than the flags ask for")
    init_state = load_checkpoint(init_dir / MAML_INIT_FILE)
    theta_0 = {k: v.to(device) for k, v in init_state.items()}
    for name, p in meta.model.named_parameters():
        if name not in init_state or not torch.equal(init_state[name].to(device), p.detach()):
            raise InrError(f"{init_dir}: {MAML_INIT_FILE} and {MAML_OBJ_FILE} hold different initializations")

    images = list_images(Path(flag_values["data_root"]) / flag_values["dataset"])
    factor = int(flag_values["downscaling_factor"])
    check_images(images, factor)
    exp_dir = Path(flag_values["exp_root"]) / maml_experiment_name(flag_values)
    exp_dir.mkdir(parents=True, exist_ok=True)
    marker = exp_dir / MAML_INIT_FILE
    if marker.is_file() and _file_digest(marker) != _file_digest(init_dir / MAML_INIT_FILE):
        raise InrError(f"{exp_dir} was fitted from another meta-learned init (its {MAML_INIT_FILE} differs from "
                       f"{init_dir / MAML_INIT_FILE}; the folder name does not hold maml_dataset): use another "
                       "--exp_root")
    if not marker.is_file() and distributed.is_main():
        tmp = marker.with_name(f".{marker.name}.tmp")
        shutil.copyfile(init_dir / MAML_INIT_FILE, tmp)
        tmp.replace(marker)
    save_flags(exp_dir / "FLAGS.yml", {**flag_values, "maml_init": str(init_dir)})
    # The paper's --batch_size is unused (an image is one batch); it is not TrainConfig.batch_size (points).
    fit_flags = {k: v for k, v in flag_values.items() if k != "batch_size"}
    print(f"experiment: {exp_dir} ({len(images)} images, init {init_dir.name}, device {device})")
    pending = []  # (signal, adapted model, extra result entries, run_dir)
    to_fit = set(unfinished(exp_dir, [p.stem for p in images]))
    for path in distributed.share([p for p in images if p.stem in to_fit]):
        run_dir = exp_dir / path.stem
        original = load_image(path, factor)
        if original.shape[2] != cfg.out_features:
            raise InrError(f"{path} has {original.shape[2]} channel(s), the meta-learned init {cfg.out_features}")
        fitted, rotated = to_landscape(original)
        coords = coordinate_grid(fitted.shape[:2]).to(device)
        signal = ImageSignal(path.stem, fitted, coords, image_to_values(fitted).to(device), rotated=rotated)
        with torch.no_grad():
            features = meta.model.encode(coords)
        adapted, inner_losses = meta.adapt(features, signal.values)
        inner_metrics, _ = evaluate(adapted, signal)
        extra = {"rotated": rotated, "inner_losses": inner_losses,
                 **{f"{k}_after_inner_steps": v for k, v in inner_metrics.items()}}
        pending.append((signal, adapted, extra, run_dir))
    groups = fit_groups([p[0] for p in pending], [p[3] for p in pending], batch_images_for(flag_values, device))
    for group in groups:
        members = [pending[i] for i in group]
        train_cfg = train_config_for(fit_flags, members[0][0].coords.shape[0] * len(members))
        if len(members) == 1:
            signal, adapted, extra, run_dir = members[0]
            results = [fit_image(signal, cfg, train_cfg, run_dir, device, model=adapted, reference_params=theta_0,
                                 step_hook=step_hook, show_progress=show_progress, extra=extra)]
        else:
            results = fit_images_batched([m[0] for m in members], cfg, train_cfg, [m[3] for m in members], device,
                                         models=[m[1] for m in members],
                                         reference_params=[theta_0] * len(members),
                                         extras=[m[2] for m in members], step_hook=step_hook,
                                         show_progress=show_progress)
        for (signal, _, extra, _), result in zip(members, results):
            turned = " (fitted turned)" if extra["rotated"] else ""
            report_fit(signal.name, result, len(members),
                       f"{turned} PSNR {extra['psnr_after_inner_steps']:.2f} dB after the inner steps ->")
    distributed.barrier()
    if distributed.is_main():
        finish_experiment(exp_dir)
    return exp_dir

