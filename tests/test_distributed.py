"""The tools under torchrun: 2 processes on the CPU with gloo, started by the launcher users run
(python -m torch.distributed.run --standalone), against the same tools in one process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from inrcompress.fit import distributed
from inrcompress.tools.overfit_inr import main as overfit_main
from inrcompress.tools.overfit_meta_siren import main as overfit_meta_main
from inrcompress.tools.quantize_and_test import main as quantize_main
from inrcompress.tools.train_meta_siren import main as train_meta_main

from .conftest import photo_crop

REPO = Path(__file__).resolve().parents[1]
# Three images of one size (batched together where batching is on) and one of another.
TINY_IMAGES = {"astronaut": (24, 32), "chelsea": (24, 32), "coffee": (20, 28), "rocket": (24, 32)}
TIMING_KEYS = {"fit_seconds", "steps_per_second"}


@pytest.fixture
def four_images(tmp_path: Path) -> Path:
    """data_root with TINY4: the four TINY_IMAGES; returns data_root."""
    folder = tmp_path / "data" / "TINY4"
    folder.mkdir(parents=True)
    for name, (height, width) in TINY_IMAGES.items():
        Image.fromarray(photo_crop(name, height, width)).save(folder / f"{name}.png")
    return tmp_path / "data"


def torchrun(script: str, args: list[str], *, max_restarts: int = 0, env: dict | None = None
             ) -> subprocess.CompletedProcess:
    """Run image_compression/<script> with 2 processes under torchrun (one thread each)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               f"--max_restarts={max_restarts}", str(REPO / "image_compression" / script), *args]
    run_env = {k: v for k, v in os.environ.items() if k != distributed.TEST_KILL_VARIABLE}
    run_env.update({"OMP_NUM_THREADS": "1", **(env or {})})
    out = subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def fit_args(data_root: Path, exp_root: Path, *extra: str) -> list[str]:
    return [f"--data_root={data_root}", "--dataset=TINY4", f"--exp_root={exp_root}", "--epochs=40",
            "--lr=0.001", "--hidden_dims=8", "--hidden_layers=1", "--epochs_til_ckpt=15", "--steps_til_summary=20",
            "--device=cpu", *extra]


def experiment(exp_root: Path) -> Path:
    [exp] = [p for p in exp_root.iterdir() if p.is_dir()]
    return exp


def image_results(exp: Path) -> dict[str, dict]:
    """{image: its result.json without the timings}."""
    return {name: {k: v for k, v in json.loads((exp / name / "result.json").read_text()).items()
                   if k not in TIMING_KEYS} for name in TINY_IMAGES}


def best_states(exp: Path) -> dict[str, dict]:
    return {name: torch.load(exp / name / "checkpoints" / "model_best_.pth") for name in TINY_IMAGES}


def assert_same_states(a: dict, b: dict, **tolerance) -> None:
    for name in a:
        for key in a[name]:
            if tolerance:
                torch.testing.assert_close(a[name][key], b[name][key], **tolerance)
            else:
                assert torch.equal(a[name][key], b[name][key]), (name, key)


def test_two_ranks_fit_the_images_as_one_process(four_images, tmp_path):
    one_by_one = "--batch_images=1"
    assert overfit_main(fit_args(four_images, tmp_path / "single", one_by_one), show_progress=False) == 0
    out = torchrun("overfitINR.py", fit_args(four_images, tmp_path / "ranks", one_by_one)).stdout
    single, ranks = experiment(tmp_path / "single"), experiment(tmp_path / "ranks")
    # each rank fitted its share (images 0, 2 and 1, 3 of the sorted list), and said so
    for rank, names in ((0, ("astronaut", "coffee")), (1, ("chelsea", "rocket"))):
        for name in names:
            assert f"[rank {rank}/2] {name}: " in out, out
    assert out.count("4 images: mean PSNR") == 1 and "[rank 0/2] 4 images" in out
    assert image_results(single) == image_results(ranks)
    assert_same_states(best_states(single), best_states(ranks))
    # the experiment's result.json, written by rank 0 alone from the per-image files
    assert json.loads((single / "result.json").read_text()) == json.loads((ranks / "result.json").read_text())


def test_without_torchrun_one_process_does_all_the_work(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.ranks() == distributed.Ranks(0, 1, 0) and distributed.is_main()
    assert distributed.join("auto") == "auto" and distributed.share([3, 1, 2]) == [3, 1, 2]
    hook = object()
    assert distributed.with_test_kill(hook) is hook  # the test hook only acts where it is set


def test_the_shares_are_disjoint_and_cover_the_work(monkeypatch):
    work = list(range(11))
    shares = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        shares.append(distributed.share(work))  # no group joined: no barrier, the slicing only
    assert sorted(sum(shares, [])) == work and shares[1] == [1, 4, 7, 10]


@pytest.mark.slow
def test_batched_groups_from_each_share_and_quantization(four_images, tmp_path):
    """Batching on (the CPU default): each rank batches the same-size images of its share; the fits
    agree with one process to float rounding. Then quantize_and_test with 2 ranks writes the same
    results file as one process quantizing the same fits."""
    assert overfit_main(fit_args(four_images, tmp_path / "single"), show_progress=False) == 0
    out = torchrun("overfitINR.py", fit_args(four_images, tmp_path / "ranks")).stdout
    assert re.search(r"\[rank 1/2\] chelsea: .*\b2 (images )?at once", out), out  # with rocket, on rank 1
    single, ranks = experiment(tmp_path / "single"), experiment(tmp_path / "ranks")
    assert_same_states(best_states(single), best_states(ranks), rtol=1e-4, atol=1e-5)

    shutil.rmtree(tmp_path / "single")
    shutil.copytree(tmp_path / "ranks", tmp_path / "single")  # the same fits for both quantizations
    quant = ["--dataset=TINY4", "--exp_glob=TINY4*", "--device=cpu", "--bitwidth=8", "--adaround",
             "--adaround_iterations=10", "--retrain", "--retrain_epochs=3", f"--data_root={four_images}"]
    assert quantize_main([*quant, f"--exp_root={tmp_path / 'single'}"]) == 0
    out = torchrun("quantize_and_test.py", [*quant, f"--exp_root={tmp_path / 'ranks'}"]).stdout
    assert "[rank 1/2] " + ranks.name + "/chelsea: " in out
    [single_file] = experiment(tmp_path / "single").glob("results_*.json")
    ranks_file = ranks / single_file.name
    a, b = (json.loads(f.read_text()) for f in (single_file, ranks_file))
    # the codes are equal; timings and how many were coded at once (the share's grouping) may differ
    drop_times = lambda r: {n: {k: v for k, v in m.items()  # noqa: E731
                                if "time" not in k and "seconds" not in k and k != "coded_together"}
                            for n, m in r["per_image"].items()}
    assert drop_times(a) == drop_times(b) and len(b["per_image"]) == 4


@pytest.mark.slow
def test_a_killed_rank_restarts_and_resumes(four_images, tmp_path):
    """Rank 1 is killed (SIGKILL) in the middle of its second image, after a checkpoint; torchrun
    restarts both ranks; the image rank 1 had finished is skipped, the killed one resumes from its
    checkpoint, and every result equals an uninterrupted run."""
    one_by_one = "--batch_images=1"
    assert overfit_main(fit_args(four_images, tmp_path / "single", one_by_one), show_progress=False) == 0
    # rank 1 fits chelsea (40 steps), then rocket: killed at rocket's step 25 (its checkpoint: epoch 15)
    out = torchrun("overfitINR.py", fit_args(four_images, tmp_path / "ranks", one_by_one), max_restarts=1,
                   env={distributed.TEST_KILL_VARIABLE: "1:65"})
    assert "[rank 1/2] chelsea: already fitted, skipped" in out.stdout, out.stdout
    ranks = experiment(tmp_path / "ranks")
    rocket = json.loads((ranks / "rocket" / "result.json").read_text())
    assert rocket["resumed_from"] == 15 and rocket["epochs_run"] == 40
    single_results, rank_results = image_results(experiment(tmp_path / "single")), image_results(ranks)
    for results in (single_results, rank_results):
        for r in results.values():
            r.pop("resumed_from")
    assert single_results == rank_results
    assert_same_states(best_states(experiment(tmp_path / "single")), best_states(ranks))
    assert json.loads((ranks / "result.json").read_text())["num_images"] == 4


def _meta_root(tmp_path: Path) -> Path:
    """data_root with META: 15 crops (13 for training, the last 2 by name for validation)."""
    meta = tmp_path / "data" / "META"
    meta.mkdir(parents=True)
    names = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
    for i in range(15):
        picture = photo_crop(names[i % 5], 16, 20)
        Image.fromarray(picture[:, ::-1] if i >= 5 else picture).save(meta / f"{i:02d}.png")
    return tmp_path / "data"


@pytest.mark.slow
def test_two_rank_meta_training_equals_one_process(tmp_path):
    """A meta-batch of 4 split over 2 ranks (the last batch of each meta-epoch has 1 image: rank 1
    gets none), gradients all-reduced: the same meta-learner as one process, to float rounding."""
    data_root = _meta_root(tmp_path)
    flags = [f"--data_root={data_root}", "--maml_dataset=META", "--maml_epochs=2", "--maml_batch_size=4",
             "--inner_lr=0.01", "--outer_lr=0.002", "--lr_type=per_parameter_per_step", "--maml_adaptation_steps=2",
             "--hidden_dims=8", "--hidden_layers=1", "--device=cpu", "--steps_til_summary=3", "--maml_val_every=3"]
    assert train_meta_main([*flags, f"--exp_root={tmp_path / 'single'}"], show_progress=False) == 0
    torchrun("trainMetaSiren.py", [*flags, f"--exp_root={tmp_path / 'ranks'}"])
    [single] = (tmp_path / "single" / "maml").iterdir()
    [ranks] = (tmp_path / "ranks" / "maml").iterdir()
    a, b = (torch.load(f / "maml_obj.pth", weights_only=False)["state_dict"] for f in (single, ranks))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    result_a, result_b = (json.loads((f / "maml_result.json").read_text()) for f in (single, ranks))
    assert result_a["steps_run"] == result_b["steps_run"] == 8 and result_a["best_step"] == result_b["best_step"]
    for x, y in zip(result_a["history"], result_b["history"], strict=True):
        assert x["step"] == y["step"] and x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-4)
    # rank 0 wrote the files; the other rank's scratch folder is gone
    assert sorted(p.name for p in ranks.iterdir()) == sorted(p.name for p in single.iterdir())
    assert yaml.safe_load((ranks / "FLAGS.yml").read_text())["maml_batch_size"] == 4

    # overfitMetaSiren from the one-process init: 2 ranks fit what one process fits
    fit_folder = data_root / "FIT"
    fit_folder.mkdir()
    for name in ("astronaut", "chelsea", "rocket"):
        Image.fromarray(photo_crop(name, 16, 20)).save(fit_folder / f"{name}.png")
    shutil.copytree(tmp_path / "single" / "maml", tmp_path / "fit_ranks" / "maml")
    fit = [*(f for f in flags if not f.startswith("--maml_val_every")), "--dataset=FIT", "--epochs=20",
           "--batch_images=1", "--epochs_til_ckpt=10"]
    assert overfit_meta_main([*fit, f"--exp_root={tmp_path / 'single'}"], show_progress=False) == 0
    out = torchrun("overfitMetaSiren.py", [*fit, f"--exp_root={tmp_path / 'fit_ranks'}"]).stdout
    assert "[rank 1/2] chelsea: " in out
    [one] = (tmp_path / "single").glob("FIT_*")
    [two] = (tmp_path / "fit_ranks").glob("FIT_*")
    assert json.loads((one / "result.json").read_text()) == json.loads((two / "result.json").read_text())


SLURM = REPO / "examples" / "slurm"


def test_slurm_scripts_parse():
    for script in sorted(SLURM.iterdir()):
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, script


@pytest.mark.parametrize("sweep, meta_ranks", [("basic", None), ("maml", (1, 1))])
def test_slurm_dry_run_prints_srun_torchrun_per_distributed_tool(tmp_path, sweep, meta_ranks):
    """DRY_RUN=1 of an sbatch script in a (pretend) 2-node job with 8 GPUs per node: every fit and
    quantization is srun over the nodes + a torchrun that torch's own parser accepts; evaluate.py
    runs once; the MAML sweep meta-trains on one rank."""
    from torch.distributed.run import get_args_parser

    data = tmp_path / "data"
    for folder in ("KODAK", "DIV2K/DIV2K_train_HR", "DIV2K/DIV2K_valid_HR"):
        (data / folder).mkdir(parents=True)
    env = {**os.environ, "DRY_RUN": "1", "DATA_ROOT": str(data), "EXP_ROOT": str(tmp_path / "exp"),
           "SLURM_JOB_NUM_NODES": "2", "GPUS_PER_NODE": "8", "SLURM_JOB_ID": "42"}
    out = subprocess.run(["bash", str(SLURM / f"fig4_{sweep}.sbatch")], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if not line.startswith("done:")]
    fits = {"basic": "overfitINR.py", "maml": "overfitMetaSiren.py"}[sweep]
    seen = {}
    for line in lines:
        words = line.split()
        tool = next((Path(w).name for w in words if w.endswith(".py")), None)
        if tool == "evaluate.py":
            assert words[0] != "srun"
            continue
        assert words[:2] == ["srun", "--nodes"], line
        torchrun_args = get_args_parser().parse_args(words[words.index("torch.distributed.run") + 1:])
        assert Path(torchrun_args.training_script).name == tool and torchrun_args.max_restarts == 1
        assert torchrun_args.rdzv_backend == "c10d" and torchrun_args.rdzv_id.startswith("42-")
        seen.setdefault(tool, set()).add((torchrun_args.nnodes, torchrun_args.nproc_per_node))
    assert seen[fits] == seen["quantize_and_test.py"] == {("2", "8")}
    assert sum(Path(w).name == fits for line in lines for w in line.split()) == 5  # one run per width
    if meta_ranks:
        assert seen["trainMetaSiren.py"] == {tuple(str(n) for n in meta_ranks)}


def test_two_ranks_of_the_latent_tool_write_the_files_of_one_process(four_images, tmp_path):
    """overfitLatent.py under torchrun: each rank codes its share; the files are byte for byte those
    of one process, and rank 0 alone writes the results file."""
    from inrcompress.tools.overfit_latent import main as overfit_latent_main

    args = lambda root: [f"--data_root={four_images}", "--dataset=TINY4", f"--exp_root={root}",  # noqa: E731
                         "--rate_lambda=0.003", "--latent_schedule=test", "--latent_preset=mac500", "--notensorboard"]
    assert overfit_latent_main(args(tmp_path / "single")) == 0
    out = torchrun("overfitLatent.py", args(tmp_path / "ranks")).stdout
    tag = "latent_mac500_test_lambda0.003"
    single, ranks = (tmp_path / root / "latent" / "TINY4_1x_latent_mac500_test" for root in ("single", "ranks"))
    for rank, names in ((0, ("astronaut", "coffee")), (1, ("chelsea", "rocket"))):
        for name in names:
            assert f"[rank {rank}/2] {name}: " in out, out
            assert ((single / name / f"compressed_{tag}.inr").read_bytes()
                    == (ranks / name / f"compressed_{tag}.inr").read_bytes())
    results = [json.loads((exp / f"results_{tag}.json").read_text()) for exp in (single, ranks)]
    assert set(results[1]["per_image"]) == set(TINY_IMAGES)
    assert {k: v["bytes"] for k, v in results[0]["per_image"].items()} == \
        {k: v["bytes"] for k, v in results[1]["per_image"].items()}
    assert out.count("TINY4_1x_latent_mac500_test: 4 images") == 1 and "[rank 0/2] TINY4_1x_latent" in out
