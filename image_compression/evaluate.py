"""Rate-distortion evaluation: aggregate our results_*.json into curves, run JPEG/JPEG2000/WebP/AVIF
on the same images, BD-rate/BD-PSNR between curves, RD plots (`evaluate.py --help`).

    python image_compression/evaluate.py codecs --data_root data --dataset KODAK --out_dir exp/codecs
"""
import sys

from inrcompress.tools.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
