#!/usr/bin/env bash
# Meta-learned method on CelebA100 (the paper's Fig. 4, "meta-learned"): learn a MAML initialization on
# the CelebA training partition for each width 24 32 48 64 (ff_dims 12), fit each of the 100 CelebA test
# images from it, quantize the difference to the initialization at 7 and 8 bits (AdaRound +
# quantization-aware retraining + arithmetic coding), and turn the results into one RD curve per bit
# width, beside JPEG/JPEG2000/WebP/AVIF on the same images. (The paper's script wrote into exp/maml_kodak
# and did not pass --ff_dims to overfitMetaSiren.py; here: exp/maml_celeba, --ff_dims 12 everywhere.)
#
#   examples/run_maml_celeba.sh            # the paper's settings (1 MAML epoch over 162,770 images, 25000 steps)
#   QUICK=1 examples/run_maml_celeba.sh    # the same pipeline on 2 + 3 CelebA images at 1/4 size
#
# Environment:
#   DATA_ROOT  datasets (default <repo>/data); needs $DATA_ROOT/CelebA/img_align_celeba_png and
#              $DATA_ROOT/CelebA/list_eval_partition.csv (the official CelebA download, PNG version), and
#              $DATA_ROOT/CelebA100 (extracted from it by data/celeba100dataset.py when missing)
#   EXP_ROOT   experiments (default <repo>/exp); writes $EXP_ROOT/maml_celeba (QUICK: maml_celeba_quick),
#              the initializations in its maml/ folder
#   PYTHON     interpreter (default <repo>/.venv/bin/python if present, else python3)
#   ANCHORS    optional published curves for the plot (files/folders), e.g.
#              ANCHORS="../shared/anchors/strumpler2022_meta_learned_7bit_celeba.json"
#   QUICK_IMAGES, QUICK_META_IMAGES, QUICK_FACTOR, QUICK_EPOCHS  size of the quick mode (default 2, 2, 4, 200)
#   DRY_RUN=1  print the commands instead of running them
# Finished work is skipped when the script is run again; an interrupted fit resumes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DATASET=CelebA100
CELEBA="$DATA_ROOT/CelebA"
HINT="put img_align_celeba_png and list_eval_partition.csv into $CELEBA, see python data/celeba100dataset.py --help"
for need in "$CELEBA/img_align_celeba_png" "$CELEBA/list_eval_partition.csv"; do
  [ -e "$need" ] || { echo "error: $need not found ($HINT)" >&2; exit 2; }
done
if [ ! -d "$DATA_ROOT/$DATASET" ]; then
  run "$REPO/data/celeba100dataset.py" --celeba_dir "$CELEBA" --out "$DATA_ROOT/$DATASET"
fi
FF_DIMS=12
WIDTHS=(24 32 48 64)
select_mode maml_celeba 4
if [ "$QUICK" = 1 ]; then
  # a small CelebA: the first QUICK_META_IMAGES training (0) and the first validation (1) image of the list
  rm -rf "$DATA/CelebA" && mkdir -p "$DATA/CelebA/img_align_celeba_png"
  tr -d '\r' < "$CELEBA/list_eval_partition.csv" \
    | awk -F'[, \t]+' -v n="${QUICK_META_IMAGES:-2}" '$2 == "0" && a < n {print $1 "," $2; a++} $2 == "1" && b < 1 {print $1 "," $2; b++}' \
    > "$DATA/CelebA/list_eval_partition.csv"
  while IFS=, read -r name _; do
    src="$(cd "$CELEBA/img_align_celeba_png" && pwd)/${name%.*}.png"
    [ -f "$src" ] || { echo "error: $src not found ($HINT)" >&2; exit 2; }
    ln -s "$src" "$DATA/CelebA/img_align_celeba_png/" 2>/dev/null || cp "$src" "$DATA/CelebA/img_align_celeba_png/"
  done < "$DATA/CelebA/list_eval_partition.csv"
fi

fit_from_maml CelebA 1
quantize
evaluate_curves maml meta-learned
