"""Meta-learned initializations (issue 4): torch.func MAML, trainMetaSiren / overfitMetaSiren, and the
compress/decode round trip from a meta-learned init, on tiny crops of scikit-image photographs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from inrcompress.config import ModelConfig, TrainConfig, maml_experiment_name, maml_init_name
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values
from inrcompress.errors import InrError
from inrcompress.fit.meta import LR_TYPES, MetaSGD, inner_loss, load_maml_obj
from inrcompress.signals.meta_datasets import meta_datasets
from inrcompress.evaluate.metrics import psnr, psnr_from_mse
from inrcompress.nn import INR
from inrcompress.tools.decode import main as decode_main
from inrcompress.tools.overfit_meta_siren import main as overfit_meta_main
from inrcompress.tools.quantize_and_test import main as quantize_main
from inrcompress.tools.train_meta_siren import main as train_meta_main
from inrcompress.fit.train import fit
from PIL import Image

from .conftest import photo_crop

H, W = 24, 32
TINY_ARCH = ["--hidden_dims=16", "--hidden_layers=2", "--device=cpu"]


def crop(name: str, height: int = H, width: int = W) -> np.ndarray:
    if name == "camera":  # grayscale photograph -> RGB
        from skimage import data as skdata

        gray = np.asarray(Image.fromarray(skdata.camera()).resize((width, height), Image.LANCZOS))
        return np.repeat(gray[:, :, None], 3, axis=2)
    return photo_crop(name, height, width)


TRAIN_NAMES = ("astronaut", "chelsea", "coffee", "camera")


@pytest.fixture(scope="module")
def meta_root(tmp_path_factory) -> Path:
    """data_root with META (5 landscape crops + 1 portrait crop for meta-training; the last one by name,
    the portrait, is the validation image) and TINY (a held-out landscape and a portrait image)."""
    root = tmp_path_factory.mktemp("data")
    meta = root / "META"
    meta.mkdir()
    for i, name in enumerate(TRAIN_NAMES + ("rocket",)):
        Image.fromarray(crop(name)).save(meta / f"{i:02d}_{name}.png")
    Image.fromarray(crop("astronaut", W, H)).save(meta / "09_portrait.png")
    tiny = root / "TINY"
    tiny.mkdir()
    Image.fromarray(crop("rocket")).save(tiny / "rocket.png")
    Image.fromarray(crop("chelsea", W, H)).save(tiny / "portrait.png")
    return root


def _targets(names) -> torch.Tensor:
    return torch.stack([image_to_values(crop(n)) for n in names])


def _meta(lr_type: str = "per_parameter_per_step", inner_lr: float = 1e-2, steps: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    meta = MetaSGD(INR(ModelConfig(hidden_dims=16, hidden_layers=2)), steps, lr_type, inner_lr)
    features = meta.model.encode(coordinate_grid((H, W))).detach()
    return meta, features


# ------------------------------------------------------------------------------------------------
# names

def test_folder_names_follow_the_paper():
    flags = {"maml_dataset": "DIV2K", "dataset": "KODAK", "downscaling_factor": 1, "maml_batch_size": 1,
             "maml_epochs": 30, "outer_lr": 5e-5, "inner_lr": 1e-5, "lr_type": "per_parameter_per_step",
             "maml_adaptation_steps": 3, "ff_dims": 16, "hidden_dims": 32, "hidden_layers": 3, "encoding": "nerf",
             "activation": "sine", "encoding_scale": 1.4, "epochs": 25000, "lr": 5e-4, "l1_reg": 1e-5}
    assert maml_init_name(flags) == (
        "MAML_DIV2K_1x_batch_size1_epochs30_outer_lr5e-05_inner_lr1e-05_lr_type_per_parameter_per_step_adapt_steps3"
        "_ffdims_16_hdims32_hlayer3_nerf_sine_enc_scale1.4")
    assert maml_experiment_name(flags) == (
        "KODAK_1x_maml_batch_size1_epochs25000_lr0.0005_outer_lr5e-05_inner_lr1e-05_lr_type_per_parameter_per_step"
        "_maml_epochs30_adapt_steps3_ffdims_16_hdims32_hlayer3_nerf_sine_l1_reg1e-05_enc_scale1.4")


# ------------------------------------------------------------------------------------------------
# meta-gradients

def _reference_meta_grads(meta: MetaSGD, features, targets, first_order: bool):
    """Plain autograd: the inner gradients with create_graph=True (or detached for first order)."""
    names = meta.names
    init = dict(meta.model.named_parameters())
    losses = []
    for target in targets:
        params = dict(init)
        for lrs in meta.step_lrs():
            loss = inner_loss(params, features, target, meta.activation)
            grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=not first_order)
            if first_order:
                grads = [g.detach() for g in grads]
            params = {n: params[n] - lrs[n] * g for n, g in zip(names, grads)}
        losses.append(inner_loss(params, features, target, meta.activation))
    total = torch.stack(losses).mean()
    wrt = list(meta.parameters())
    return total, torch.autograd.grad(total, wrt)


@pytest.mark.parametrize("lr_type", ["per_parameter_per_step", "per_step"])
def test_second_order_meta_gradients_equal_autograd(lr_type):
    meta, features = _meta(lr_type)
    targets = _targets(("astronaut", "chelsea", "coffee"))
    ref_loss, ref_grads = _reference_meta_grads(meta, features, targets, first_order=False)
    for vectorize in (True, False):
        meta.zero_grad()
        outer, _ = meta.meta_backward(features, targets, vectorize=vectorize)
        assert float(outer.mean()) == pytest.approx(float(ref_loss.detach()), rel=1e-6)
        for p, g in zip(meta.parameters(), ref_grads):
            assert torch.allclose(p.grad, g, rtol=0, atol=1e-5), float((p.grad - g).abs().max())
    # Second order matters here: the first-order gradient differs.
    _, fo_grads = _reference_meta_grads(meta, features, targets, first_order=True)
    assert max(float((a - b).abs().max()) for a, b in zip(fo_grads, ref_grads)) > 1e-4


def test_first_order_meta_gradients_equal_autograd():
    meta, features = _meta()
    targets = _targets(("rocket", "camera"))
    _, ref_grads = _reference_meta_grads(meta, features, targets, first_order=True)
    meta.zero_grad()
    meta.meta_backward(features, targets, first_order=True, vectorize=True)
    for p, g in zip(meta.parameters(), ref_grads):
        assert torch.allclose(p.grad, g, rtol=0, atol=1e-5)


@pytest.mark.parametrize("lr_type", LR_TYPES)
def test_every_lr_type_trains(lr_type):
    meta, features = _meta(lr_type, inner_lr=1e-2)
    learned_before = [p.detach().clone() for p in meta.lr_parameters()]
    optimizer = torch.optim.Adam(meta.parameters(), lr=2e-3)
    targets = _targets(("astronaut", "coffee"))
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        outer, _ = meta.meta_backward(features, targets)
        optimizer.step()
        losses.append(float(outer.mean()))
    assert losses[-1] < 0.9 * losses[0], losses
    if lr_type == "static":
        assert learned_before == [] and float(meta.lr) == pytest.approx(1e-2)
        assert "lr" in dict(meta.named_buffers())
    else:
        assert learned_before and all(not torch.equal(a, b) for a, b in zip(learned_before, meta.lr_parameters()))
    # maml_obj round trip keeps everything
    clone = MetaSGD.from_obj(meta.to_obj())
    assert clone.lr_type == lr_type and all(torch.equal(a, b) for a, b in
                                            zip(clone.state_dict().values(), meta.state_dict().values()))


def test_meta_learned_init_fits_a_held_out_image_in_fewer_steps():
    """Meta-train on 4 photographs, fit a fifth (rocket, never seen): from the MAML init (after its 3
    inner steps) a plain Adam fit passes 20 and 25 dB at least 4x sooner than from the random init it
    started at (measured on this CPU: 20 dB after 0 vs 43 steps, 25 dB after 7 vs 74)."""
    meta, features = _meta(inner_lr=1e-2)
    random_init = copy.deepcopy(meta.model)
    optimizer = torch.optim.Adam(meta.parameters(), lr=1e-3)
    targets = _targets(TRAIN_NAMES)
    generator = torch.Generator().manual_seed(0)
    for _ in range(120):
        optimizer.zero_grad()
        meta.meta_backward(features, targets[torch.randperm(len(targets), generator=generator)[:2]])
        optimizer.step()
    held_out = image_to_values(crop("rocket"))
    adapted, _ = meta.adapt(features, held_out)
    coords = coordinate_grid((H, W))
    cfg = TrainConfig(epochs=150, lr=1e-3, patience=1000)

    def psnr_curve(model):
        return [psnr_from_mse(loss / 4) for loss in fit(model, coords, held_out, cfg, None, show_progress=False).losses]

    def steps_to(curve, threshold):
        return next((i for i, value in enumerate(curve) if value >= threshold), len(curve))

    maml, random = psnr_curve(adapted), psnr_curve(random_init)
    assert maml[0] > random[0] + 5  # after its 3 inner steps the init is a rough fit already
    for threshold in (20.0, 25.0):
        assert 4 * steps_to(maml, threshold) <= steps_to(random, threshold), (threshold, maml, random)


# ------------------------------------------------------------------------------------------------
# datasets

def test_div2k_and_celeba_layouts(tmp_path):
    div2k = tmp_path / "DIV2K"
    for sub, names in (("DIV2K_train_HR", ("0001", "0002")), ("DIV2K_valid_HR", ("0801",))):
        (div2k / sub).mkdir(parents=True)
        for n in names:
            Image.fromarray(crop("coffee", 90, 60)).save(div2k / sub / f"{n}.png")  # portrait
    train, val = meta_datasets(tmp_path, "DIV2K", 32)
    assert (len(train), len(val)) == (2, 1)
    assert train.image(0).shape == (512 // 32, 768 // 32, 3) == val.image(0).shape

    celeba = tmp_path / "CelebA"
    (celeba / "img_align_celeba_png").mkdir(parents=True)
    rows = ["image_id,partition"]
    for i, part in enumerate((0, 0, 1, 2)):
        Image.fromarray(crop("astronaut", 218, 178)).save(celeba / "img_align_celeba_png" / f"{i:06d}.png")
        rows.append(f"{i:06d}.jpg,{part}")
    (celeba / "list_eval_partition.csv").write_text("\n".join(rows) + "\n")
    train, val = meta_datasets(tmp_path, "CelebA", 8)
    assert (len(train), len(val)) == (2, 1)
    # (218 // 8, 178 // 8) = (27, 22), turned to landscape like every image a meta-learned model sees
    assert train.image(1).shape == (22, 27, 3)

    with pytest.raises(InrError, match="not found"):
        meta_datasets(tmp_path, "NOPE", 1)


def test_plain_folder_split_and_sizes(meta_root):
    train, val = meta_datasets(meta_root, "META", 2)
    assert len(train) == 5 and [p.name for p in val.paths] == ["09_portrait.png"]
    assert val.image(0).shape == train.image(0).shape == (H // 2, W // 2, 3)


# ------------------------------------------------------------------------------------------------
# the tools

MAML_FLAGS = ["--maml_dataset=META", "--maml_epochs=12", "--maml_batch_size=2", "--inner_lr=0.01",
              "--outer_lr=0.002", "--lr_type=per_parameter_per_step", *TINY_ARCH]
META_FLAGS = [*MAML_FLAGS, "--steps_til_summary=10", "--maml_val_every=10"]


def test_train_meta_resumes_to_the_same_result(meta_root, tmp_path):
    common = [f"--data_root={meta_root}", *META_FLAGS]
    assert train_meta_main(common + [f"--exp_root={tmp_path / 'a'}"], show_progress=False) == 0

    def interrupt(step):
        if step == 20:
            raise KeyboardInterrupt

    assert train_meta_main(common + [f"--exp_root={tmp_path / 'b'}"], show_progress=False,
                           step_hook=interrupt) == 130
    folder_b = next((tmp_path / "b" / "maml").iterdir())
    assert (folder_b / "maml_resume.pth").is_file() and not (folder_b / "model_maml.pth").exists()
    assert train_meta_main(common + [f"--exp_root={tmp_path / 'b'}"], show_progress=False) == 0
    folder_a = next((tmp_path / "a" / "maml").iterdir())
    a, b = (torch.load(f / "maml_obj.pth", weights_only=False) for f in (folder_a, folder_b))
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    result = json.loads((folder_a / "maml_result.json").read_text())
    assert result["steps_run"] == 36 and result["train_images"] == 5 and result["val_images"] == 1
    assert result["val_psnr_adapted"] > result["history"][0]["val_psnr_adapted"]
    assert not (folder_b / "maml_resume.pth").exists()
    saved = yaml.safe_load((folder_a / "FLAGS.yml").read_text())
    assert saved["hidden_dims"] == 16 and saved["maml_dataset"] == "META" and "help" not in saved


def test_train_meta_early_stop_ends_when_validation_stops_improving(meta_root, tmp_path):
    """With outer_lr 0 the validation never improves on the first one (step 0): --maml_early_stop 4
    ends the run after outer step 5 (the best is then 5 > 4 steps old); without it all 36 run."""
    frozen = [f"--data_root={meta_root}", *[f for f in META_FLAGS if not f.startswith("--outer_lr")],
              "--outer_lr=0", "--maml_val_every=2"]
    for early_stop, steps in ((4, 6), (0, 36)):
        root = tmp_path / f"stop{early_stop}"
        assert train_meta_main(frozen + [f"--exp_root={root}", f"--maml_early_stop={early_stop}"],
                               show_progress=False) == 0
        result = json.loads((next((root / "maml").iterdir()) / "maml_result.json").read_text())
        assert (result["steps_run"], result["best_step"], result["stopped_early"]) == (steps, 0, early_stop > 0)
    assert train_meta_main(frozen + [f"--exp_root={tmp_path / 'bad'}", "--maml_early_stop=-1"]) == 2


def test_meta_round_trip_through_quantize_and_decode(meta_root, tmp_path, capsys):
    exp_root = tmp_path / "exp"
    assert train_meta_main([f"--data_root={meta_root}", f"--exp_root={exp_root}", *META_FLAGS],
                           show_progress=False) == 0
    init_dir = next((exp_root / "maml").iterdir())
    fit_flags = [f"--data_root={meta_root}", f"--exp_root={exp_root}", "--dataset=TINY", "--epochs=80",
                 "--warmup=10", *MAML_FLAGS]
    assert overfit_meta_main(fit_flags, show_progress=False) == 0
    exp = next(p for p in exp_root.iterdir() if p.name.startswith("TINY_1x_maml_batch_size2_epochs80"))
    assert (exp / "model_maml.pth").read_bytes() == (init_dir / "model_maml.pth").read_bytes()
    portrait = json.loads((exp / "portrait" / "result.json").read_text())
    assert portrait["rotated"] and (portrait["height"], portrait["width"]) == (W, H)
    assert np.asarray(Image.open(exp / "portrait" / "reconstruction.png")).shape == (W, H, 3)
    assert portrait["psnr"] > portrait["psnr_after_inner_steps"]

    assert quantize_main([f"--data_root={meta_root}", "--dataset=TINY", f"--exp_root={exp_root}", "--exp_glob=TINY*",
                          "--device=cpu", "--adaround_iterations=20", "--retrain_epochs=5", "--bitwidth=8"]) == 0
    other_init = tmp_path / "other_maml.pth"
    state = torch.load(init_dir / "model_maml.pth", weights_only=False)
    state["layers.0.bias"] = state["layers.0.bias"] + 1e-3
    torch.save(state, other_init)
    for name in ("portrait", "rocket"):
        metrics_file = next((exp / name).glob("metrics_arithmetic_bw8_*.yml"))
        metrics = yaml.safe_load(metrics_file.read_text())
        inr = exp / name / metrics["file"]
        out = tmp_path / f"{name}.png"
        assert decode_main([str(inr), str(out), f"--init={exp / 'model_maml.pth'}"]) == 0
        decoded = np.asarray(Image.open(out))
        original = np.asarray(Image.open(meta_root / "TINY" / f"{name}.png"))
        assert decoded.shape == original.shape
        assert psnr(decoded / 255.0, original / 255.0) == metrics["psnr"]
        assert metrics["psnr"] > 15
        capsys.readouterr()
        assert decode_main([str(inr), str(tmp_path / "x.png")]) == 2
        assert "--init" in capsys.readouterr().err
        assert decode_main([str(inr), str(tmp_path / "x.png"), f"--init={other_init}"]) == 2
        assert "not the one" in capsys.readouterr().err

    # the experiment folder name does not hold maml_dataset: another init into it is refused
    with open(exp / "model_maml.pth", "ab") as f:
        f.write(b"x")
    assert overfit_meta_main(fit_flags, show_progress=False) == 2
    assert "another meta-learned init" in capsys.readouterr().err


def test_missing_init_folder_is_one_clear_error(meta_root, tmp_path, capsys):
    code = overfit_meta_main([f"--data_root={meta_root}", f"--exp_root={tmp_path}", "--dataset=TINY",
                              "--maml_dataset=META", "--hidden_dims=24", "--device=cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    expected = tmp_path / "maml" / maml_init_name({
        "maml_dataset": "META", "downscaling_factor": 1, "maml_batch_size": 1, "maml_epochs": 1, "outer_lr": 5e-5,
        "inner_lr": 1e-5, "lr_type": "per_parameter_per_step", "maml_adaptation_steps": 3, "ff_dims": 16,
        "hidden_dims": 24, "hidden_layers": 3, "encoding": "nerf", "activation": "sine", "encoding_scale": 1.4})
    assert err.startswith("error: no meta-learned initialization at") and str(expected) in err


def test_flags_and_bad_maml_obj(tmp_path, capsys):
    assert train_meta_main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("data_root", "exp_root", "maml_dataset", "lr_type", "maml_epochs", "maml_batch_size",
                 "maml_adaptation_steps", "inner_lr", "outer_lr", "activation", "encoding", "hidden_dims",
                 "hidden_layers", "downscaling_factor", "ff_dims", "encoding_scale", "steps_til_summary", "seed",
                 "device"):
        assert f"--{name}" in out, name
    from inrcompress.tools.overfit_meta_siren import build_flags

    fv = build_flags()
    fv(["prog"])
    assert (fv.ff_dims, fv.hidden_dims, fv.epochs, fv.lr, fv.l1_reg, fv.warmup, fv.maml_adaptation_steps,
            fv.inner_lr, fv.outer_lr, fv.lr_type, fv.batch_size) == (
        16, 32, 1000, 5e-4, 1e-5, 100, 3, 1e-5, 5e-5, "per_parameter_per_step", 1)
    assert train_meta_main(["--lr_type=adam"]) == 2
    bad = tmp_path / "maml_obj.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InrError):
        load_maml_obj(bad)


def test_overfit_meta_batched_equals_one_by_one(meta_root, tmp_path, capsys):
    import shutil

    one, many = tmp_path / "one", tmp_path / "many"
    assert train_meta_main([f"--data_root={meta_root}", f"--exp_root={one}", *META_FLAGS], show_progress=False) == 0
    shutil.copytree(one / "maml", many / "maml")
    fit_flags = [f"--data_root={meta_root}", "--dataset=TINY", "--epochs=40", "--warmup=5", *MAML_FLAGS]
    assert overfit_meta_main([f"--exp_root={one}", "--batch_images=1", *fit_flags], show_progress=False) == 0
    assert "at once" not in capsys.readouterr().out
    # rocket and the portrait (turned to landscape) have one size: they are fitted together
    assert overfit_meta_main([f"--exp_root={many}", "--batch_images=2", *fit_flags], show_progress=False) == 0
    assert capsys.readouterr().out.count("fitted turned") == 1
    name = next(p.name for p in one.iterdir() if p.name.startswith("TINY"))
    for image in ("rocket", "portrait"):
        a = json.loads((one / name / image / "result.json").read_text())
        b = json.loads((many / name / image / "result.json").read_text())
        assert b["psnr"] == pytest.approx(a["psnr"], abs=1e-3)
        assert b["psnr_after_inner_steps"] == a["psnr_after_inner_steps"]
        assert b["rotated"] == a["rotated"]
