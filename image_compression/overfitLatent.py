"""Fit, code and measure the latent-grid codec on every image of <data_root>/<dataset> (issue 18).

    python image_compression/overfitLatent.py --data_root data --dataset KODAK --rate_lambda 0.002
"""
import sys

from inrcompress.tools.overfit_latent import main

if __name__ == "__main__":
    sys.exit(main())
