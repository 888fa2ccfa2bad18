"""quantize_and_test3D.py: quantize, code and decode fitted shape experiments; report bytes, IoU, Chamfer"""
import sys

from inrcompress.tools.quantize_and_test3d import main

if __name__ == "__main__":
    sys.exit(main())
