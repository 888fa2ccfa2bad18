#!/usr/bin/env bash
# Meta-learned method on Kodak (the paper's Fig. 4, "meta-learned"): learn a MAML initialization on
# DIV2K for each width 32 48 64 96 128, fit every Kodak image from it, quantize the difference to the
# initialization at 7 and 8 bits (AdaRound + quantization-aware retraining + arithmetic coding), and
# turn the results into one RD curve per bit width, beside JPEG/JPEG2000/WebP/AVIF on the same images.
# (The paper's script trained no initialization for width 96 but fitted from one; here every width has one.)
#
#   examples/run_maml_kodak.sh            # the paper's settings (30 MAML epochs over DIV2K, 25000 steps)
#   QUICK=1 examples/run_maml_kodak.sh    # the same pipeline on 2 Kodak + 3 DIV2K images at 1/8 size
#
# Environment:
#   DATA_ROOT  datasets (default <repo>/data); needs $DATA_ROOT/KODAK (python data/download_kodak.py) and
#              $DATA_ROOT/DIV2K/DIV2K_{train,valid}_HR (python data/download_div2k.py)
#   EXP_ROOT   experiments (default <repo>/exp); writes $EXP_ROOT/maml_kodak (QUICK: maml_kodak_quick),
#              the initializations in its maml/ folder
#   PYTHON     interpreter (default <repo>/.venv/bin/python if present, else python3)
#   ANCHORS    optional published curves for the plot (files/folders), e.g.
#              ANCHORS="../shared/anchors/strumpler2022_meta_learned_7bit_kodak.json"
#   QUICK_IMAGES, QUICK_META_IMAGES, QUICK_FACTOR, QUICK_EPOCHS  size of the quick mode (default 2, 2, 8, 200)
#   DRY_RUN=1  print the commands instead of running them
# Finished work is skipped when the script is run again; an interrupted fit resumes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DATASET=KODAK
HINT="python data/download_kodak.py and data/download_div2k.py --data_root $DATA_ROOT fetch them"
require_dir "$DATA_ROOT/$DATASET" "$DATA_ROOT/DIV2K/DIV2K_train_HR" "$DATA_ROOT/DIV2K/DIV2K_valid_HR"
FF_DIMS=16
WIDTHS=(32 48 64 96 128)
select_mode maml_kodak 8
if [ "$QUICK" = 1 ]; then
  subset "$DATA_ROOT/DIV2K/DIV2K_train_HR" "$DATA/DIV2K/DIV2K_train_HR" "${QUICK_META_IMAGES:-2}"
  subset "$DATA_ROOT/DIV2K/DIV2K_valid_HR" "$DATA/DIV2K/DIV2K_valid_HR" 1
fi

fit_from_maml DIV2K 30
quantize
evaluate_curves maml meta-learned
