"""Speed of the latent-grid fit (issue 18): images fitted one by one against the same images fitted
as one batched computation (fit/latent.fit_latents), in one run, alternating the order.

    OMP_NUM_THREADS=1 python benchmarks/latent_fit_speed.py --images kodim01 kodim02 kodim03 kodim05 \
        --factor 4 --steps 40 --rounds 3
    python benchmarks/latent_fit_speed.py --device cuda --batch 1 8 24 --factor 2   # on a GPU

Every fit runs `--steps` steps of the noise phase (the phase that takes 90 % of a schedule) on
images of one size (Kodak landscape images at 1/factor), preset --preset. Per round and path: wall
seconds per step and per image-step, and on the CPU the process's CPU seconds too (less sensitive
to the other tenants of a shared machine). The first round includes warm-up; read the later ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rd_codecs  # noqa: E402  (DEFAULT_KODAK)


def timed(function, device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of function(), the device synchronised at both ends."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kodak", default=str(rd_codecs.DEFAULT_KODAK))
    parser.add_argument("--images", nargs="+", default=["kodim01", "kodim02", "kodim03", "kodim05"],
                        help="Images of one size (Kodak's landscape ones); batches take the first N.")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--preset", default="mac500")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, nargs="+", default=None,
                        help="Batch sizes to time (default: all the images at once).")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch

    from inrcompress.codec.representations.latent import LatentGrid
    from inrcompress.errors import InrError
    from inrcompress.evaluate import codecs
    from inrcompress.experiments.runs import usable_device
    from inrcompress.fit.latent import LatentSchedule, fit_latent, fit_latents
    from inrcompress.signals.image import image_to_values

    try:
        device = usable_device(args.device)
        images = codecs.load_dataset_images(Path(args.kodak), args.factor, args.images)
    except InrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shapes = {image.shape for _, image in images}
    if len(shapes) != 1:
        print(f"error: the images have several sizes {sorted(shapes)}; give images of one size", file=sys.stderr)
        return 2
    (height, width, channels), = shapes
    representation = LatentGrid.preset(args.preset, height, width, channels)
    targets = [image_to_values(image).to(device) for _, image in images]
    schedule = LatentSchedule("speed", iterations=args.steps, noise_fraction=1.0)
    batches = args.batch or [len(targets)]
    if max(batches) > len(targets):
        print(f"error: a batch of {max(batches)} needs as many images (--images gives {len(targets)})",
              file=sys.stderr)
        return 2
    print(f"{len(targets)} images {width}x{height}, preset {args.preset}, {args.steps} noise-phase steps, "
          f"device {device}, torch threads {torch.get_num_threads()}")
    print("| round | batch | one by one: wall ms / image-step | CPU ms | batched: wall ms / image-step | CPU ms "
          "| batched / one by one (wall) | load |")
    print("|---|---|---|---|---|---|---|---|")
    for round_index in range(args.rounds):
        for batch in batches:
            members = targets[:batch]

            def one_by_one():
                for target in members:
                    fit_latent(representation.build, target, 0.002, schedule, progress=False)

            def batched():
                fit_latents(representation.build, members, [0.002] * batch, schedule, progress=False)

            paths = [("alone", one_by_one), ("batched", batched)]
            if round_index % 2:
                paths.reverse()
            measured = {name: timed(function, device) for name, function in paths}
            per = {name: (wall / (args.steps * batch) * 1e3, cpu / (args.steps * batch) * 1e3)
                   for name, (wall, cpu) in measured.items()}
            print(f"| {round_index + 1} | {batch} | {per['alone'][0]:.1f} | {per['alone'][1]:.1f} | "
                  f"{per['batched'][0]:.1f} | {per['batched'][1]:.1f} | {per['batched'][0] / per['alone'][0]:.2f} | "
                  f"{os.getloadavg()[0]:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
