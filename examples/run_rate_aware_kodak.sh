#!/usr/bin/env bash
# Beyond the paper on Kodak: the paper-faithful INR curve (widths 16-32, 7 and 8 bits, AdaRound + QAT)
# beside the rate-aware additions (RD step allocation, QAT from AdaRound's soft levels, 6-bit points,
# a rate term in the fit) alone and all together, with BD-rates against the faithful curve, JPEG2000,
# WebP and AVIF on the same images, and an RD plot (benchmarks/rd_beyond.py does the work).
#
#   examples/run_rate_aware_kodak.sh            # 6 Kodak images at 1/4 size, 1000 fitting steps (about an hour, one thread)
#   QUICK=1 examples/run_rate_aware_kodak.sh    # the same pipeline on 1 image at 1/8 size: a minute or two
#
# Environment:
#   DATA_ROOT  datasets (default <repo>/data); needs $DATA_ROOT/KODAK (python data/download_kodak.py)
#   EXP_ROOT   outputs (default <repo>/exp); writes $EXP_ROOT/rate_aware_kodak (QUICK: rate_aware_kodak_quick):
#              summary.json (curves, BD-rates, times), rd_beyond.png, and the cached fits and points
#   PYTHON     interpreter (default <repo>/.venv/bin/python if present, else python3)
#   QUICK_IMAGES, QUICK_FACTOR, QUICK_EPOCHS  size of the quick mode (default 1, 8, 60)
#   DRY_RUN=1  print the command instead of running it
# Finished fits and points are reused when the script is run again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DATASET=KODAK
HINT="python data/download_kodak.py --data_root $DATA_ROOT fetches it"
require_dir "$DATA_ROOT/$DATASET"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
if [ "$QUICK" = 1 ]; then
  OUT="$EXP_ROOT/rate_aware_kodak_quick"
  IMAGES=()
  for f in "$DATA_ROOT/$DATASET"/*.png; do
    [ "${#IMAGES[@]}" -lt "${QUICK_IMAGES:-1}" ] || break
    IMAGES+=("$(basename "$f" .png)")
  done
  [ "${#IMAGES[@]}" -gt 0 ] || { echo "error: no PNG images in $DATA_ROOT/$DATASET" >&2; exit 2; }
  SETTINGS=(--factor "${QUICK_FACTOR:-8}" --widths 8 12 --epochs "${QUICK_EPOCHS:-60}" --adaround_iterations 10
            --retrain_epochs 3 --codecs webp)
else
  OUT="$EXP_ROOT/rate_aware_kodak"
  IMAGES=(kodim01 kodim05 kodim12 kodim15 kodim21 kodim23)
  SETTINGS=(--factor 4 --widths 16 24 32 --epochs 1000 --rate_lambda 0.001 --qat_lr 1e-5)
fi
run "$REPO/benchmarks/rd_beyond.py" --kodak "$DATA_ROOT/$DATASET" --images "${IMAGES[@]}" "${SETTINGS[@]}" --out "$OUT"
