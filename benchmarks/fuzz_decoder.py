"""Long-running fuzzer for the .inr reader (the CI tests run a few thousand cases; this runs many).

Valid small format-v2 files are built for every arithmetic model and for brotli, the golden
format-v1 files (tests/golden/v1) are read, and two crafted decompression bombs are made from a
golden v2 file (its size fields set to 4096 x 65535 and 256 x 65535, CRC recomputed: valid files
that a decoder must refuse by its DecodeLimits), and the latent-grid golden files (tests/golden/latent:
a file that read_inr accepts is then decoded to pixels, the latents range-decoded with the
fixed-point ARM, which must end in pixels or a CorruptFileError too), then all are mutated at random
(bit flips, byte replacements, truncation, insertion, appended bytes). In "plain" mode the
mutated bytes go to read_inr as they are, and any change must be reported as a CorruptFileError
(CRC-32 guards the file). In "fixed-crc" mode the checksum is recomputed after mutating, so the
mutation reaches the header and payload checks; read_inr (with the default DecodeLimits) must then
raise CorruptFileError, refuse the file by its limits (DecodeLimitError), or return well-formed
symbols. Anything else (another exception, a wrong result) is a failure,
printed with the mutant in hex and optionally saved.

    python benchmarks/fuzz_decoder.py --iterations 200000 --mode both --save-failures /tmp/fuzz
"""

from __future__ import annotations

import argparse
import collections
import random
import struct
import sys
import time
import traceback
import zlib
from pathlib import Path

import numpy as np
from inrcompress.codec import container as bs
from inrcompress.codec import entropy as coding
from inrcompress.codec.representations.siren import SirenMLP
from inrcompress.config import ModelConfig
from inrcompress.errors import CorruptFileError


GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"
GOLDEN_V1 = GOLDEN / "v1"
# The crafted files of issue 13: a 657-byte image file asking for (height, width) pixels.
BOMB_SIZES = ((4096, 65535), (256, 65535))


def with_image_size(data: bytes, height: int, width: int) -> bytes:
    """A format-v2 image file with other size fields (they follow magic, version and modality) and
    its CRC recomputed: still valid, so only the decoder's limits stand between it and the work."""
    at = len(bs.MAGIC) + 2
    return with_crc(data[:at] + struct.pack("<HH", height, width) + data[at + 4:-4])


def build_corpus() -> list[tuple[str, bytes]]:
    """(label, file) pairs: format v2 files of a small network, one per arithmetic model, plus
    brotli and 16-bit residual files; and every golden format-v1 file (the v1 reader's input)."""
    rng = np.random.default_rng(0)

    def header(modality="image", height=24, width=32, channels=3, in_features=2, encoding="nerf", ff_dims=2,
               bitwidth=8, coder="arithmetic", init_hash=b""):
        cfg = ModelConfig(in_features=in_features, out_features=channels, encoding=encoding, hidden_dims=6,
                          hidden_layers=1, ff_dims=ff_dims)
        return bs.InrHeader(modality=modality, height=height, width=width, rotated=False,
                            representation=SirenMLP(cfg), bitwidth=bitwidth, coder=coder, step_sizes=[0.01] * 6,
                            init_hash=init_hash)

    def symbols(h):
        top = (1 << h.bitwidth) - 1
        return [np.clip(np.round(rng.laplace(top / 2, 1 + top / 40, n)), 0, top).astype(np.int64)
                for n in bs.tensor_lengths(h)]

    corpus = []
    for model in coding.MODELS:
        h = header()
        corpus.append((f"v2 arithmetic/{model}", bs.write_inr(h, symbols(h), model=model)))
    h = header(coder="brotli", encoding="gauss")
    corpus.append(("v2 brotli", bs.write_inr(h, symbols(h))))
    h = header(modality="shape", height=0, width=0, channels=1, in_features=3, encoding="mlp", ff_dims=0,
               bitwidth=16, init_hash=bytes(32))
    corpus.append(("v2 arithmetic/16-bit shape residual", bs.write_inr(h, symbols(h))))
    for path in sorted(GOLDEN_V1.glob("*.inr")):
        corpus.append((f"v1 {path.stem}", path.read_bytes()))
    small = (GOLDEN / "v2" / "image_landscape_arith.inr").read_bytes()
    for height, width in BOMB_SIZES:
        corpus.append((f"v2 crafted {height}x{width}", with_image_size(small, height, width)))
    for path in sorted((GOLDEN / "latent").glob("*.inr")):
        corpus.append((f"v2 latent {path.stem}", path.read_bytes()))
    return corpus


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(("flip", "set", "truncate", "insert", "append"))
        pos = rng.randrange(len(out)) if out else 0
        if kind == "flip" and out:
            out[pos] ^= 1 << rng.randrange(8)
        elif kind == "set" and out:
            out[pos] = rng.randrange(256)
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif kind == "append":
            out += rng.randbytes(rng.randint(1, 8))
    return bytes(out)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def check(mutant: bytes, original: bytes, fixed_crc: bool) -> tuple[str, str]:
    """(problem, outcome): problem is '' if read_inr behaved, else a description of the failure;
    outcome is "decoded" or the error message with its numbers removed. Raises nothing."""
    try:
        header, symbols = bs.read_inr(mutant)
    except bs.DecodeLimitError as exc:
        message = str(exc)
        if "\n" in message:
            return f"multi-line error message: {message!r}", "limit"
        if not fixed_crc and mutant != original:
            return "a changed file passed the checksum (refused only by the limits)", "limit"
        return "", "refused by the limits: " + "".join(c for c in message if not c.isdigit())[:40]
    except CorruptFileError as exc:
        message = str(exc)
        outcome = "".join(c for c in message if not c.isdigit())[:60]
        if "\n" in message:
            return f"multi-line error message: {message!r}", outcome
        if not fixed_crc and mutant == original:
            return f"the unchanged file was rejected: {message}", outcome
        return "", outcome
    except Exception:  # noqa: BLE001 - anything else is exactly what we are hunting for
        return "unexpected exception:\n" + traceback.format_exc(), "unexpected exception"
    if not fixed_crc and mutant != original:
        return "a changed file was accepted despite the checksum", "decoded"
    if header.latent_stream:  # the latent stream is decoded by the image decoder, not read_inr
        from inrcompress.codec.compress import decode_image

        try:
            _, picture = decode_image(mutant)
        except CorruptFileError as exc:
            if "\n" in str(exc):
                return f"multi-line error message: {str(exc)!r}", "latent refused"
            return "", "latent stream refused: " + "".join(c for c in str(exc) if not c.isdigit())[:40]
        except Exception:  # noqa: BLE001
            return "unexpected exception in the latent decoder:\n" + traceback.format_exc(), "unexpected exception"
        if picture.shape[:2] != (header.height, header.width):
            return f"decoded a {picture.shape} picture for {header.height}x{header.width}", "decoded"
    lengths = bs.tensor_lengths(header)
    if len(symbols) != len(lengths):
        return f"{len(symbols)} symbol arrays for {len(lengths)} tensors", "decoded"
    for s, n in zip(symbols, lengths):
        if s.shape != (n,) or (s.size and (s.min() < 0 or s.max() >= 1 << header.bitwidth)):
            return f"malformed symbols for a tensor of {n} values", "decoded"
    return "", "decoded"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100_000, help="mutants per mode (default 100000)")
    parser.add_argument("--mode", choices=("plain", "fixed-crc", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-failures", type=Path, default=None, help="folder for failing mutants")
    args = parser.parse_args(argv)

    corpus = build_corpus()
    modes = {"plain": [False], "fixed-crc": [True], "both": [False, True]}[args.mode]
    failures = 0
    for fixed_crc in modes:
        name = "fixed-crc" if fixed_crc else "plain"
        rng = random.Random(args.seed)
        outcomes: collections.Counter[str] = collections.Counter()
        slowest = (0.0, "")
        start = time.perf_counter()
        for i in range(args.iterations):
            label, original = corpus[i % len(corpus)]
            mutant = with_crc(mutate(original[:-4], rng)) if fixed_crc else mutate(original, rng)
            t0 = time.perf_counter()
            problem, outcome = check(mutant, original, fixed_crc)
            elapsed = time.perf_counter() - t0
            outcomes[outcome] += 1
            if elapsed > slowest[0]:
                slowest = (elapsed, label)
            if problem:
                failures += 1
                print(f"[{name}] FAILURE #{failures} on {label} (iteration {i}): {problem}\n"
                      f"  mutant: {mutant.hex()}", flush=True)
                if args.save_failures:
                    args.save_failures.mkdir(parents=True, exist_ok=True)
                    (args.save_failures / f"{name}-{i}.inr").write_bytes(mutant)
        seconds = time.perf_counter() - start
        print(f"[{name}] {args.iterations} mutants in {seconds:.1f} s ({args.iterations / seconds:.0f}/s); "
              f"slowest {slowest[0] * 1e3:.1f} ms ({slowest[1]})")
        for outcome, count in outcomes.most_common(12):
            print(f"  {count:8d}  {outcome}")
    print("no failures" if not failures else f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
