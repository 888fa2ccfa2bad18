"""normalize_shapes.py: normalize every mesh matching --shape_glob into the unit sphere (<name>_normalized.obj)"""
import sys

from inrcompress.tools.normalize_shapes import main

if __name__ == "__main__":
    sys.exit(main())
