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
ARCH=(--activation sine --encoding nerf --encoding_scale 1.4 --hidden_layers 3 --ff_dims "$FF_DIMS")
if [ "$QUICK" = 1 ]; then
  # tiny images: one thread is faster, and on a busy machine several threads can be 100x slower
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  OUT="$EXP_ROOT/maml_celeba_quick"
  DATA="$OUT/data"
  subset "$DATA_ROOT/$DATASET" "$DATA/$DATASET" "${QUICK_IMAGES:-2}"
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
  WIDTHS=(16)
  EPOCHS="${QUICK_EPOCHS:-200}"
  FACTOR="${QUICK_FACTOR:-4}"
  MAML=(--maml_dataset CelebA --maml_epochs 1 --maml_batch_size 1 --maml_adaptation_steps 3 --inner_lr 1e-5
        --outer_lr 5e-5 --lr_type per_parameter_per_step)
  META_TRAIN=(--steps_til_summary 1000)
  FIT=(--epochs "$EPOCHS" --epochs_til_ckpt "$EPOCHS" --steps_til_summary "$EPOCHS" --lr 0.0005 --l1_reg 1e-5
       --patience 500 --warmup 10)
  ADAROUND_ITERS=10; RETRAIN_EPOCHS=5
  SWEEP=(--jpeg_qualities 10 50 90 --jpeg2000_bpps 0.5 2 6 --webp_qualities 10 50 90 --avif_qualities 10 50 90)
else
  OUT="$EXP_ROOT/maml_celeba"
  DATA="$DATA_ROOT"
  WIDTHS=(24 32 48 64)
  FACTOR=1
  MAML=(--maml_dataset CelebA --maml_epochs 1 --maml_batch_size 1 --maml_adaptation_steps 3 --inner_lr 1e-5
        --outer_lr 5e-5 --lr_type per_parameter_per_step)
  META_TRAIN=(--steps_til_summary 1000)
  FIT=(--epochs 25000 --epochs_til_ckpt 5000 --steps_til_summary 1000 --lr 0.0005 --l1_reg 1e-5 --patience 500
       --warmup 100)
  ADAROUND_ITERS=1000; RETRAIN_EPOCHS=300
  SWEEP=()
fi
TITLE="$DATASET$([ "$FACTOR" = 1 ] || echo " (${FACTOR}x downscaled)")"

# 1. meta-learn an initialization per width (same architecture and MAML flags as the fits below: they name its folder)
for h in "${WIDTHS[@]}"; do
  tool trainMetaSiren "--data_root=$DATA" "--exp_root=$OUT" "${MAML[@]}" "${ARCH[@]}" --hidden_dims "$h" \
    --downscaling_factor "$FACTOR" "${META_TRAIN[@]}"
done

# 2. fit every image from its width's initialization (--ff_dims passed: the paper's default None broke the lookup)
for h in "${WIDTHS[@]}"; do
  tool overfitMetaSiren "--data_root=$DATA" "--exp_root=$OUT" --dataset "$DATASET" "${MAML[@]}" "${ARCH[@]}" \
    --hidden_dims "$h" --downscaling_factor "$FACTOR" "${FIT[@]}"
done

# 3. quantize the difference to the initialization, code, decode (7 and 8 bits)
for bw in 7 8; do
  tool quantize_and_test "--data_root=$DATA" "--exp_root=$OUT" --exp_glob "${DATASET}_*" --dataset "$DATASET" \
    --bitwidth "$bw" --adaround --retrain --adaround_iterations "$ADAROUND_ITERS" --adaround_reg 0.0001 \
    --retrain_epochs "$RETRAIN_EPOCHS" --retrain_lr 1e-6 --code arithmetic
done

# 4. RD curves (one per bit width), classical codecs on the same images, BD-rates, plot
CURVES=()
for bw in 7 8; do
  tag="arithmetic_bw${bw}_adaround_iter_${ADAROUND_ITERS}_adaround_reg_0.0001_retrain_epochs${RETRAIN_EPOCHS}_retrain_lr1e-06"
  tool evaluate aggregate --out "$OUT/rd_maml_bw$bw.json" --name "meta-learned (ours), $bw bit" \
    "$OUT/${DATASET}_*/results_$tag.json"
  CURVES+=("$OUT/rd_maml_bw$bw.json")
done
tool evaluate codecs "--data_root=$DATA" --dataset "$DATASET" --downscaling_factor "$FACTOR" \
  --out_dir "$OUT/codecs" --quiet "${SWEEP[@]}"
tool evaluate bd --anchor "$OUT/codecs" --test "${CURVES[@]}" --out "$OUT/bd.json" \
  || echo "  (BD-rates need >= 2 points per curve and curves that overlap in PSNR)" >&2
read -r -a ANCHOR_LIST <<< "${ANCHORS:-}"
tool evaluate plot "${CURVES[@]}" --codecs "$OUT/codecs" ${ANCHOR_LIST[@]+--anchors "${ANCHOR_LIST[@]}"} \
  --out "$OUT/rd_maml_celeba.png" --metric both --title "$TITLE, meta-learned method"
echo "done: curves $OUT/rd_maml_bw{7,8}.json, plot $OUT/rd_maml_celeba.png, BD-rates $OUT/bd.json"
