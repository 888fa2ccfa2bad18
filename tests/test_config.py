import pytest
from inrcompress.config import basic_experiment_name, load_flags, save_flags, shape_experiment_name
from inrcompress.errors import InrError

PAPER_FLAGS = {"dataset": "KODAK", "downscaling_factor": 1, "epochs": 25000, "lr": 0.0005, "ff_dims": 16,
               "hidden_dims": 32, "hidden_layers": 3, "encoding": "nerf", "activation": "sine", "l1_reg": 1e-05,
               "encoding_scale": 1.4}


def test_folder_name_matches_the_paper():
    assert basic_experiment_name(PAPER_FLAGS) == \
        "KODAK_1x_epochs25000_lr0.0005_ffdims_16_hdims32_hlayer3_nerf_sine_l1_reg1e-05_enc_scale1.4"


def test_folder_name_drops_zero_l1_and_keeps_scale():
    flags = dict(PAPER_FLAGS, l1_reg=0.0, lr=0.0001, downscaling_factor=4, epochs=2000)
    assert basic_experiment_name(flags) == \
        "KODAK_4x_epochs2000_lr0.0001_ffdims_16_hdims32_hlayer3_nerf_sine_enc_scale1.4"


def test_shape_folder_name():
    flags = dict(PAPER_FLAGS, dataset="armadillo", epochs=250, lr=0.0001, l1_reg=0.0)
    assert shape_experiment_name(flags) == "armadillo_epochs250_lr0.0001_ffdims_16_hdims32_hlayer3_nerf_sine_enc_scale1.4"


def test_flags_yml_round_trip(tmp_path):
    save_flags(tmp_path / "FLAGS.yml", PAPER_FLAGS)
    assert load_flags(tmp_path / "FLAGS.yml", known=set(PAPER_FLAGS)) == PAPER_FLAGS


def test_flags_yml_strict_loading(tmp_path):
    save_flags(tmp_path / "FLAGS.yml", dict(PAPER_FLAGS, bogus=1))
    with pytest.raises(InrError, match="unknown keys"):
        load_flags(tmp_path / "FLAGS.yml", known=set(PAPER_FLAGS))
    (tmp_path / "bad.yml").write_text("- just\n- a list\n")
    with pytest.raises(InrError):
        load_flags(tmp_path / "bad.yml")
    with pytest.raises(InrError, match="missing"):
        load_flags(tmp_path / "absent.yml")
