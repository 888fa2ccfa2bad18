"""encode.py: one image in, one .inr file out: fit an INR, quantize it, code it, write the file,"""
import sys

from inrcompress.tools.encode import main

if __name__ == "__main__":
    sys.exit(main())
