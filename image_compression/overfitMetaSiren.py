"""Fit every image of <data_root>/<dataset> from a meta-learned initialization (the paper's
overfitMetaSiren.py, same flags; --ff_dims defaults to 16 like trainMetaSiren.py). Pass the MAML and
architecture flags used with trainMetaSiren.py: they name the init folder.

    python image_compression/overfitMetaSiren.py --data_root data --dataset KODAK --maml_epochs 30 \
        --epochs 25000 --l1_reg 1e-5
"""
import sys

from inrcompress.tools.overfit_meta_siren import main

if __name__ == "__main__":
    sys.exit(main())
