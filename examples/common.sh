# Sourced by the four Fig. 4 scripts (run_{basic,maml}_{kodak,celeba}.sh): their environment, helpers,
# shared settings and shared steps, so that each script holds only what is its own. The variables and
# DRY_RUN are described in each script's header.
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
# require_dir DIR...: stop with the script's HINT (how to get the data) unless every DIR exists
require_dir() {
  local dir
  for dir in "$@"; do
    [ -d "$dir" ] || { echo "error: $dir not found ($HINT)" >&2; exit 2; }
  done
}
# subset SRC DST N: links to the first N images of SRC in DST (the quick mode's small dataset)
subset() {
  require_dir "$1"
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

# select_mode NAME QUICK_FACTOR: the settings of the full (paper) or the quick mode, for a script that has set
# DATASET, FF_DIMS and WIDTHS (the paper's widths). NAME is the experiment folder under EXP_ROOT and the
# plot's name; QUICK_FACTOR the quick mode's default downscaling. Sets EXP_NAME, OUT, DATA (where the tools
# read the datasets), ARCH, FIT (without --downscaling_factor, which the basic and the meta-learned fits place
# differently), WIDTHS, FACTOR, ADAROUND_ITERS, RETRAIN_EPOCHS, SWEEP and TITLE.
select_mode() {
  EXP_NAME="$1"
  ARCH=(--activation sine --encoding nerf --encoding_scale 1.4 --hidden_layers 3 --ff_dims "$FF_DIMS")
  if [ "$QUICK" = 1 ]; then
    # tiny images: one thread is faster, and on a busy machine several threads can be 100x slower
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    OUT="$EXP_ROOT/${EXP_NAME}_quick"
    DATA="$OUT/data"
    subset "$DATA_ROOT/$DATASET" "$DATA/$DATASET" "${QUICK_IMAGES:-2}"
    WIDTHS=(16)
    local epochs="${QUICK_EPOCHS:-200}"
    FACTOR="${QUICK_FACTOR:-$2}"
    FIT=(--epochs "$epochs" --epochs_til_ckpt "$epochs" --steps_til_summary "$epochs" --lr 0.0005 --l1_reg 1e-5
         --patience 500)
    ADAROUND_ITERS=10; RETRAIN_EPOCHS=5
    SWEEP=(--jpeg_qualities=10,50,90 --jpeg2000_bpps=0.5,2,6 --webp_qualities=10,50,90 --avif_qualities=10,50,90
           --hevc444_qps=22,32,42 --hevc420_qps=22,32,42 --jxl_qualities=10,50,90)
  else
    OUT="$EXP_ROOT/$EXP_NAME"
    DATA="$DATA_ROOT"
    FACTOR=1
    FIT=(--epochs 25000 --epochs_til_ckpt 5000 --steps_til_summary 1000 --lr 0.0005 --l1_reg 1e-5 --patience 500)
    ADAROUND_ITERS=1000; RETRAIN_EPOCHS=300
    SWEEP=()
  fi
  TITLE="$DATASET$([ "$FACTOR" = 1 ] || echo " (${FACTOR}x downscaled)")"
}

# fit_from_scratch: the basic method's fit of every image, from a random initialization, at every width
fit_from_scratch() {
  local h
  for h in "${WIDTHS[@]}"; do
    tool overfitINR "--data_root=$DATA" "--exp_root=$OUT" --dataset "$DATASET" "${ARCH[@]}" \
      --downscaling_factor "$FACTOR" "${FIT[@]}" --hidden_dims "$h"
  done
}

# fit_from_maml META_DATASET META_EPOCHS: the meta-learned method's fits: learn a MAML initialization on
# META_DATASET (META_EPOCHS epochs in the full mode, 1 in the quick one) per width, then fit every image from
# its width's initialization
fit_from_maml() {
  local h epochs=1 warmup=10
  if [ "$QUICK" != 1 ]; then epochs="$2"; warmup=100; fi
  local maml=(--maml_dataset "$1" --maml_epochs "$epochs" --maml_batch_size 1 --maml_adaptation_steps 3
              --inner_lr 1e-5 --outer_lr 5e-5 --lr_type per_parameter_per_step)
  # the same architecture and MAML flags as the fits below: they name the initialization's folder
  for h in "${WIDTHS[@]}"; do
    tool trainMetaSiren "--data_root=$DATA" "--exp_root=$OUT" "${maml[@]}" "${ARCH[@]}" --hidden_dims "$h" \
      --downscaling_factor "$FACTOR" --steps_til_summary 1000
  done
  # --ff_dims passed (in ARCH): the paper's default None broke the lookup of the initialization
  for h in "${WIDTHS[@]}"; do
    tool overfitMetaSiren "--data_root=$DATA" "--exp_root=$OUT" --dataset "$DATASET" "${maml[@]}" "${ARCH[@]}" \
      --hidden_dims "$h" --downscaling_factor "$FACTOR" "${FIT[@]}" --warmup "$warmup"
  done
}

# quantize: quantize every fit (for the meta-learned method: its difference to the initialization), code and
# decode it, at 7 and 8 bits
quantize() {
  local bw
  for bw in 7 8; do
    tool quantize_and_test "--data_root=$DATA" "--exp_root=$OUT" --exp_glob "${DATASET}_*" --dataset "$DATASET" \
      --bitwidth "$bw" --adaround --retrain --adaround_iterations "$ADAROUND_ITERS" --adaround_reg 0.0001 \
      --retrain_epochs "$RETRAIN_EPOCHS" --retrain_lr 1e-6 --code arithmetic
  done
}

# evaluate_curves CURVE METHOD: RD curves (one per bit width, OUT/rd_CURVE_bw{7,8}.json, labelled
# "METHOD (ours)"), the classical codecs on the same images, BD-rates, the plot OUT/rd_EXP_NAME.png and the
# report OUT/report/index.html (plots, tables, decoded crops side by side)
evaluate_curves() {
  local bw tag curves=()
  for bw in 7 8; do
    tag="arithmetic_bw${bw}_adaround_iter_${ADAROUND_ITERS}_adaround_reg_0.0001_retrain_epochs${RETRAIN_EPOCHS}_retrain_lr1e-06"
    tool evaluate aggregate --out "$OUT/rd_$1_bw$bw.json" --name "$2 (ours), $bw bit" \
      "$OUT/${DATASET}_*/results_$tag.json"
    curves+=("$OUT/rd_$1_bw$bw.json")
  done
  tool evaluate codecs "--data_root=$DATA" --dataset "$DATASET" --downscaling_factor "$FACTOR" \
    --out_dir "$OUT/codecs" --quiet "${SWEEP[@]}"
  tool evaluate bd --anchor "$OUT/codecs" "${curves[@]}" --out "$OUT/bd.json" \
    || echo "  (BD-rates need >= 2 points per curve and curves that overlap in PSNR)" >&2
  local anchors anchor anchor_flags=()
  read -r -a anchors <<< "${ANCHORS:-}"
  for anchor in ${anchors[@]+"${anchors[@]}"}; do anchor_flags+=(--anchors "$anchor"); done
  tool evaluate plot "${curves[@]}" --codecs "$OUT/codecs" ${anchor_flags[@]+"${anchor_flags[@]}"} \
    --out "$OUT/rd_$EXP_NAME.png" --metric both --title "$TITLE, $2 method"
  tool evaluate report "${curves[@]}" --codecs "$OUT/codecs" ${anchor_flags[@]+"${anchor_flags[@]}"} \
    "--data_root=$DATA" --dataset "$DATASET" --downscaling_factor "$FACTOR" --out "$OUT/report" \
    --title "$TITLE, $2 method"
  echo "done: curves $OUT/rd_$1_bw{7,8}.json, plot $OUT/rd_$EXP_NAME.png, BD-rates $OUT/bd.json," \
    "report $OUT/report/index.html"
}
