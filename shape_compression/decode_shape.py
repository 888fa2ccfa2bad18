"""decode_shape.py: turn a shape .inr file into a mesh and a preview PNG"""
import sys

from inrcompress.tools.decode_shape import main

if __name__ == "__main__":
    sys.exit(main())
