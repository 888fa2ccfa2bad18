#!/usr/bin/env bash
# The PYTHON of the Fig. 4 scripts (examples/run_*.sh) inside a SLURM allocation: a tool that splits
# its work over ranks (fit/distributed.py) runs as one srun step over every node of the job, each
# node starting GPUS_PER_NODE ranks with torchrun; every other command (evaluate.py: codecs, curves,
# plots) runs once, here, on the batch host.
#
#   launch.sh image_compression/overfitINR.py --hidden_dims 32 ...
#
# Environment (set by the sbatch scripts; the defaults are those of a single machine):
#   PYTHON_BIN        the interpreter on every node (default <repo>/.venv/bin/python, else python3)
#   GPUS_PER_NODE     ranks per node (default $SLURM_GPUS_ON_NODE, else 1)
#   MAX_RESTARTS      torchrun --max_restarts: a failed rank restarts the group, which resumes (default 1)
#   RDZV_PORT         the rendezvous port on the first node of the job (default 29500)
#   ONE_RANK_TOOLS    tools to run with a single rank (default none; the MAML sweep puts
#                     trainMetaSiren here: a meta-batch of 1 cannot be split)
#   LAUNCH_DRY_RUN=1  print the command instead of running it
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ -z "${PYTHON_BIN:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON_BIN="$REPO/.venv/bin/python"; else PYTHON_BIN=python3; fi
fi
DISTRIBUTED_TOOLS=" overfitINR overfitMetaSiren trainMetaSiren quantize_and_test overfitINR3D quantize_and_test3D "
tool="$(basename "${1:-}" .py)"
nodes="${SLURM_JOB_NUM_NODES:-1}"
per_node="${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}"
case " ${ONE_RANK_TOOLS:-} " in *" $tool "*) nodes=1; per_node=1 ;; esac

if [[ "$DISTRIBUTED_TOOLS" == *" $tool "* ]]; then
  if [ -n "${SLURM_JOB_NODELIST:-}" ] && command -v scontrol > /dev/null; then
    head_node="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
  else
    head_node=localhost
  fi
  # a fresh store for every restart of the group: the shared one keeps a failed attempt's keys,
  # which the ranks of different nodes cannot tell apart (fit/distributed.py, _fresh_store)
  export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
  # one rendezvous per tool run: the id is made here, once, and is the same on every node
  rdzv_id="${SLURM_JOB_ID:-local}-$tool-$(date +%s%N)"
  command=(srun --nodes "$nodes" --ntasks "$nodes" --ntasks-per-node 1 --kill-on-bad-exit=1
           "$PYTHON_BIN" -m torch.distributed.run --nnodes "$nodes" --nproc_per_node "$per_node"
           --max_restarts "${MAX_RESTARTS:-1}" --rdzv_backend c10d --rdzv_endpoint "$head_node:${RDZV_PORT:-29500}"
           --rdzv_id "$rdzv_id" "$@")
else
  command=("$PYTHON_BIN" "$@")
fi
if [ "${LAUNCH_DRY_RUN:-0}" = 1 ]; then printf '%q ' "${command[@]}"; echo; exit 0; fi
exec "${command[@]}"
