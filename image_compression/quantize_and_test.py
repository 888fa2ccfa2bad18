"""quantize_and_test.py: quantize, code, write and decode every fitted image of the experiments"""
import sys

from inrcompress.tools.quantize_and_test import main

if __name__ == "__main__":
    sys.exit(main())
