"""decode.py: turn an image .inr file into a PNG, needing nothing but the file"""
import sys

from inrcompress.tools.decode import main

if __name__ == "__main__":
    sys.exit(main())
