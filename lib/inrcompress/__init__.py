"""inrcompress: image and 3D shape compression with implicit neural representations.

A re-implementation of Strumpler et al., "Implicit Neural Representations for Image Compression"
(ECCV 2022) on current PyTorch. See README.md for the command-line tools.
"""

__version__ = "0.1.0"
