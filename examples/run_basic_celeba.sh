#!/usr/bin/env bash
# Basic method on CelebA100 (the paper's Fig. 4, "basic"): fit an INR from a random initialization to
# each of the 100 CelebA test images at widths 24 32 48 64 (ff_dims 12), quantize each at 7 and 8 bits
# (AdaRound + quantization-aware retraining + arithmetic coding), and turn the results into one RD
# curve per bit width, beside JPEG/JPEG2000/WebP/AVIF on the same images.
#
#   examples/run_basic_celeba.sh            # the paper's settings (25000 steps per image and width)
#   QUICK=1 examples/run_basic_celeba.sh    # the same pipeline on 2 images at 1/4 size: a few minutes
#
# Environment:
#   DATA_ROOT  datasets (default <repo>/data); needs $DATA_ROOT/CelebA100, which is extracted from
#              $DATA_ROOT/CelebA (img_align_celeba_png) by data/celeba100dataset.py when missing
#   EXP_ROOT   experiments (default <repo>/exp); writes $EXP_ROOT/basic_celeba (QUICK: basic_celeba_quick)
#   PYTHON     interpreter (default <repo>/.venv/bin/python if present, else python3)
#   ANCHORS    optional published curves for the plot (files/folders), e.g.
#              ANCHORS="../shared/anchors/strumpler2022_basic_8bit_celeba.json"
#   QUICK_IMAGES, QUICK_FACTOR, QUICK_EPOCHS  size of the quick mode (default 2, 4, 200)
#   DRY_RUN=1  print the commands instead of running them
# Finished work is skipped when the script is run again; an interrupted fit resumes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DATASET=CelebA100
HINT="put img_align_celeba_png into $DATA_ROOT/CelebA, see python data/celeba100dataset.py --help"
if [ ! -d "$DATA_ROOT/$DATASET" ]; then
  [ -d "$DATA_ROOT/CelebA" ] || { echo "error: neither $DATA_ROOT/$DATASET nor $DATA_ROOT/CelebA found ($HINT)" >&2; exit 2; }
  run "$REPO/data/celeba100dataset.py" --celeba_dir "$DATA_ROOT/CelebA" --out "$DATA_ROOT/$DATASET"
fi
FF_DIMS=12
WIDTHS=(24 32 48 64)
select_mode basic_celeba 4

fit_from_scratch
quantize
evaluate_curves basic basic
