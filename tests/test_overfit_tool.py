import json

import pytest
import torch
import yaml
from inrcompress.tools.overfit_inr import main as overfit_main

EXP = "TINY_1x_epochs60_lr0.0005_ffdims_16_hdims16_hlayer2_nerf_sine_enc_scale1.4"


def _args(data_root, exp_root, *extra):
    return [f"--data_root={data_root}", "--dataset=TINY", f"--exp_root={exp_root}", "--epochs=60", "--lr=0.0005",
            "--hidden_dims=16", "--hidden_layers=2", "--steps_til_summary=20", "--epochs_til_ckpt=25",
            "--device=cpu", *extra]


def test_fits_every_image_and_writes_the_experiment(tiny_dataset, tmp_path, capsys):
    exp_root = tmp_path / "exp"
    assert overfit_main(_args(tiny_dataset, exp_root)) == 0
    exp = exp_root / EXP
    flags = yaml.safe_load((exp / "FLAGS.yml").read_text())
    assert flags["hidden_dims"] == 16 and flags["dataset"] == "TINY" and "help" not in flags
    for name in ("astronaut", "chelsea"):
        ckpt = exp / name / "checkpoints"
        for f in ("model_final.pth", "model_best_.pth", "model_epoch_0025.pth", "model_epoch_0050.pth",
                  "train_losses_final.txt"):
            assert (ckpt / f).is_file(), f
        assert list((exp / name / "summaries").glob("events.out.tfevents.*"))
        assert (exp / name / "reconstruction.png").is_file()
        result = json.loads((exp / name / "result.json").read_text())
        assert result["psnr"] > 15 and 0 < result["ssim"] <= 1 and 0 < result["ms_ssim"] <= 1
        assert result["diverged"] is False
    summary = json.loads((exp / "result.json").read_text())
    assert summary["num_images"] == 2
    assert set(summary["psnr"]) == {"astronaut", "chelsea"}
    assert summary["avg_psnr"] == pytest.approx((summary["psnr"]["astronaut"] + summary["psnr"]["chelsea"]) / 2)
    state = torch.load(exp / "astronaut" / "checkpoints" / "model_best_.pth")
    assert "layers.0.weight" in state


def test_second_run_skips_finished_images_and_aggregates_all(tiny_dataset, tmp_path, capsys):
    exp_root = tmp_path / "exp"
    assert overfit_main(_args(tiny_dataset, exp_root)) == 0
    first = json.loads((exp_root / EXP / "result.json").read_text())
    # A new image arrives; the second run fits only it, yet result.json covers all three.
    (tiny_dataset / "TINY" / "astronaut.png").rename(tiny_dataset / "TINY" / "zz.png")
    (tiny_dataset / "TINY" / "astronaut.png").write_bytes((tiny_dataset / "TINY" / "zz.png").read_bytes())
    capsys.readouterr()
    assert overfit_main(_args(tiny_dataset, exp_root)) == 0
    out = capsys.readouterr().out
    assert "astronaut: already fitted, skipped" in out and "chelsea: already fitted, skipped" in out
    summary = json.loads((exp_root / EXP / "result.json").read_text())
    assert summary["num_images"] == 3
    assert summary["psnr"]["chelsea"] == first["psnr"]["chelsea"]


def test_interrupted_run_resumes(tiny_dataset, tmp_path, capsys):
    exp_root = tmp_path / "exp"

    def interrupt(step):
        if step == 40:
            raise KeyboardInterrupt

    assert overfit_main(_args(tiny_dataset, exp_root), step_hook=interrupt) == 130
    assert (exp_root / EXP / "astronaut" / "checkpoints" / "model_current_.pth").is_file()
    assert overfit_main(_args(tiny_dataset, exp_root)) == 0
    result = json.loads((exp_root / EXP / "astronaut" / "result.json").read_text())
    assert result["resumed_from"] == 25 and result["epochs_run"] == 60


def test_nan_is_marked_and_the_run_goes_on(tiny_dataset, tmp_path, capsys):
    exp_root = tmp_path / "exp"
    from inrcompress.experiments import images

    calls = {"n": 0}
    original = images.fit

    def poisoned_fit(model, *a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            def hook(step):
                if step == 30:
                    with torch.no_grad():
                        model.layers[0].bias.fill_(float("inf"))
            k["step_hook"] = hook
        return original(model, *a, **k)

    images.fit = poisoned_fit
    try:
        with pytest.warns(UserWarning, match="non-finite"):
            assert overfit_main(_args(tiny_dataset, exp_root)) == 0
    finally:
        images.fit = original
    summary = json.loads((exp_root / EXP / "result.json").read_text())
    assert summary["diverged"] == ["astronaut"]
    assert summary["num_images"] == 2
    assert "DIVERGED" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--epochs=0"], "epochs"),
    (["--activation=tanh"], "activation"),
    (["--encoding=fourier"], "encoding"),
    (["--hidden_dims=-3"], "hidden_dims"),
    (["--lr=abc"], "lr"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["--downscaling_factor=100"], "too small"),
])
def test_invalid_flags_give_one_line_and_exit_2(tiny_dataset, tmp_path, capsys, extra, message):
    assert overfit_main(_args(tiny_dataset, tmp_path / "exp", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_missing_and_empty_data_folders(tmp_path, capsys):
    assert overfit_main(_args(tmp_path / "nowhere", tmp_path / "exp")) == 2
    assert "data folder not found" in capsys.readouterr().err
    (tmp_path / "empty" / "TINY").mkdir(parents=True)
    (tmp_path / "empty" / "TINY" / "notes.txt").write_text("no images here")
    assert overfit_main(_args(tmp_path / "empty", tmp_path / "exp")) == 2
    assert "no .png/.jpg images" in capsys.readouterr().err


def test_unreadable_image(tiny_dataset, tmp_path, capsys):
    (tiny_dataset / "TINY" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert overfit_main(_args(tiny_dataset, tmp_path / "exp")) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot read image" in err and "broken.png" in err and "\n" not in err


def test_help_exits_0(capsys):
    assert overfit_main(["--help"]) == 0
    assert "hidden_dims" in capsys.readouterr().out


def test_rate_lambda_fits_in_their_own_folder_to_fewer_estimated_bits(tiny_dataset, tmp_path, capsys):
    """Beyond the paper: --rate_lambda adds the rate term to the fit; the experiment is named for it
    (the paper's name is unchanged without it) and its networks cost fewer estimated bits."""
    from inrcompress.codec.rate import RateTerm
    from inrcompress.config import ModelConfig
    from inrcompress.nn import INR

    exp_root = tmp_path / "exp"
    assert overfit_main(_args(tiny_dataset, exp_root)) == 0
    capsys.readouterr()
    assert overfit_main(_args(tiny_dataset, exp_root, "--rate_lambda=0.5")) == 0
    assert "DIVERGED" not in capsys.readouterr().out
    rate_exp = exp_root / f"{EXP}_rate_lambda0.5"
    assert yaml.safe_load((rate_exp / "FLAGS.yml").read_text())["rate_lambda"] == 0.5
    model = INR(ModelConfig(hidden_dims=16, hidden_layers=2, ff_dims=16))
    term = RateTerm.for_model(1.0, model, 1, 8)
    for name in ("astronaut", "chelsea"):
        bits = []
        for exp in (exp_root / EXP, rate_exp):
            model.load_state_dict(torch.load(exp / name / "checkpoints" / "model_final.pth"))
            with torch.no_grad():
                bits.append(float(term.bits({k: v[None] for k, v in model.named_parameters()})[0]))
        assert bits[1] < 0.97 * bits[0], bits
    assert overfit_main(_args(tiny_dataset, exp_root, "--rate_lambda=-1")) == 2
