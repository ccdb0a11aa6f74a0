"""`python -m explain`: the stable interface others script against; bad input is one line, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.conftest import ROOT, BlobNet, blob_volume

AFFINE = np.array([[-1.2, 0, 0, 30.0], [0, 1.0, 0, -20.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "explain", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    program = torch.export.export(BlobNet().eval(), (torch.zeros(1, 1, 24, 24, 24),))
    torch.export.save(program, str(tmp / "blob.pt2"))
    volume, mask = blob_volume((30, 28, 26), (20, 8, 13), 4)
    nib.save(nib.Nifti1Image(volume, AFFINE), str(tmp / "vol.nii.gz"))
    return tmp, mask


def test_layers_json(files):
    tmp, _ = files
    proc = _cli("layers", str(tmp / "blob.pt2"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {row["name"] for row in out["layers"]} >= {"detect", "act"}
    # Both layers have a 24^3 grid; the rule (hooks.default_layer) takes the last of equal-sized grids.
    assert out["default"] == "act"
    assert [row["name"] for row in out["layers"] if row["default"]] == ["act"]


def test_cam_writes_nifti_on_the_input_grid(files):
    tmp, mask = files
    proc = _cli(
        "cam",
        str(tmp / "blob.pt2"),
        str(tmp / "vol.nii.gz"),
        "--out",
        str(tmp / "cam.nii.gz"),
        "--layer",
        "act",
        "--target",
        "1",
        "--raw-out",
        str(tmp / "raw.npy"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["maps"][0]["layer"] == "act" and report["maps"][0]["target"] == 1
    assert report["predicted"] == 1 and len(report["probabilities"]) == 2
    assert set(report["timings_s"]) >= {"forward", "backward", "upsample", "total"}
    cam = nib.load(str(tmp / "cam.nii.gz"))
    assert cam.shape == (30, 28, 26) and cam.get_data_dtype() == np.float32
    np.testing.assert_allclose(cam.affine, AFFINE, atol=1e-6)
    data = np.asarray(cam.dataobj)
    assert mask[np.unravel_index(np.argmax(data), data.shape)]
    assert np.load(tmp / "raw.npy").shape == (24, 24, 24)


def test_cam_all_targets_writes_one_file_per_class(files):
    tmp, _ = files
    proc = _cli(
        "cam",
        str(tmp / "blob.pt2"),
        str(tmp / "vol.nii.gz"),
        "--out",
        str(tmp / "all.nii.gz"),
        "--target",
        "all",
        "--method",
        "layercam",
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list(tmp.glob("all_*.nii.gz"))) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["cam", "{tmp}/missing.pt2", "{tmp}/vol.nii.gz", "--out", "{tmp}/o.nii.gz"], "no such model file"),
        (["cam", "{tmp}/blob.pt2", "{tmp}/missing.nii", "--out", "{tmp}/o.nii.gz"], "no such file"),
        (["cam", "{tmp}/blob.pt2", "{tmp}/corrupt.nii.gz", "--out", "{tmp}/o.nii.gz"], "corrupt.nii.gz"),
        (["cam", "{tmp}/blob.pt2", "{tmp}/flat.nii.gz", "--out", "{tmp}/o.nii.gz"], "a 2D image cannot go into"),
        (["cam", "{tmp}/blob.pt2", "{tmp}/vol.nii.gz", "--out", "{tmp}/o.nii.gz", "--layer", "detekt"], "closest"),
        (
            ["cam", "{tmp}/blob.pt2", "{tmp}/vol.nii.gz", "--out", "{tmp}/o.nii.gz", "--method", "magic"],
            "unknown method",
        ),
        (
            ["cam", "{tmp}/blob.pt2", "{tmp}/vol.nii.gz", "--out", "{tmp}/o.nii.gz", "--method", "vit-rollout"],
            "needs a ViT",
        ),
        (["cam", "{tmp}/blob.pt2", "{tmp}/vol.nii.gz", "--out", "{tmp}/o.nii.gz", "--target", "9"], "does not exist"),
        (["cam", "{tmp}/blob.pt2", "{tmp}/vol4d.nii.gz", "--out", "{tmp}/o.nii.gz"], None),
    ],
)
def test_bad_input_is_one_line_and_nonzero(files, args, message):
    tmp, _ = files
    (tmp / "corrupt.nii.gz").write_bytes((tmp / "vol.nii.gz").read_bytes()[:300])
    nib.save(nib.Nifti1Image(np.zeros((10, 10), np.float32), np.eye(4)), str(tmp / "flat.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((24, 24, 24, 2), np.float32), np.eye(4)), str(tmp / "vol4d.nii.gz"))
    proc = _cli(*[a.format(tmp=tmp) for a in args])
    if message is None:  # a 4D file is usable: volume 0 is taken, and the JSON-less run succeeds
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
