"""Fit an INR to every image of <data_root>/<dataset> (the paper's overfitINR.py, same flags).

    python image_compression/overfitINR.py --data_root data --dataset KODAK --hidden_dims 32
"""
import sys

from inrcompress.tools.overfit_inr import main

if __name__ == "__main__":
    sys.exit(main())
