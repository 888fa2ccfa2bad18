"""Decode speed of a full-size image file (issue 12, item 4): read + rebuild + render + PNG, and the
whole decode.py process, at each --widths, one thread.

The files: --image (default kodim01, 768 x 512) fitted for --fit_steps Adam steps (the speed of
decoding does not depend on how well a network fits) and coded with nearest rounding into --work.
In-process stages, best of --repeats, wall and CPU seconds: read (container.read_inr: parse and
entropy-decode), rebuild (decode_network: the network from the symbols), render (render_image: the
pixels), png (save_png). Then decode.py as a fresh process (start-up and imports included), wall and
CPU seconds, best of --repeats. Also the decoder's multiply-accumulates per pixel.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/decode_speed.py --widths 32 64 --out benchmarks/output/decode_speed.json
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from inrcompress.codec.compress import QuantConfig, compress_network, decode_network, render_image
from inrcompress.codec.container import read_inr
from inrcompress.config import ModelConfig, write_json
from inrcompress.nn import INR
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values, load_image, save_png

REPO = Path(__file__).resolve().parents[1]


def make_file(image_path: Path, width: int, steps: int, work: Path) -> Path:
    path = work / f"{image_path.stem}_w{width}.inr"
    if path.is_file():
        return path
    image = load_image(image_path)
    coords, values = coordinate_grid(image.shape[:2]), image_to_values(image)
    torch.manual_seed(0)
    model = INR(ModelConfig(hidden_dims=width, hidden_layers=3, ff_dims=16))
    features = model.encode(coords)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.mean((model.head(features) - values) ** 2).backward()
        optimizer.step()
    data, _ = compress_network(model, coords, values, QuantConfig(adaround=False, retrain=False), modality="image",
                               height=image.shape[0], width=image.shape[1])
    work.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def timed(function, repeats: int) -> tuple[float, float, object]:
    """Best wall and best CPU seconds of `repeats` calls, and the last result."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), result


def process_seconds(path: Path, out: Path, repeats: int) -> tuple[float, float]:
    """Best wall and CPU seconds of decode.py as a fresh process."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([sys.executable, str(REPO / "image_compression" / "decode.py"), str(path), str(out)],
                       check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=str(REPO.parent / "shared" / "data" / "KODAK" / "kodim01.png"))
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--fit_steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", default="/tmp/decode_speed")
    parser.add_argument("--out", default=None, help="the JSON report (default: WORK/decode_speed.json)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_before": os.getloadavg(),
              "threads": os.environ.get("OMP_NUM_THREADS"), "command": " ".join(sys.argv), "widths": {}}
    for width in args.widths:
        path = make_file(Path(args.image), width, args.fit_steps, work)
        data = path.read_bytes()
        header, model = decode_network(data)
        stages = {
            "read": lambda: read_inr(data),
            "read_and_rebuild": lambda: decode_network(data),
            "render": lambda: render_image(model, header.height, header.width),
        }
        row = {"bytes": len(data), "height": header.height, "width": header.width,
               "mac_per_pixel": header.representation.macs_per_point()}
        for name, function in stages.items():
            row[f"{name}_wall"], row[f"{name}_cpu"], result = timed(function, args.repeats)
        picture = result
        row["png_wall"], row["png_cpu"], _ = timed(lambda: save_png(work / "decoded.png", picture), args.repeats)
        row["total_cpu"] = row["read_and_rebuild_cpu"] + row["render_cpu"] + row["png_cpu"]
        row["total_wall"] = row["read_and_rebuild_wall"] + row["render_wall"] + row["png_wall"]
        row["process_wall"], row["process_cpu"] = process_seconds(path, work / "decoded_process.png", args.repeats)
        report["widths"][width] = row
        print(f"width {width}: {row['mac_per_pixel']} MAC/pixel, read {row['read_cpu']:.3f} s, rebuild "
              f"{row['read_and_rebuild_cpu'] - row['read_cpu']:.3f} s, render {row['render_cpu']:.3f} s, png "
              f"{row['png_cpu']:.3f} s, total {row['total_cpu']:.3f} s CPU ({row['total_wall']:.3f} s wall); "
              f"decode.py process {row['process_cpu']:.2f} s CPU ({row['process_wall']:.2f} s wall)", flush=True)
    report["load_after"] = os.getloadavg()
    out = Path(args.out or work / "decode_speed.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"written: {write_json(out, report)}")


if __name__ == "__main__":
    main()
