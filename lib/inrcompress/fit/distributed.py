"""Running a tool's work in several processes started by torchrun (torch.distributed elastic).

    torchrun --standalone --nproc_per_node 2 image_compression/overfitINR.py <flags>
    torchrun --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint host:29500 ... (SLURM: examples/slurm)

torchrun starts one process ("rank") per --nproc_per_node on every node and gives each RANK,
WORLD_SIZE and LOCAL_RANK in its environment. Without them (a plain `python script.py`) the world
is one process and nothing here does anything: no process group, no barrier, the device flag as
given, the whole work list.

With WORLD_SIZE > 1, join() (called by every run loop before its work) once per process:
- initialises the default process group (gloo; with CUDA "cpu:gloo,cuda:nccl", so CUDA tensors
  go through NCCL), plus a gloo group for barriers whose timeout is BARRIER_TIMEOUT: a rank that is
  done waits there for the slowest one, which may take hours;
- uses the GPU of its LOCAL_RANK: --device auto or cuda becomes cuda:<LOCAL_RANK> where CUDA is
  available (an explicit ordinal, e.g. cuda:1, is kept); one thread per rank on a CPU
  (torch.set_num_threads(1), unless OMP_NUM_THREADS is set -- torchrun sets it to 1 itself);
- prefixes every line the process prints on stdout with "[rank R/N] " (progress bars, on stderr,
  are shown by rank 0 only: the run loops pass show_progress=is_main()).

The work: every rank lists the same work (the images or shapes not finished yet, the (experiment,
run) pairs to quantize) and takes share(work), items rank, rank + N, ... -- disjoint, together
all of it, a deterministic function of the list. share() first waits for every rank to have made
its list, so no rank's list can see a signal another rank finished in the meantime. Each signal's
own files (checkpoints, result.json) are written by the rank fitting it; the experiment-level
files (result.json, results_*.json) by rank 0 alone, after barrier(), from the per-signal files.

Faults: torchrun --max_restarts K restarts every rank of the group when one fails. The restarted
ranks list the unfinished work again (a finished signal is skipped, a half-fitted one resumes from
its checkpoint), share it and meet at the same barriers as before, so no barrier waits for a rank
that is not coming (and each attempt keys its own entries of torchrun's store: _fresh_store). The
exp_root must be a folder every node sees (a shared file system).

Test hook (tests/test_distributed.py): with INRCOMPRESS_TEST_KILL="R:S" in the environment, rank R
kills itself with SIGKILL right after its S-th fit step (counted over every fit of the process),
in the first run of the group only (TORCHELASTIC_RESTART_COUNT unset or 0), so a restart resumes.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

# How long barrier() waits for the other ranks before it fails (a rank that is done waits there
# for the slowest one; a rank that dies ends the group at once anyway: torchrun stops the others).
BARRIER_TIMEOUT = timedelta(days=7)
TEST_KILL_VARIABLE = "INRCOMPRESS_TEST_KILL"


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group: rank in [0, world_size), local_rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks() -> Ranks:
    """The group torchrun started this process in (RANK, WORLD_SIZE, LOCAL_RANK); one process without."""
    env = os.environ
    return Ranks(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def is_main() -> bool:
    """Whether this process writes the experiment-level files (rank 0, or the only process)."""
    return ranks().is_main


_barrier_group = None


def join(device: str) -> str:
    """Join the group torchrun started (see the module docstring) and return the device name this
    rank uses for the --device flag `device`; without torchrun `device` unchanged, nothing else."""
    global _barrier_group
    me = ranks()
    if me.world_size == 1:
        return device
    cuda = torch.cuda.is_available()
    if device in ("auto", "cuda") and cuda:
        device = f"cuda:{me.local_rank}"
    elif device == "auto":
        device = "cpu"
    if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    if _barrier_group is None:
        if cuda and me.local_rank < torch.cuda.device_count():
            torch.cuda.set_device(me.local_rank)
        backend = "cpu:gloo,cuda:nccl" if cuda and dist.is_nccl_available() else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend, **_fresh_store(me))
        _barrier_group = dist.new_group(backend="gloo", timeout=BARRIER_TIMEOUT)
        atexit.register(_leave)
        sys.stdout = _LinePrefixed(sys.stdout, f"[rank {me.rank}/{me.world_size}] ")
    return device


def _fresh_store(me: Ranks) -> dict:
    """init_process_group's store arguments that keep a restarted group off the keys of a failed
    attempt. torchrun's c10d rendezvous shares one store between its attempts, so a restarted rank
    can read what a dead rank of the failed attempt wrote there (its gloo address: the connection is
    refused, or a barrier passes or waits wrongly). On one node every rank sees the same
    TORCHELASTIC_RESTART_COUNT, so a key prefix per attempt separates them. Across nodes the counts
    differ (each agent counts its own restarts): there torchrun must run with
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (a fresh store per attempt; examples/slurm/launch.sh sets it)."""
    env = os.environ
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or int(env.get("LOCAL_WORLD_SIZE", 0)) != me.world_size:
        return {}
    shared = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), me.world_size, is_master=False)
    store = dist.PrefixStore(f"inrcompress/attempt_{env.get('TORCHELASTIC_RESTART_COUNT', '0')}/", shared)
    return {"store": store, "rank": me.rank, "world_size": me.world_size}


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank is here (no-op in one process)."""
    if _barrier_group is not None:
        dist.barrier(group=_barrier_group)


def share(work: Sequence[T]) -> list[T]:
    """This rank's share of `work` (a list every rank computed alike): items rank, rank + N, ...
    In a group it waits first until every rank has computed its list (module docstring)."""
    me = ranks()
    barrier()
    return list(work[me.rank::me.world_size])


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over the ranks, in place (every rank gets the same values); no-op in one process."""
    if _barrier_group is not None:
        dist.all_reduce(tensor)
    return tensor


def with_test_kill(step_hook: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """step_hook, plus the fault of INRCOMPRESS_TEST_KILL where it applies (module docstring)."""
    setting = os.environ.get(TEST_KILL_VARIABLE)
    if not setting or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0:
        return step_hook
    rank, at_step = (int(v) for v in setting.split(":"))
    if rank != ranks().rank:
        return step_hook
    steps = [0]

    def hook(step: int) -> None:
        if step_hook is not None:
            step_hook(step)
        steps[0] += 1
        if steps[0] == at_step:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    return hook


class _LinePrefixed:
    """A text stream that writes `prefix` at the start of every line into `stream`."""

    def __init__(self, stream, prefix: str):
        self._stream, self._prefix, self._at_line_start = stream, prefix, True

    def write(self, text: str) -> int:
        pieces = []
        for line in text.splitlines(keepends=True):
            if self._at_line_start:
                pieces.append(self._prefix)
            pieces.append(line)
            self._at_line_start = line.endswith("\n")
        self._stream.write("".join(pieces))
        return len(text)

    def __getattr__(self, name):  # flush, fileno, isatty, encoding, ... of the stream
        return getattr(self._stream, name)
