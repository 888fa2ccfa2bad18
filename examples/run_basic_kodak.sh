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
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_ROOT="${DATA_ROOT:-$REPO/data}"
EXP_ROOT="${EXP_ROOT:-$REPO/exp}"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
QUICK="${QUICK:-0}"
run() {
  if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@"; echo; return 0; fi  # print the commands only
  local start=$SECONDS status=0
  echo "+ ${*##*/image_compression/}" >&2
  "$PYTHON" "$@" || status=$?
  echo "  ($((SECONDS - start)) s)" >&2
  return "$status"
}
tool() { local name="$1"; shift; run "$REPO/image_compression/$name.py" "$@"; }
# subset SRC DST N: links to the first N images of SRC in DST (the quick mode's small dataset)
subset() {
  [ -d "$1" ] || { echo "error: $1 not found ($HINT)" >&2; exit 2; }
  rm -rf "$2" && mkdir -p "$2"
  local n=0 f
  for f in "$(cd "$1" && pwd)"/*; do
    case "${f,,}" in *.png|*.jpg|*.jpeg) ;; *) continue ;; esac
    [ "$n" -lt "$3" ] || break
    ln -s "$f" "$2/" 2>/dev/null || cp "$f" "$2/"
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || { echo "error: no images in $1" >&2; exit 2; }
}

DATASET=KODAK
HINT="python data/download_kodak.py --data_root $DATA_ROOT fetches it"
[ -d "$DATA_ROOT/$DATASET" ] || { echo "error: $DATA_ROOT/$DATASET not found ($HINT)" >&2; exit 2; }
FF_DIMS=16
ARCH=(--activation sine --encoding nerf --encoding_scale 1.4 --hidden_layers 3 --ff_dims "$FF_DIMS")
if [ "$QUICK" = 1 ]; then
  # tiny images: one thread is faster, and on a busy machine several threads can be 100x slower
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  OUT="$EXP_ROOT/basic_kodak_quick"
  DATA="$OUT/data"
  subset "$DATA_ROOT/$DATASET" "$DATA/$DATASET" "${QUICK_IMAGES:-2}"
  WIDTHS=(16)
  EPOCHS="${QUICK_EPOCHS:-200}"
  FACTOR="${QUICK_FACTOR:-8}"
  FIT=(--downscaling_factor "$FACTOR" --epochs "$EPOCHS" --epochs_til_ckpt "$EPOCHS"
       --steps_til_summary "$EPOCHS" --lr 0.0005 --l1_reg 1e-5 --patience 500)
  ADAROUND_ITERS=10; RETRAIN_EPOCHS=5
  SWEEP=(--jpeg_qualities 10 50 90 --jpeg2000_bpps 0.5 2 6 --webp_qualities 10 50 90 --avif_qualities 10 50 90)
else
  OUT="$EXP_ROOT/basic_kodak"
  DATA="$DATA_ROOT"
  WIDTHS=(32 48 64 96 128)
  FACTOR=1
  FIT=(--downscaling_factor "$FACTOR" --epochs 25000 --epochs_til_ckpt 5000 --steps_til_summary 1000 --lr 0.0005
       --l1_reg 1e-5 --patience 500)
  ADAROUND_ITERS=1000; RETRAIN_EPOCHS=300
  SWEEP=()
fi
TITLE="$DATASET$([ "$FACTOR" = 1 ] || echo " (${FACTOR}x downscaled)")"

# 1. fit
for h in "${WIDTHS[@]}"; do
  tool overfitINR "--data_root=$DATA" "--exp_root=$OUT" --dataset "$DATASET" "${ARCH[@]}" "${FIT[@]}" --hidden_dims "$h"
done

# 2. quantize, code, decode (7 and 8 bits)
for bw in 7 8; do
  tool quantize_and_test "--data_root=$DATA" "--exp_root=$OUT" --exp_glob "${DATASET}_*" --dataset "$DATASET" \
    --bitwidth "$bw" --adaround --retrain --adaround_iterations "$ADAROUND_ITERS" --adaround_reg 0.0001 \
    --retrain_epochs "$RETRAIN_EPOCHS" --retrain_lr 1e-6 --code arithmetic
done

# 3. RD curves (one per bit width), classical codecs on the same images, BD-rates, plot
CURVES=()
for bw in 7 8; do
  tag="arithmetic_bw${bw}_adaround_iter_${ADAROUND_ITERS}_adaround_reg_0.0001_retrain_epochs${RETRAIN_EPOCHS}_retrain_lr1e-06"
  tool evaluate aggregate --out "$OUT/rd_basic_bw$bw.json" --name "basic (ours), $bw bit" \
    "$OUT/${DATASET}_*/results_$tag.json"
  CURVES+=("$OUT/rd_basic_bw$bw.json")
done
tool evaluate codecs "--data_root=$DATA" --dataset "$DATASET" --downscaling_factor "$FACTOR" \
  --out_dir "$OUT/codecs" --quiet "${SWEEP[@]}"
tool evaluate bd --anchor "$OUT/codecs" --test "${CURVES[@]}" --out "$OUT/bd.json" \
  || echo "  (BD-rates need >= 2 points per curve and curves that overlap in PSNR)" >&2
read -r -a ANCHOR_LIST <<< "${ANCHORS:-}"
tool evaluate plot "${CURVES[@]}" --codecs "$OUT/codecs" ${ANCHOR_LIST[@]+--anchors "${ANCHOR_LIST[@]}"} \
  --out "$OUT/rd_basic_kodak.png" --metric both --title "$TITLE, basic method"
echo "done: curves $OUT/rd_basic_bw{7,8}.json, plot $OUT/rd_basic_kodak.png, BD-rates $OUT/bd.json"
