"""Does torch.compile of batched AdaRound's gradient pay off? (issue 12: what bounds batched encode)

AdaRound is about half of an encode, and its time goes to elementwise passes (sigmoid, clamp, the
regulariser's pow) around two small matrix products per iteration; fusing those passes is what
torch.compile (inductor) does. This runs quant_batched.quantize_models (AdaRound only) on --images
networks of the paper's architecture at --width, on a --height x --width_px pixel grid, eager and
with codec.quant_batched.adaround_gradient compiled, each in a fresh process, the order alternating
over --repeats; it reports the first call (compile included) and a second call of each process.
beta, the regulariser's exponent, changes every iteration: passed as a Python float it would
recompile every step, so the compiled path passes it as a 0-d tensor.

    OMP_NUM_THREADS=1 python benchmarks/quant_compile.py --images 12 --width 32 --iterations 200
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def one_process(args) -> dict:
    import torch

    import inrcompress.codec.quant_batched as qb
    from inrcompress.config import ModelConfig
    from inrcompress.nn import INR
    from inrcompress.signals.grid import coordinate_grid

    torch.manual_seed(0)
    models = [INR(ModelConfig(hidden_dims=args.width, hidden_layers=3)) for _ in range(args.images)]
    coords = coordinate_grid((args.height, args.width_px))
    features = models[0].encode(coords).detach()
    targets = [torch.rand(args.height * args.width_px, 3) for _ in range(args.images)]
    if args.mode == "compiled":
        compiled = torch.compile(qb.adaround_gradient, dynamic=False)

        def gradient(*a):
            *head, beta, reg = a
            return compiled(*head, None if beta is None else torch.tensor(beta, dtype=torch.float32), reg)
        qb.adaround_gradient = gradient
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        qb.quantize_models(models, features, targets, 8, adaround_iterations=args.iterations, retrain_epochs=0,
                           grid_shape=(args.height, args.width_px))
        seconds.append(time.perf_counter() - started)
    return {"mode": args.mode, "first_s": seconds[0], "second_s": seconds[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--width", type=int, default=32, help="hidden_dims of the networks")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width_px", type=int, default=192)
    parser.add_argument("--iterations", type=int, default=200, help="AdaRound iterations per layer")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mode", choices=("eager", "compiled"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(one_process(args)))
        return
    rows = []
    for r in range(args.repeats):
        for mode in (("eager", "compiled") if r % 2 == 0 else ("compiled", "eager")):
            done = subprocess.run([sys.executable, __file__, *sys.argv[1:], f"--mode={mode}"], check=True,
                                  capture_output=True, text=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    for mode in ("eager", "compiled"):
        mine = [row for row in rows if row["mode"] == mode]
        print(f"{mode}: first call {sum(r['first_s'] for r in mine) / len(mine):.2f} s, "
              f"second call {sum(r['second_s'] for r in mine) / len(mine):.2f} s (mean of {len(mine)})")


if __name__ == "__main__":
    main()
