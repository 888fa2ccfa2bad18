"""Fit, and report on, a photograph bundled with scikit-image: `make demo` runs this."""
import sys

from inrcompress.tools.demo import main

if __name__ == "__main__":
    sys.exit(main())
