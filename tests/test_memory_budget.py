"""Hostile files stay under twice the configured memory budget, measured as a subprocess's peak RSS.

Each attack runs in a fresh Python process with CAMVIEWER_MAX_BYTES set; the child
tries to load the file, expects a one-sentence refusal, and reports its peak RSS
(`VmHWM`, which includes the interpreter and torch themselves: about 0.4 GiB).
Before the fix, the 1.9 GiB gzip bomb peaked at 4.2 GB under a 2 GiB budget.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import hostile
from tests.conftest import ROOT

CHILD = """
import json, sys
from explain.errors import InputError
kind, path = sys.argv[1], sys.argv[2]
try:
    if kind == "model":
        from explain.models.load import load_model
        load_model(path)
    else:
        from explain.io.load import load_volume
        load_volume(path)
    outcome = "loaded"
except InputError as e:
    outcome = "refused: " + str(e)
# VmHWM: this address space's peak RSS (ru_maxrss would include the parent's size at fork)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"outcome": outcome, "peak": int(hwm.split()[1]) * 1024}))
"""


def _peak(kind: str, path, budget: int, voxels: int | None = None) -> dict:
    env = {"CAMVIEWER_MAX_BYTES": str(budget), "PYTHONWARNINGS": "ignore", "PATH": "/usr/bin:/bin"}
    if voxels:
        env["CAMVIEWER_MAX_VOXELS"] = str(voxels)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(path)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_gzip_bomb_under_the_budget_stays_under_twice_the_budget(tmp_path):
    budget = 2 * 1024**3
    bomb = hostile.nifti_gzip_bomb(tmp_path / "bomb.nii.gz", int(1.9 * 1024**3))
    assert bomb.stat().st_size < 5_000_000
    result = _peak("volume", bomb, budget)
    assert result["outcome"].startswith("refused") and "memory limit" in result["outcome"]
    assert result["peak"] < 2 * budget, f"peak {result['peak'] / 2**30:.2f} GiB"


def test_4d_nrrd_stays_under_twice_the_budget(tmp_path):
    budget = 512 * 1024**2
    (tmp_path / "bomb.nrrd").write_bytes(hostile.nrrd_4d_bomb())
    result = _peak("volume", tmp_path / "bomb.nrrd", budget, voxels=1_000_000)
    assert result["outcome"].startswith("refused")
    assert result["peak"] < 2 * budget, f"peak {result['peak'] / 2**30:.2f} GiB"


@pytest.mark.parametrize("build", [hostile.pt2_inflated, hostile.pt2_compressed_zeros])
def test_inflating_pt2_stays_under_twice_the_budget(tmp_path, build):
    budget = 512 * 1024**2
    (tmp_path / "big.pt2").write_bytes(build(int(1.2 * 1024**3)))
    assert (tmp_path / "big.pt2").stat().st_size < 5_000_000
    result = _peak("model", tmp_path / "big.pt2", budget)
    assert result["outcome"].startswith("refused") and "memory limit" in result["outcome"]
    assert result["peak"] < 2 * budget, f"peak {result['peak'] / 2**30:.2f} GiB"
