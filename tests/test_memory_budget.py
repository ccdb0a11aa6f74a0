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


CLI_CHILD = """
import json, sys
from explain.__main__ import main
code = main(sys.argv[1:])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"code": code, "peak": int(hwm.split()[1]) * 1024}))
"""


def test_a_clinical_size_unet_map_stays_under_the_budget_in_windows(tmp_path):
    """The UNet of the issue (channels 16-128, 2 residual units, weights + --arch UNet, a card input_shape the size
    of the volume), at a smaller scale: one pass would need about twice what the budget leaves, so it runs in
    windows, and the whole process (interpreter, torch and MONAI included) stays within the budget + 10%."""
    import nibabel as nib
    import numpy as np
    import torch
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [16, 32, 64, 128],
              "strides": [2, 2, 2], "num_res_units": 2}  # fmt: skip
    torch.save(UNet(**kwargs).state_dict(), tmp_path / "unet.pt")
    side = 160
    (tmp_path / "card.json").write_text(json.dumps({"task": "segmentation", "input_shape": [1, side, side, side]}))
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.random((side,) * 3, dtype=np.float32), np.eye(4)), str(tmp_path / "ct.nii.gz"))
    budget = 1024**3
    env = {
        "CAMVIEWER_MAX_BYTES": str(budget),
        "PYTHONWARNINGS": "ignore",
        "PATH": "/usr/bin:/bin",
        "OMP_NUM_THREADS": "2",
    }
    args = ["cam", str(tmp_path / "unet.pt"), str(tmp_path / "ct.nii.gz"), "--arch", "UNet", "--arch-kwargs",
            json.dumps(kwargs), "--card", str(tmp_path / "card.json"), "--method", "hirescam", "--target", "1",
            "--layer", "model.1.submodule.1.submodule.0", "--device", "cpu", "--out", str(tmp_path / "map.nii.gz"),
            "--json"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", CLI_CHILD, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=1800
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    result, summary = json.loads(lines[-1]), json.loads("\n".join(lines[:-1]))
    assert result["code"] == 0
    assert summary["maps"][0]["windows"] > 1, summary["maps"][0]
    assert result["peak"] <= 1.1 * budget, f"peak {result['peak'] / 2**30:.2f} GiB"
    assert nib.load(tmp_path / "map.nii.gz").shape == (side,) * 3


def test_a_pt2_whose_graph_makes_4_gib_from_nothing_is_refused_before_it_runs(tmp_path):
    import torch

    class Inflate(torch.nn.Module):
        def forward(self, x):
            return x + torch.ones(1024, 1024, 1024).sum()  # 4 GiB, made inside forward

    torch.export.save(torch.export.export(Inflate(), (torch.zeros(1, 1, 8, 8, 8),)), str(tmp_path / "inflate.pt2"))
    result = _peak("model", tmp_path / "inflate.pt2", 2 * 1024**3)
    assert result["outcome"].startswith("refused") and "one run of its graph" in result["outcome"], result
    assert "4.0 GiB" in result["outcome"] and "\n" not in result["outcome"]
    assert result["peak"] < 1024**3, f"peak {result['peak'] / 2**30:.2f} GiB"
