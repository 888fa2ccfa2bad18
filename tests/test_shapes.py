"""3D shapes: signed distances, normalization, sampling, fitting, evaluation, the .inr round trip and
the tools' error paths. Meshes come from trimesh.creation (icosphere, torus); every fit is tiny."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import trimesh
import yaml
from inrcompress.codec.container import InrHeader, write_inr
from inrcompress.config import ModelConfig, TrainConfig
from inrcompress.nn import INR
from inrcompress.codec.quant import nearest_quantization
from inrcompress.experiments.shape_codec import measure_decoded_shape
from inrcompress.signals.shape_eval import chamfer_distance, extract_surface, render_view, volumetric_iou
from inrcompress.experiments.shape_fit import fit_shape, shape_model_config
from inrcompress.signals.shape import (
    SAMPLES_FILE,
    Mesh,
    SignedDistance,
    list_shapes,
    load_mesh,
    load_samples,
    normalize_vertices,
    sample_shape,
)
from inrcompress.tools.decode_shape import main as decode_main
from inrcompress.tools.normalize_shapes import main as normalize_main
from inrcompress.tools.overfit_inr3d import main as overfit_main
from inrcompress.tools.quantize_and_test3d import main as quantize_main

# Torus of the round trip: radii 0.5 / 0.25 before normalization (2/3 and 1/3 after).
MAJOR, MINOR = 0.5, 0.25
FIT_FLAGS = ["--samples_per_shape=2000", "--batch_size=2000", "--epochs=60", "--lr=0.001", "--hidden_dims=16",
             "--mc_resolution=40", "--steps_til_summary=150", "--epochs_til_ckpt=20", "--device=cpu"]
EXP = "tor_epochs60_lr0.001_ffdims_16_hdims16_hlayer3_nerf_sine_enc_scale1.4"
QUICK_QUANT = ["--adaround_iterations=30", "--retrain_epochs=5", "--mc_resolution=40", "--device=cpu"]


def torus_sdf(p: np.ndarray, major: float, minor: float) -> np.ndarray:
    """Exact signed distance to a torus around the z axis."""
    ring = np.hypot(p[:, 0], p[:, 1]) - major
    return np.hypot(ring, p[:, 2]) - minor


def as_mesh(tm: trimesh.Trimesh, path: str = "") -> Mesh:
    return Mesh(np.asarray(tm.vertices, dtype=np.float64), np.asarray(tm.faces, dtype=np.int64), path)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A displaced, scaled torus .ply, normalized by the tool, fitted by the tool (300 steps)."""
    root = tmp_path_factory.mktemp("shapes")
    data = root / "data"
    (data / "tor").mkdir(parents=True)
    tm = trimesh.creation.torus(major_radius=MAJOR, minor_radius=MINOR, major_sections=48, minor_sections=24)
    tm.apply_scale(3.0)
    tm.apply_translation([0.4, -0.7, 1.2])
    tm.export(data / "tor" / "torus.ply")
    assert normalize_main([f"--shape_glob={data / 'tor' / '*'}"]) == 0
    exp_root = root / "exp"
    assert overfit_main([f"--data_root={data}", "--dataset=tor", f"--exp_root={exp_root}", *FIT_FLAGS]) == 0
    return data, exp_root


# --------------------------------------------------------------------------------------------------
# Signed distance, sampling, normalization


def test_signed_distance_of_a_sphere_is_the_analytic_one_negative_inside():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    points = np.random.default_rng(0).uniform(-1, 1, (4000, 3))
    exact = np.linalg.norm(points, axis=1) - 0.5
    for faces in (sphere.faces, sphere.faces[:, ::-1]):  # outward and inward winding give the same SDF
        sdf = SignedDistance(Mesh(np.asarray(sphere.vertices), np.asarray(faces)))
        assert sdf.sign_method == "pseudonormal"
        got = sdf(points)
        assert np.abs(got - exact).max() < 2e-3  # the icosphere's facets lie up to 1.2e-3 inside the sphere
        assert sdf(np.zeros((1, 3)))[0] < -0.49
    # A mesh with a hole: the winding number signs it, correct away from the hole.
    open_mesh = Mesh(np.asarray(sphere.vertices), np.asarray(sphere.faces[10:]))
    sdf = SignedDistance(open_mesh)
    assert sdf.sign_method == "winding_number"
    far = np.abs(exact) > 0.05
    assert np.all(np.sign(sdf(points)[far]) == np.sign(exact[far]))


def test_signed_distance_of_a_torus_is_the_analytic_one():
    torus = trimesh.creation.torus(major_radius=MAJOR, minor_radius=MINOR, major_sections=96, minor_sections=48)
    points = np.random.default_rng(1).uniform(-1, 1, (4000, 3))
    got = SignedDistance(as_mesh(torus))(points)
    exact = torus_sdf(points, MAJOR, MINOR)
    assert np.abs(got - exact).max() < 3e-3
    assert np.all(np.sign(got[np.abs(exact) > 3e-3]) == np.sign(exact[np.abs(exact) > 3e-3]))


def test_samples_follow_the_paper_and_are_reproducible():
    sphere = as_mesh(trimesh.creation.icosphere(subdivisions=3, radius=0.5))
    n = 500
    samples = sample_shape(sphere, n, seed=3)
    assert samples.points.shape == (5 * n, 3) and samples.sdf.shape == (5 * n,)
    assert samples.points.dtype == np.float32
    rand, near, trace = samples.points[:n], samples.points[n:3 * n], samples.points[3 * n:]
    assert np.abs(rand).max() <= 1 and np.abs(rand).min() >= 0
    assert np.all(samples.sdf[3 * n:] == 0)
    assert np.abs(np.linalg.norm(trace, axis=1) - 0.5).max() < 0.01  # on the (faceted) surface
    off = np.abs(np.linalg.norm(near, axis=1) - 0.5)
    assert 0.005 < off.mean() < 0.02  # N(0, 0.01^2) noise in 3D: mean |normal offset| ~ 0.008
    assert np.allclose(samples.sdf[:3 * n], np.linalg.norm(samples.points[:3 * n], axis=1) - 0.5, atol=5e-3)  # facets
    inside = samples.eval_inside.mean()
    assert abs(inside - (4 / 3 * math.pi * 0.125) / 8) < 0.01
    again = sample_shape(sphere, n, seed=3)
    assert np.array_equal(again.points, samples.points) and np.array_equal(again.surface, samples.surface)
    assert not np.array_equal(sample_shape(sphere, n, seed=4).points, samples.points)


def test_normalize_shapes_centers_and_scales_to_the_unit_sphere(tmp_path, capsys):
    folder = tmp_path / "meshes.v2"  # a dot in a folder name does not cut the output name
    folder.mkdir()
    torus = trimesh.creation.torus(major_radius=MAJOR, minor_radius=MINOR)
    torus.apply_scale([2.0, 1.0, 0.5])
    torus.apply_translation([5.0, -3.0, 2.0])
    torus.export(folder / "ring.ply")
    trimesh.creation.icosphere(subdivisions=2, radius=7.0).export(folder / "ball.stage1.obj")
    assert normalize_main([f"--shape_glob={folder / '*'}"]) == 0
    for name, source in (("ring_normalized.obj", "ring.ply"), ("ball_normalized.obj", "ball.stage1.obj")):
        mesh = load_mesh(folder / name)
        original = load_mesh(folder / source)
        assert np.array_equal(mesh.faces, original.faces)
        radius = np.linalg.norm(mesh.vertices, axis=1)
        assert radius.max() == pytest.approx(1.0, abs=2e-6)
        assert np.allclose((mesh.vertices.max(0) + mesh.vertices.min(0)) / 2, 0, atol=2e-6)
        assert np.allclose(mesh.vertices, normalize_vertices(original.vertices), atol=1e-6)
    assert (folder / "ring_normalized.obj").read_text().startswith("v ")
    # A second run over '*' leaves the outputs alone (no *_normalized_normalized.obj).
    assert normalize_main([f"--shape_glob={folder / '*'}"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["ball.stage1.obj", "ball_normalized.obj", "ring.ply",
                                                       "ring_normalized.obj"]


def test_normalize_shapes_errors_are_one_line(tmp_path, capsys):
    assert normalize_main([f"--shape_glob={tmp_path / 'nothing*.obj'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no mesh") and err.count("\n") == 1
    (tmp_path / "broken.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 99\n\x00\x01")
    assert normalize_main([f"--shape_glob={tmp_path / 'broken.ply'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "broken.ply" in err and err.count("\n") == 1
    (tmp_path / "empty.obj").write_text("# nothing here\nv 0 0 0\n")
    assert normalize_main([f"--shape_glob={tmp_path / 'empty.obj'}"]) == 2
    err = capsys.readouterr().err
    assert "empty mesh" in err and err.count("\n") == 1
    (tmp_path / "flat.obj").write_text("v 1 1 1\nv 1 1 1\nv 1 1 1\nf 1 2 3\n")
    assert normalize_main([f"--shape_glob={tmp_path / 'flat.obj'}"]) == 2
    assert "degenerate" in capsys.readouterr().err


def test_dataset_folders(tmp_path):
    ball = trimesh.creation.icosphere(subdivisions=1)
    (tmp_path / "armadillo").mkdir()
    ball.export(tmp_path / "armadillo" / "armadillo_normalized.obj")
    assert list_shapes(tmp_path, "armadillo") == [("armadillo", tmp_path / "armadillo" / "armadillo_normalized.obj")]
    (tmp_path / "stanford").mkdir()
    for name in ("bunny.ply", "bunny_normalized.obj", "dragon_normalized.obj"):
        ball.export(tmp_path / "stanford" / name)
    assert [n for n, _ in list_shapes(tmp_path, "stanford")] == ["bunny", "dragon"]
    (tmp_path / "mine").mkdir()
    for name in ("a.ply", "a_normalized.obj", "b.obj", "notes.txt"):
        (tmp_path / "mine" / name).write_bytes(ball.export(file_type="obj").encode()
                                               if name.endswith(".obj") else b"x")
    assert list_shapes(tmp_path, "mine") == [("a", tmp_path / "mine" / "a_normalized.obj"),
                                             ("b", tmp_path / "mine" / "b.obj")]


# --------------------------------------------------------------------------------------------------
# Evaluation


def test_chamfer_iou_and_marching_cubes():
    a = np.array([[0.0, 0.0, 0.0]])
    b = np.array([[0.0, 0.0, 0.1], [0.0, 0.0, 0.2]])
    assert chamfer_distance(a, b) == pytest.approx(0.01 + (0.01 + 0.04) / 2)
    assert volumetric_iou(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool)) == pytest.approx(100 / 3)
    n = 48
    axis = np.linspace(-1, 1, n)
    grid = np.linalg.norm(np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1), axis=-1) - 0.6
    vertices, faces = extract_surface(grid)
    assert np.abs(np.linalg.norm(vertices, axis=1) - 0.6).max() < 2e-3
    assert trimesh.Trimesh(vertices, faces, process=False).volume > 0  # wound outward
    assert extract_surface(grid + 5) is None
    picture = render_view(vertices, faces, 30, 20, size=100)
    covered = (picture != 255).any(axis=2).mean()  # a disc of radius 0.6 in a frame of side 2.2
    assert covered == pytest.approx(math.pi * 0.36 / 2.2 ** 2, rel=0.05)


def test_a_short_fit_of_a_torus_reaches_85_percent_iou():
    tm = trimesh.creation.torus(major_radius=MAJOR, minor_radius=MINOR, major_sections=48, minor_sections=24)
    tm.vertices = normalize_vertices(np.asarray(tm.vertices))
    samples = sample_shape(as_mesh(tm), 2000, seed=0)
    flags = {"encoding": "nerf", "activation": "sine", "hidden_dims": 16, "hidden_layers": 3, "ff_dims": 16,
             "encoding_scale": 1.4, "seed": 0}
    cfg = TrainConfig(epochs=60, lr=1e-3, batch_size=2000, seed=0)  # 300 steps on 10k samples
    result, _ = fit_shape("torus", samples, shape_model_config(flags), cfg, None, torch.device("cpu"),
                          resolution=40, show_progress=False)
    assert result["vol_iou"] > 85
    assert result["chamfer"] < 2e-3 and result["surface_found"]


# --------------------------------------------------------------------------------------------------
# The tools end to end


def test_overfit_writes_the_experiment_and_skips_finished_shapes(fitted, capsys):
    data, exp_root = fitted
    exp = exp_root / EXP
    flags = yaml.safe_load((exp / "FLAGS.yml").read_text())
    assert flags["samples_per_shape"] == 2000 and flags["batch_size"] == 2000 and "help" not in flags
    run = exp / "torus"
    for name in ("checkpoints/model_best_.pth", "checkpoints/model_final.pth", "checkpoints/model_epoch_0020.pth",
                 "reconstruction.ply", "reconstruction.png", "result.json", SAMPLES_FILE):
        assert (run / name).is_file(), name
    assert list((run / "summaries").glob("events.out.tfevents.*"))
    result = json.loads((run / "result.json").read_text())
    assert result["vol_iou"] > 85 and result["chamfer"] < 2e-3 and result["sign_method"] == "pseudonormal"
    assert load_samples(run / SAMPLES_FILE).points.shape == (10000, 3)
    summary = json.loads((exp / "result.json").read_text())
    assert summary["num_shapes"] == 1 and summary["avg_vol_iou"] == result["vol_iou"]
    capsys.readouterr()
    assert overfit_main([f"--data_root={data}", "--dataset=tor", f"--exp_root={exp_root}", *FIT_FLAGS]) == 0
    assert "torus: already fitted, skipped" in capsys.readouterr().out


def test_interrupted_fit_resumes_with_the_cached_samples(fitted, tmp_path, capsys):
    data, _ = fitted
    exp_root = tmp_path / "exp"
    args = [f"--data_root={data}", "--dataset=tor", f"--exp_root={exp_root}", *FIT_FLAGS, "--epochs=30"]

    def interrupt(step):
        if step == 110:
            raise KeyboardInterrupt

    assert overfit_main(args, step_hook=interrupt) == 130
    run = next(exp_root.glob("*/torus"))
    cache = run / SAMPLES_FILE
    stamp = cache.stat().st_mtime_ns
    assert (run / "checkpoints" / "model_current_.pth").is_file()
    assert overfit_main(args) == 0
    assert cache.stat().st_mtime_ns == stamp
    assert json.loads((run / "result.json").read_text())["resumed_from"] == 20


def test_quantize_writes_files_whose_decoding_gives_the_reported_metrics(fitted, tmp_path, capsys):
    data, exp_root = fitted
    assert quantize_main([f"--data_root={data}", "--dataset=tor", f"--exp_root={exp_root}", "--bitwidth=8",
                          *QUICK_QUANT]) == 0
    run = exp_root / EXP / "torus"
    tag = "brotli_bw8_adaround_iter_30_adaround_reg_0.0001_retrain_epochs5_retrain_lr1e-06"
    inr = run / f"compressed_{tag}.inr"
    metrics = yaml.safe_load((run / f"metrics_{tag}.yml").read_text())
    assert metrics["bytes"] == inr.stat().st_size
    assert metrics["mesh_vertices"] == 48 * 24
    assert metrics["bits_per_vertex"] == 8 * inr.stat().st_size / (48 * 24)
    assert metrics["train_hidden_dims"] == 16 and metrics["code"] == "brotli"
    fitted_result = json.loads((run / "result.json").read_text())
    assert metrics["vol_iou"] > fitted_result["vol_iou"] - 2
    assert (run / f"compressed_{tag}.png").is_file()
    # The reported numbers are those of the file: decoding it again gives them exactly.
    again, _ = measure_decoded_shape(inr.read_bytes(), load_samples(run / SAMPLES_FILE), 40)
    for key in ("vol_iou", "chamfer", "mse", "bytes"):
        assert again[key] == metrics[key], key
    summary = json.loads((exp_root / EXP / f"results_{tag}.json").read_text())
    assert summary["results"]["bytes"] == metrics["bytes"] and "torus" in summary["per_shape"]
    # decode_shape: mesh + preview from the file alone.
    out = tmp_path / "decoded.obj"
    assert decode_main([str(inr), str(out), "--mc_resolution=40"]) == 0
    mesh = load_mesh(out)
    assert len(mesh.faces) == again["surface_faces"]
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1)).max() < 1.05
    assert (tmp_path / "decoded.png").is_file()


def test_decode_shape_refuses_bad_files(fitted, tmp_path, capsys):
    _, exp_root = fitted
    if not list(exp_root.glob("*/torus/*.inr")):
        assert quantize_main([f"--exp_root={exp_root}", "--noadaround", "--noretrain", *QUICK_QUANT[2:]]) == 0
    inr = next(exp_root.glob("*/torus/*.inr"))
    truncated = tmp_path / "truncated.inr"
    truncated.write_bytes(inr.read_bytes()[:-10])
    capsys.readouterr()
    assert decode_main([str(truncated), str(tmp_path / "x.obj")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "truncated.inr" in err and err.count("\n") == 1
    # An image file is refused with a pointer to the image decoder.
    image_model = INR(ModelConfig(in_features=2, out_features=3, hidden_dims=8, hidden_layers=1, ff_dims=4))
    q = nearest_quantization(image_model, 8)
    header = InrHeader.for_model(image_model.cfg, modality="image", height=8, width=8, bitwidth=8, coder="brotli",
                                 step_sizes=q.step_sizes)
    image_file = tmp_path / "image.inr"
    image_file.write_bytes(write_inr(header, q.symbols))
    assert decode_main([str(image_file), str(tmp_path / "x.obj")]) == 2
    err = capsys.readouterr().err
    assert "holds an image, not a shape" in err and err.count("\n") == 1
    assert decode_main([str(inr), str(tmp_path / "x.stl")]) == 2
    assert decode_main([str(tmp_path / "missing.inr"), str(tmp_path / "x.obj")]) == 2
    assert not (tmp_path / "x.obj").exists()


def test_overfit_and_quantize_errors_are_one_line(fitted, tmp_path, capsys):
    data, _ = fitted
    for args in (["--dataset=nope"], ["--dataset=empty"], ["--dataset=bad"]):
        (data / "empty").mkdir(exist_ok=True)
        (data / "bad").mkdir(exist_ok=True)
        (data / "bad" / "broken.obj").write_text("f 1 2 3\n")
        assert overfit_main([f"--data_root={data}", f"--exp_root={tmp_path}", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
    assert quantize_main([f"--exp_root={tmp_path / 'none'}"]) == 2
    assert capsys.readouterr().err.startswith("error: experiment root not found")
