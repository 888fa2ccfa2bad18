"""inrcompress: image and 3D shape compression with implicit neural representations.

A re-implementation of Strumpler et al., "Implicit Neural Representations for Image Compression"
(ECCV 2022) on current PyTorch. See README.md for the command-line tools.

Importing the package first (every tool and script does) makes one OpenMP thread per process the
default, unless the environment already sets OMP_NUM_THREADS. With PyTorch's default of a thread per
core, threads spin while they wait for each other; on a machine that another busy process shares, a
spinning thread takes the core its partner needs, and the paper's tools ran 5x slower with a second
copy running (more with more load). One thread per process keeps its whole speed next to a second
copy and, for the small per-step products of these networks, loses nothing when alone (fit and
quantize alone: 9.5 s and 6.3 s with one thread, 9.6 s and 5.7 s with two; benchmarks/RESULTS.md,
"thread trap"). Parallelism comes from processes instead (batched fitting, torchrun ranks). It must
be set before torch is loaded, because the OpenMP runtime reads the variable once, when it starts.
`OMP_NUM_THREADS=N` in the environment chooses N threads (and PyTorch's own waiting behaviour).
"""

import os as _os

__version__ = "0.1.0"

DEFAULT_OMP_THREADS = "1"
_os.environ.setdefault("OMP_NUM_THREADS", DEFAULT_OMP_THREADS)
