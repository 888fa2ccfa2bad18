"""The toolkit's default of one OpenMP thread per process: set before torch starts, unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys


def _threads_of_a_tool(env_threads: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if env_threads is not None:
        env["OMP_NUM_THREADS"] = env_threads
    code = "import inrcompress.tools.overfit_inr, torch; print(torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_tools_run_one_thread_per_process_by_default():
    assert _threads_of_a_tool(None) == 1


def test_a_thread_count_in_the_environment_is_kept():
    assert _threads_of_a_tool("2") == 2


def test_the_package_sets_the_default_before_importing_torch():
    code = "import sys, inrcompress, os; print('torch' in sys.modules, os.environ['OMP_NUM_THREADS'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "1"]
