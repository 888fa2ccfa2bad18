"""overfitINR3D.py: fit an INR to the signed distance of every mesh of a dataset folder"""
import sys

from inrcompress.tools.overfit_inr3d import main

if __name__ == "__main__":
    sys.exit(main())
