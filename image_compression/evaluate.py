"""Rate-distortion evaluation: aggregate our results_*.json into curves, run the classical codecs
(JPEG, JPEG2000, WebP, AVIF, HEVC 4:4:4 / 4:2:0, JPEG XL) on the same images, BD-rate/BD-PSNR between
curves, RD plots and an HTML report (`evaluate.py --help`).

    python image_compression/evaluate.py codecs --data_root data --dataset KODAK --out_dir exp/codecs
"""
import sys

from inrcompress.tools.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
