"""inrcompress: image and 3D shape compression with implicit neural representations.

A re-implementation of Strumpler et al., "Implicit Neural Representations for Image Compression"
(ECCV 2022) on current PyTorch. See README.md for the command-line tools.

Importing the package first (every tool and script does) sets OpenMP's wait policy to PASSIVE unless
the environment already names one. PyTorch's OpenMP threads otherwise spin while they wait for each
other; on a machine that another busy process shares, a spinning thread takes the core its partner
needs, and small training steps ran 8-100x slower (benchmarks/RESULTS.md, "thread trap"). Passive
threads sleep instead. It must happen before torch is loaded, because the OpenMP runtime reads the
variable once, when it starts. `OMP_WAIT_POLICY=ACTIVE` in the environment restores the old
behaviour.
"""

import os as _os

__version__ = "0.1.0"

OMP_WAIT_POLICY_DEFAULT = "PASSIVE"
_os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY_DEFAULT)
