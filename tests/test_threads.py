"""The toolkit's OpenMP wait policy: set before torch starts, unless the user chose one."""

from __future__ import annotations

import os
import subprocess
import sys


def _policy_seen_by_a_tool(env_policy: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    code = ("import sys, inrcompress.tools.overfit_inr, os; "
            "assert 'torch' in sys.modules; print(os.environ['OMP_WAIT_POLICY'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_tools_default_to_passive_waits_before_torch_is_loaded():
    assert _policy_seen_by_a_tool(None) == "PASSIVE"


def test_a_policy_in_the_environment_is_kept():
    assert _policy_seen_by_a_tool("ACTIVE") == "ACTIVE"


def test_the_package_sets_the_policy_before_importing_torch():
    code = "import sys, inrcompress, os; print('torch' in sys.modules, os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "PASSIVE"]
