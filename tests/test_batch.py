"""Cohort runs on a local Ray: maps and a table per case, a corrupt case recorded, a resume that recomputes nothing."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from explain.cohort.batch import Choices, read_table, run_batch
from tests.conftest import ROOT, BlobNet, blob_volume

AFFINE = np.diag([1.2, 1.0, 1.5, 1.0])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cohort")
    program = torch.export.export(BlobNet().eval(), (torch.zeros(1, 1, 24, 24, 24),))
    torch.export.save(program, str(tmp / "blob.pt2"))
    rows = []
    for n, center in enumerate([(6, 16, 10), (18, 6, 12)]):
        volume, mask = blob_volume((30, 28, 26), center, 4)
        nib.save(nib.Nifti1Image(volume, AFFINE), str(tmp / f"case{n}.nii.gz"))
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), AFFINE), str(tmp / f"mask{n}.nii.gz"))
        rows.append({"path": f"case{n}.nii.gz", "mask": f"mask{n}.nii.gz", "label": "1"})
    (tmp / "broken.nii.gz").write_bytes(b"\x1f\x8b this is not a volume")
    rows.append({"path": "broken.nii.gz", "mask": "", "label": ""})
    with open(tmp / "cases.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "mask", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return tmp


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


def test_batch_on_ray_records_a_corrupt_case_and_resumes_without_recomputing(cohort, tmp_path):
    from explain.cohort.batch import read_cases

    cases = read_cases(cohort / "cases.csv")
    spec = {"path": str(cohort / "blob.pt2"), "options": {}}
    choices = Choices(("gradcam", "layercam"), ("act",), "label")
    out = tmp_path / "run"
    first = run_batch(cases, spec, choices, out, workers=2, device="cpu", progress=lambda *a: None)
    assert (first["ok"], first["failed"], first["skipped"]) == (2, 1, 0)
    assert len(first["peak_mb_per_worker"]) == 2 and all(mb > 0 for mb in first["peak_mb_per_worker"].values())
    table = read_table(out)
    failed = [r for r in table if r["status"] == "failed"]
    assert len(failed) == 1 and "broken.nii.gz" in failed[0]["error"] and "\n" not in failed[0]["error"]
    ok = [r for r in table if r["status"] == "ok"]
    assert len(ok) == 4  # 2 cases x 2 methods
    for row in ok:
        assert row["pointing_hit"] == "True" and float(row["energy_in_mask"]) > 0.5, row
        saved = nib.load(out / row["map_file"])
        assert saved.shape == (30, 28, 26) and np.allclose(saved.affine, AFFINE)  # each case's own grid
        assert row["model_hash"] and row["volume_hash"] and row["request_key"]
    stamps = {p: p.stat().st_mtime_ns for p in (out / "maps").iterdir()}
    again = run_batch(cases, spec, choices, out, workers=2, device="cpu", progress=lambda *a: None)
    assert (again["ok"], again["failed"], again["skipped"]) == (0, 0, 3)
    assert len(read_table(out)) == len(table)
    assert {p: p.stat().st_mtime_ns for p in (out / "maps").iterdir()} == stamps


def test_batch_cli_prints_one_summary_line(cohort, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "explain", "batch", str(cohort / "cases.csv"), "--model", str(cohort / "blob.pt2"),
         "--out", str(tmp_path / "cli"), "--workers", "1", "--layer", "act", "--device", "cpu"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr  # some cases failed: a distinct status for scripts
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ok"] == 2 and summary["failed"] == 1
    assert "Traceback" not in proc.stderr


@pytest.fixture()
def ray_head(tmp_path):
    """A Ray cluster started on its own with `ray start --head`, as a user would, with token authentication on
    (Ray enables it when a token exists in ~/.ray; HOME is this test's own folder). Killed afterwards."""
    import contextlib
    import os
    import re
    import secrets
    import shutil
    import signal
    import socket
    import tempfile
    import time

    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HOME": str(home)}
    env.pop("RAY_AUTH_MODE", None)
    ray_cli = str(ROOT / ".venv" / "bin" / "ray") if (ROOT / ".venv" / "bin" / "ray").exists() else "ray"
    short_tmp = tempfile.mkdtemp(prefix="cvray")  # Ray's socket paths must stay under 108 bytes
    log = open(tmp_path / "head.log", "w")
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--port", str(port), "--num-cpus", "2", "--include-dashboard",
         "false", "--disable-usage-stats", "--temp-dir", short_tmp],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        # The head is up when it prints the address to join it with; that address is what a user passes on.
        deadline, address = time.monotonic() + 600, None
        while address is None:
            found = re.search(r"ray start --address='([^']+)'", (tmp_path / "head.log").read_text())
            address = found.group(1) if found else None
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.2)  # a poll step while waiting for the head's own line
        yield address, env
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=60)
        log.close()
        shutil.rmtree(short_tmp, ignore_errors=True)


def test_batch_on_a_separately_started_head_says_what_to_set_for_its_token(cohort, tmp_path, ray_head):
    address, env = ray_head
    command = [sys.executable, "-m", "explain", "batch", str(cohort / "cases.csv"), "--model",
               str(cohort / "blob.pt2"), "--layer", "act", "--device", "cpu", "--workers", "1", "--ray", address]  # fmt: skip
    refused = subprocess.run(
        [*command, "--out", str(tmp_path / "refused")], env=env, capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "RAY_AUTH_MODE=token" in lines[0], refused.stderr
    ran = subprocess.run(
        [*command, "--out", str(tmp_path / "ran")], env={**env, "RAY_AUTH_MODE": "token"},
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert ran.returncode == 3, ran.stderr[-2000:]  # the cohort holds one corrupt case
    summary = json.loads(ran.stdout.strip().splitlines()[-1])
    assert (summary["ok"], summary["failed"]) == (2, 1)
