"""The experiment layer (experiments/runs.py, experiments/quantize.py), shared by images and shapes:
experiment discovery, aggregation with finite means and valid JSON (null, never Infinity / NaN), the
quantize loop's --seed and --device, and the modality rule of the experiment modules' imports."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from inrcompress.codec.compress import QuantConfig
from inrcompress.config import ModelConfig, save_flags, write_json
from inrcompress.errors import InrError
from inrcompress.experiments import images, shape_fit
from inrcompress.experiments.image_codec import ImageCodec, run_quantize_and_test
from inrcompress.experiments.quantize import aggregate_codec_results
from inrcompress.experiments.runs import experiment_folders, experiment_modality, fitted_runs, unfinished
from inrcompress.experiments.shape_codec import ShapeCodec, run_quantize_and_test3d
from inrcompress.fit.engine import BEST_FILE, CHECKPOINT_DIR, FINAL_FILE
from inrcompress.nn import INR
from PIL import Image

from .conftest import photo_crop

EXPERIMENTS = Path(__file__).resolve().parents[1] / "lib" / "inrcompress" / "experiments"


def strict_json(path: Path):
    """Parse a JSON file refusing Infinity, -Infinity and NaN (which are not JSON)."""
    def refuse(name):
        raise ValueError(f"{path.name} holds {name}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_write_json_writes_null_for_every_non_finite_number(tmp_path):
    data = {"inf": math.inf, "neg": -math.inf, "nan": math.nan, "np32": np.float32("inf"), "np64": np.float64(2.5),
            "int": np.int64(3), "flag": np.bool_(True), "tensor": torch.tensor(1.5), "nested": [(1.0, math.nan)],
            "text": "Infinity"}
    path = write_json(tmp_path / "sub" / "out.json", data)
    assert strict_json(path) == {"inf": None, "neg": None, "nan": None, "np32": None, "np64": 2.5, "int": 3,
                                 "flag": True, "tensor": 1.5, "nested": [[1.0, None]], "text": "Infinity"}


def _run_results(exp_dir: Path, results: dict[str, str]) -> None:
    """Run folders with the given result.json text (the old writer put Infinity and NaN there)."""
    for name, text in results.items():
        (exp_dir / name).mkdir(parents=True)
        (exp_dir / name / "result.json").write_text(text)


def test_fit_aggregation_of_images_and_shapes_is_one_computation(tmp_path, capsys):
    records = {"a": '{"mse": 0.5, "psnr": 20.0, "vol_iou": 90.0, "chamfer": 0.001, "diverged": false}',
               "b": '{"mse": NaN, "psnr": Infinity, "vol_iou": 10.0, "chamfer": Infinity, "diverged": true}',
               "c": '{"mse": 0.25, "psnr": 30.0, "vol_iou": 80.0, "chamfer": 0.003, "diverged": false}',
               "d": 'not json'}
    image_exp, shape_exp = tmp_path / "images", tmp_path / "shapes"
    _run_results(image_exp, records)
    _run_results(shape_exp, records)
    with pytest.warns(UserWarning, match="skipping unreadable"):
        image_summary = images.finish_experiment(image_exp)
    with pytest.warns(UserWarning, match="skipping unreadable"):
        shape_summary = shape_fit.aggregate_shape_results(shape_exp)
    assert "3 images: mean PSNR 25.00 dB" in capsys.readouterr().out
    image_file, shape_file = strict_json(image_exp / "result.json"), strict_json(shape_exp / "result.json")
    assert image_file["psnr"] == {"a": 20.0, "b": None, "c": 30.0}
    assert image_file["avg_psnr"] == pytest.approx(25.0) and image_file["num_images"] == 3
    assert shape_file["chamfer"] == {"a": 0.001, "b": None, "c": 0.003}
    assert shape_file["avg_chamfer"] == pytest.approx(0.002) and shape_file["avg_vol_iou"] == pytest.approx(60.0)
    assert shape_file["num_shapes"] == 3 and "chamfer_convention" in shape_file
    # The metric both modalities have is aggregated identically: the same layer computes both.
    for key in ("mse", "avg_mse", "diverged"):
        assert image_file[key] == shape_file[key], key
    assert image_file["avg_mse"] == pytest.approx(0.375) and image_file["diverged"] == ["b"]
    assert image_summary["avg_mse"] == shape_summary["avg_mse"]


def _metrics_files(exp_dir: Path, tag: str, records: dict[str, dict]) -> None:
    for name, record in records.items():
        (exp_dir / name).mkdir(parents=True, exist_ok=True)
        (exp_dir / name / f"metrics_{tag}.yml").write_text(yaml.safe_dump(record))


def test_codec_results_of_images_and_shapes_have_finite_means_and_null(tmp_path):
    qcfg = QuantConfig(bitwidth=8, adaround=False, retrain=False, code="brotli")
    tag = f"{qcfg.code}_{qcfg.tag}"
    # A lossless decode has an infinite PSNR; a network without a surface an infinite Chamfer distance.
    image_exp = tmp_path / "img_exp"
    _metrics_files(image_exp, tag, {
        "a": {"bpp": 1.0, "bpp_payload": 0.8, "bytes": 100, "psnr": 30.0, "ssim": 0.9, "ms_ssim": 0.95,
              "encode_seconds": 1.0, "decode_seconds": 0.1},
        "b": {"bpp": 3.0, "bpp_payload": 2.8, "bytes": 300, "psnr": math.inf, "ssim": 1.0, "ms_ssim": 1.0,
              "encode_seconds": 3.0, "decode_seconds": 0.3}})
    codec = ImageCodec(image_exp, {}, {"data_root": str(tmp_path), "dataset": "none"})
    aggregate_codec_results(image_exp, tag, codec, qcfg)
    summary = strict_json(image_exp / f"results_{tag}.json")
    assert summary["results"]["bpp"] == pytest.approx(2.0) and summary["results"]["psnr-rgb"] == pytest.approx(30.0)
    assert summary["per_image"]["b"]["psnr"] is None and summary["per_image"]["a"]["bytes"] == 100
    assert summary["description"].startswith(f"inrcompress, {qcfg.tag}, brotli coding; 2 images;")

    shape_exp = tmp_path / "shape_exp"
    _metrics_files(shape_exp, tag, {
        "s1": {"bytes": 500, "bits_per_vertex": 4.0, "vol_iou": 95.0, "chamfer": 0.002, "mse": 1e-5,
               "encode_seconds": 2.0, "decode_seconds": 0.2},
        "s2": {"bytes": 700, "bits_per_vertex": 6.0, "vol_iou": 0.0, "chamfer": math.inf, "mse": math.nan,
               "encode_seconds": 4.0, "decode_seconds": 0.4}})
    codec = ShapeCodec(shape_exp, {"seed": 0}, {"data_root": str(tmp_path), "dataset": "none", "mc_resolution": 40})
    aggregate_codec_results(shape_exp, tag, codec, qcfg)
    summary = strict_json(shape_exp / f"results_{tag}.json")
    assert summary["results"]["bytes"] == pytest.approx(600) and summary["results"]["chamfer"] == pytest.approx(0.002)
    assert summary["results"]["mse"] == pytest.approx(1e-5) and summary["results"]["vol_iou"] == pytest.approx(47.5)
    assert summary["per_shape"]["s2"]["chamfer"] is None and summary["per_shape"]["s2"]["mse"] is None
    assert "; 2 shapes; " in summary["description"] and "Chamfer: mean squared" in summary["description"]


def test_experiment_folders_by_modality_and_run_folder_checks(tmp_path, capsys):
    root = tmp_path / "exp"
    save_flags(root / "KODAK_1x_img" / "FLAGS.yml", {"dataset": "KODAK", "downscaling_factor": 1})
    save_flags(root / "armadillo_shape" / "FLAGS.yml", {"dataset": "armadillo", "samples_per_shape": 100})
    (root / "no_flags").mkdir()
    save_flags(root / "maml" / "MAML_init" / "FLAGS.yml", {"maml_dataset": "DIV2K", "downscaling_factor": 1})
    assert experiment_modality({"samples_per_shape": 5, "downscaling_factor": 1}) == "shape"
    assert [p.name for p in experiment_folders(root, "*")] == ["KODAK_1x_img", "armadillo_shape"]
    assert [p.name for p in experiment_folders(root, "*", "image")] == ["KODAK_1x_img"]
    assert [p.name for p in experiment_folders(root, "*", "shape")] == ["armadillo_shape"]
    with pytest.raises(InrError, match="no shape experiment folder"):
        experiment_folders(root, "KODAK*", "shape")
    with pytest.raises(InrError, match="experiment root not found"):
        experiment_folders(tmp_path / "absent", "*")
    exp = root / "KODAK_1x_img"
    for name, files in {"done": (BEST_FILE, FINAL_FILE), "running": (BEST_FILE,), "fresh": ()}.items():
        (exp / name / CHECKPOINT_DIR).mkdir(parents=True)
        for file in files:
            (exp / name / CHECKPOINT_DIR / file).write_bytes(b"")
    (exp / "done" / "result.json").write_text("{}")
    assert [p.name for p in fitted_runs(exp)] == ["done", "running"]
    assert unfinished(exp, ["done", "running", "fresh"]) == ["running", "fresh"]
    assert capsys.readouterr().out == "done: already fitted, skipped\n"


ARCHITECTURE = {"encoding": "nerf", "activation": "sine", "hidden_dims": 16, "hidden_layers": 1, "ff_dims": 8,
                "encoding_scale": 1.4, "seed": 0}


@pytest.fixture
def image_experiment(tmp_path):
    """An image experiment whose one run holds a best state (a seeded random network: the quantize loop
    only reads it). 50 x 96 = 4800 pixels, more than AdaRound's 4096 rows per iteration, so that its
    row order (seeded with --seed) matters."""
    data = tmp_path / "data"
    (data / "TINY").mkdir(parents=True)
    Image.fromarray(photo_crop("astronaut", 50, 96)).save(data / "TINY" / "photo.png")
    exp = tmp_path / "exp" / "TINY_exp"
    save_flags(exp / "FLAGS.yml", {**ARCHITECTURE, "dataset": "TINY", "downscaling_factor": 1})
    torch.manual_seed(0)
    model = INR(ModelConfig(in_features=2, out_features=3, encoding="nerf", hidden_dims=16, hidden_layers=1,
                            ff_dims=8, encoding_scale=1.4))
    (exp / "photo" / CHECKPOINT_DIR).mkdir(parents=True)
    torch.save(model.state_dict(), exp / "photo" / CHECKPOINT_DIR / BEST_FILE)
    return data, tmp_path / "exp"


def _quantize_flags(data: Path, exp_root: Path, **overrides) -> dict:
    return {"data_root": str(data), "dataset": "TINY", "exp_root": str(exp_root), "exp_glob": "*", "device": "cpu",
            "seed": 0, "skip_existing": False, "bitwidth": 6, "adaround": True, "adaround_iterations": 100,
            "adaround_reg": 1e-4, "retrain": False, "retrain_epochs": 1, "retrain_lr": 1e-6, "code": "arithmetic",
            "mc_resolution": 40, **overrides}


def test_quantize_seed_seeds_adaround(image_experiment, capsys):
    data, exp_root = image_experiment
    inr = next(iter(exp_root.glob("*/photo"))) / "compressed_arithmetic_bw6_adaround_iter_100_adaround_reg_0.0001.inr"
    files = {}
    for run, seed in (("first", 0), ("again", 0), ("other", 1)):
        [summary] = run_quantize_and_test(_quantize_flags(data, exp_root, seed=seed), progress=False)
        files[run] = inr.read_bytes()
        metrics = yaml.safe_load((inr.parent / inr.name.replace("compressed_", "metrics_").replace(".inr", ".yml"))
                                 .read_text())
        assert metrics["bytes"] == len(files[run]) and summary["per_image"]["photo"]["bytes"] == len(files[run])
    assert files["first"] == files["again"]
    assert files["first"] != files["other"]
    assert "photo:" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of a device this machine lacks")
@pytest.mark.parametrize("run", [run_quantize_and_test, run_quantize_and_test3d])
def test_quantize_device_is_read_and_an_absent_one_refused_before_work(image_experiment, run):
    data, exp_root = image_experiment
    with pytest.raises(InrError, match="device cuda cannot be used here"):
        run(_quantize_flags(data, exp_root, device="cuda"), progress=False)
    assert not list(exp_root.glob("*/*/compressed_*"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_quantize_on_cuda_gives_a_file_that_decodes_to_its_metrics(image_experiment):
    data, exp_root = image_experiment
    [summary] = run_quantize_and_test(_quantize_flags(data, exp_root, device="cuda"), progress=False)
    [cpu_summary] = run_quantize_and_test(_quantize_flags(data, exp_root, device="cpu"), progress=False)
    assert summary["per_image"]["photo"]["psnr"] == pytest.approx(cpu_summary["per_image"]["photo"]["psnr"], abs=0.5)


def _imported_modules(path: Path) -> set[str]:
    """Every inrcompress module a file imports (top level or deferred; `from X import name` counts
    X.name, which may be a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("inrcompress")}


def _modality(module: str) -> str | None:
    leaf = module.rsplit(".", 1)[-1]
    return "image" if leaf.startswith("image") else "shape" if leaf.startswith("shape") else None


def test_no_experiment_module_of_one_modality_imports_the_other_and_both_use_the_layer():
    modules = {p.stem: _imported_modules(p) for p in EXPERIMENTS.glob("*.py")}
    assert {"images", "image_codec", "shape_fit", "shape_codec", "runs", "quantize"} <= set(modules)
    for name, imported in modules.items():
        own = _modality(name)
        crossing = sorted(m for m in imported if own and _modality(m) not in (None, own))
        assert not crossing, f"experiments.{name} ({own}) imports {crossing}"
    for layer in ("runs", "quantize"):
        assert not any(_modality(m) for m in modules[layer] if m.startswith("inrcompress.experiments")), layer
    for name in ("images", "shape_fit"):
        assert "inrcompress.experiments.runs" in modules[name], name
    for name in ("image_codec", "shape_codec"):
        assert "inrcompress.experiments.quantize" in modules[name], name
