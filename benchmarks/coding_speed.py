"""Speed of the entropy coding stage (codec/entropy): per network size, the time to encode with
each registered model, to pick the smallest of all (what write_inr does), to estimate every
model's size with cost_bits (model_costs, no range coding), and to decode.

The symbols are tests/test_coding.py's inr_like_tensors: shaped like a quantized SIREN of
`width` (2 -> nerf 66 features, 3 hidden layers), 8 bits. Width 128 is about 58k weights, the
network on which the adaptive model's round trip once had to stay under 2 s (a timed assertion
of the test suite, now this benchmark). Times are the median of --repeats runs, one thread.

    OMP_NUM_THREADS=1 python benchmarks/coding_speed.py --widths 32 64 128 --repeats 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests/
from inrcompress.codec import entropy  # noqa: E402
from tests.test_coding import inr_like_tensors  # noqa: E402


def median_seconds(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(width: int, bitwidth: int, repeats: int) -> dict:
    tensors = inr_like_tensors(width + bitwidth, width, bitwidth)
    lengths = [len(t) for t in tensors]
    row = {"width": width, "bitwidth": bitwidth, "symbols": sum(lengths), "models": {}}
    for name in entropy.MODELS:
        encode_s, data = median_seconds(lambda: entropy.encode_symbols(tensors, bitwidth, "arithmetic", name),
                                        repeats)
        decode_s, _ = median_seconds(lambda: entropy.decode_symbols(data, lengths, bitwidth, "arithmetic"), repeats)
        row["models"][name] = {"bytes": len(data), "encode_s": encode_s, "decode_s": decode_s,
                               "roundtrip_s": encode_s + decode_s}
    row["smallest_s"], best = median_seconds(lambda: entropy.encode_symbols(tensors, bitwidth, "arithmetic"), repeats)
    row["smallest_model"] = entropy.arithmetic_model_name(best)
    row["model_costs_s"], costs = median_seconds(lambda: entropy.model_costs(tensors, bitwidth), repeats)
    row["cost_error_bits"] = {m: costs[m] - 8 * row["models"][m]["bytes"] for m in costs}
    row["brotli_encode_s"], data = median_seconds(lambda: entropy.encode_symbols(tensors, bitwidth, "brotli"),
                                                  repeats)
    row["brotli_bytes"] = len(data)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--bitwidth", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    print(f"# {datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"load average {os.getloadavg()[0]:.2f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"median of {args.repeats}")
    rows = [measure(w, args.bitwidth, args.repeats) for w in args.widths]
    print("| width | symbols | model | bytes | encode s | decode s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        for name, m in row["models"].items():
            print(f"| {row['width']} | {row['symbols']} | {name} | {m['bytes']} | {m['encode_s']:.3f} | "
                  f"{m['decode_s']:.3f} |")
    print()
    print("| width | smallest of all s (model) | model_costs s | max abs cost error bits | brotli bytes | brotli s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        worst = max(abs(e) for e in row["cost_error_bits"].values())
        print(f"| {row['width']} | {row['smallest_s']:.3f} ({row['smallest_model']}) | {row['model_costs_s']:.3f} | "
              f"{worst:.0f} | {row['brotli_bytes']} | {row['brotli_encode_s']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
