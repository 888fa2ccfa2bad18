#!/usr/bin/env bash
# Basic method on Kodak (the paper's Fig. 4, "basic"): fit an INR from a random initialization to every
# Kodak image at widths 32 48 64 96 128, quantize each at 7 and 8 bits (AdaRound + quantization-aware
# retraining + arithmetic coding), and turn the results into one RD curve per bit width, beside
# JPEG/JPEG2000/WebP/AVIF on the same images.
#
#   examples/run_basic_kodak.sh            # the paper's settings (25000 steps per image and width)
#   QUICK=1 examples/run_basic_kodak.sh    # the same pipeline on 2 images at 1/8 size: a few minutes
#
# Environment:
#   DATA_ROOT  datasets (default <repo>/data); needs $DATA_ROOT/KODAK (python data/download_kodak.py)
#   EXP_ROOT   experiments (default <repo>/exp); writes $EXP_ROOT/basic_kodak (QUICK: basic_kodak_quick)
#   PYTHON     interpreter (default <repo>/.venv/bin/python if present, else python3)
#   ANCHORS    optional published curves for the plot (files/folders), e.g.
#              ANCHORS="../shared/anchors/strumpler2022_basic_8bit_kodak.json"
#   QUICK_IMAGES, QUICK_FACTOR, QUICK_EPOCHS  size of the quick mode (default 2, 8, 200)
#   DRY_RUN=1  print the commands instead of running them
# Finished work is skipped when the script is run again; an interrupted fit resumes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DATASET=KODAK
HINT="python data/download_kodak.py --data_root $DATA_ROOT fetches it"
require_dir "$DATA_ROOT/$DATASET"
FF_DIMS=16
WIDTHS=(32 48 64 96 128)
select_mode basic_kodak 8

fit_from_scratch
quantize
evaluate_curves basic basic
