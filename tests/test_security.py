"""One test per finding of the attack audit: each fails on the code before the fix and passes after.

Code execution is detected with a sentinel file; fetching with a local-only HTTP server
that counts requests; memory with a subprocess's peak RSS (see test_memory_budget.py).
"""

from __future__ import annotations

import http.server
import io
import json
import os
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest
import torch

from explain.errors import InputError
from explain.io.load import load_volume
from explain.models.load import apply_card, load_model, read_model_file
from tests import hostile
from tests.conftest import ROOT, SAMPLE

# ----------------------------------------------------------------------------- finding 1: code from a .pt2


@pytest.mark.parametrize(
    "build, refused",
    [
        (hostile.pt2_pickled_weight, True),
        (hostile.pt2_opaque_constant, True),
        (hostile.pt2_pickled_sample_inputs, False),
    ],
)
def test_pt2_pickle_routes_never_run_code(tmp_path, build, refused):
    """torch.export.load runs each payload (checked in a throwaway process); our loader never does."""
    torch_sentinel, our_sentinel = tmp_path / "torch_ran", tmp_path / "we_ran"
    (tmp_path / "t.pt2").write_bytes(build(torch_sentinel))
    subprocess.run(
        [sys.executable, "-c", f"import torch; torch.export.load({str(tmp_path / 't.pt2')!r})"],
        capture_output=True,
        timeout=120,
    )
    assert torch_sentinel.exists(), "the crafted file should be a real attack on torch.export.load"
    (tmp_path / "o.pt2").write_bytes(build(our_sentinel))
    if refused:
        with pytest.raises(InputError, match="refused"):
            load_model(tmp_path / "o.pt2")
    else:  # sample inputs are never read, so the file loads and nothing runs
        assert load_model(tmp_path / "o.pt2").input_shape == (1, 8, 8, 8)
    assert not our_sentinel.exists()


@pytest.mark.parametrize(
    "data, message",
    [
        (lambda: hostile.pt2_graph_calls("torch.os.system", "true"), "not a plain torch.ops.aten operator"),
        (lambda: hostile.pt2_graph_calls("torch.ops.aten.from_file.default", "/etc/passwd"), "reads or writes files"),
        (lambda: hostile.pt2_with("data/aotinductor/model/model.so", b"\x7fELF"), "compiled native code"),
        (lambda: hostile.pt2_with("data/weights/model.pt", b"x"), "pickled file"),
        (lambda: hostile.pt2_with("data/constants/custom_obj_0", b"x"), "custom or opaque object"),
        (lambda: hostile.pt2_with("models/second.json", b"{}"), "more than one program"),
        (lambda: hostile.pt2_program_edit(lambda d: d.update(guards_code=["__import__('os')"])), "guard code"),
        (lambda: hostile.pt2_program_edit(lambda d: d.update(range_constraints={"s0": {}})), "dynamic shapes"),
        (
            lambda: hostile.pt2_program_edit(
                lambda d: d["graph_module"]["graph"]["tensor_values"]["x"]["sizes"].__setitem__(
                    0, {"as_expr": {"expr_str": "__import__('os').system('true')"}}
                )
            ),
            "symbolic",
        ),
    ],
)
def test_pt2_code_paths_are_refused_before_torch_reads_them(tmp_path, data, message):
    path = tmp_path / "m.pt2"
    path.write_bytes(data())
    with pytest.raises(InputError, match=message):
        load_model(path)


def test_genuine_pt2_loads_and_matches_torch_export_load():
    """The oracle is torch's own loader on our trusted sample: identical outputs."""
    ours = load_model(SAMPLE / "models" / "cnn.pt2")
    theirs = torch.export.load(str(SAMPLE / "models" / "cnn.pt2")).module()
    x = torch.randn(1, 1, 64, 64, 64)
    torch.testing.assert_close(ours.module(x), theirs(x), rtol=0, atol=0)
    assert (
        ours.card.class_names == ["no lesion", "bright lesion", "dark lesion"] and ours.card_origin == "inside the file"
    )


# ----------------------------------------------------------------------------- finding 2: NRRD reads server files


@pytest.mark.parametrize(
    "data_file, message",
    [
        ("/etc/passwd", "outside the header's folder"),
        ("../outside.raw", "outside the header's folder"),
        ("/dev/zero", "outside the header's folder"),
        ("LIST", "list or pattern"),
        ("slice%03d.raw 0 9 1", "list or pattern"),
    ],
)
def test_nrrd_detached_data_must_lie_beside_the_header(tmp_path, data_file, message):
    folder = tmp_path / "upload"
    folder.mkdir()
    (tmp_path / "outside.raw").write_bytes(bytes(64))
    (folder / "scan.nhdr").write_bytes(hostile.nrrd_detached(data_file, extra={"byte skip": "-1"}))
    with pytest.raises(InputError, match=message):
        load_volume(folder / "scan.nhdr")


def test_nrrd_data_file_that_is_a_link_or_device_is_refused(tmp_path):
    (tmp_path / "secret.raw").write_bytes(bytes(64))
    (tmp_path / "link.raw").symlink_to(tmp_path / "secret.raw")
    (tmp_path / "a.nhdr").write_bytes(hostile.nrrd_detached("link.raw"))
    with pytest.raises(InputError, match="not a plain file"):
        load_volume(tmp_path / "a.nhdr")


def test_nrrd_detached_pair_written_by_pynrrd_loads(tmp_path):
    """Oracle: pynrrd's own detached writer; the data file lies beside the header."""
    import nrrd

    data = np.random.default_rng(0).integers(0, 1000, (5, 6, 7)).astype(np.int16)
    nrrd.write(str(tmp_path / "v.nhdr"), data, {"space": "left-posterior-superior"}, detached_header=True)
    vol = load_volume(tmp_path / "v.nhdr")
    np.testing.assert_array_equal(vol.data, data)


def test_nrrd_gzip_data_is_read_only_up_to_its_declared_size(tmp_path):
    """A gzip stream longer than the header's sizes is not decompressed past them."""
    header = hostile.nrrd_header({"type": "uint8", "dimension": "3", "sizes": "4 4 4", "encoding": "gzip"})
    import gzip

    (tmp_path / "long.nrrd").write_bytes(header + gzip.compress(bytes(50_000_000)))
    vol = load_volume(tmp_path / "long.nrrd")
    assert vol.shape == (4, 4, 4)


# ----------------------------------------------------------------------------- finding 3: fetching URLs


@pytest.fixture()
def local_server():
    """An HTTP server on loopback that counts every request it gets."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


def _weights(tmp_path, net: torch.nn.Module):
    torch.save(net.state_dict(), tmp_path / "w.pt")
    return tmp_path / "w.pt"


@pytest.mark.parametrize(
    "arch, kwargs, message",
    [
        ("HoVerNet", {"pretrained_url": "{url}/w.pth"}, "not one camviewer builds"),
        ("DenseNet121", {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "pretrained": True}, "refused"),
        (
            "UNet",
            {
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": 2,
                "channels": [4, 8],
                "strides": [2],
                "cache_dir": "{url}",
            },
            "refused",
        ),
        ("DenseNet121", {"spatial_dims": 3, "in_channels": 1, "out_channels": "http://x/y"}, "must be a number"),
    ],
)
def test_network_arguments_never_fetch(tmp_path, local_server, arch, kwargs, message):
    url, hits = local_server
    kwargs = {k: v.replace("{url}", url) if isinstance(v, str) else v for k, v in kwargs.items()}
    path = _weights(tmp_path, torch.nn.Linear(1, 1))
    with pytest.raises(InputError, match=message):
        load_model(path, arch=arch, arch_kwargs=kwargs)
    assert hits == []


def test_no_network_guard_stops_monai_and_torch_hub_downloads(local_server):
    """Even a constructor that tries to download (HoVerNet with a URL) cannot reach the server."""
    from monai.networks.nets import HoVerNet

    from explain.models.netargs import no_network

    url, hits = local_server
    with no_network():
        with pytest.raises(InputError, match="reach the network"):
            torch.hub.load_state_dict_from_url(f"{url}/a.pth")
        with pytest.raises(InputError, match="reach the network"):
            HoVerNet(pretrained_url=f"{url}/b.pth")
    assert hits == []
    import urllib.request

    with pytest.raises(OSError):  # outside the guard the server is reachable: the test can see a fetch
        urllib.request.urlopen(f"{url}/c", timeout=5)
    assert hits == ["/c"]


# ----------------------------------------------------------------------------- finding 4: memory limits


def test_4d_nrrd_counts_every_axis(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMVIEWER_MAX_VOXELS", "1000000")
    (tmp_path / "bomb.nrrd").write_bytes(hostile.nrrd_4d_bomb())
    assert (tmp_path / "bomb.nrrd").stat().st_size < 200_000
    with pytest.raises(InputError, match="voxel limit"):
        load_volume(tmp_path / "bomb.nrrd")


@pytest.mark.parametrize("build", [hostile.pt2_inflated, hostile.pt2_compressed_zeros])
def test_pt2_tensors_are_checked_against_the_budget_before_allocation(tmp_path, monkeypatch, build):
    monkeypatch.setenv("CAMVIEWER_MAX_BYTES", str(64 * 1024**2))
    (tmp_path / "big.pt2").write_bytes(build(200 * 1024**2))
    assert (tmp_path / "big.pt2").stat().st_size < 2_000_000
    with pytest.raises(InputError, match="memory limit"):
        load_model(tmp_path / "big.pt2")


def test_network_size_is_checked_on_the_meta_device(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMVIEWER_MAX_BYTES", str(256 * 1024**2))
    path = _weights(tmp_path, torch.nn.Linear(1, 1))
    kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": 100_000}
    with pytest.raises(InputError, match="memory limit"):
        load_model(path, arch="DenseNet121", arch_kwargs=kwargs)


def test_card_and_form_shapes_are_checked(tmp_path):
    mf = read_model_file(hostile.tiny_pt2(), "tiny.pt2")
    with pytest.raises(InputError, match="input_shape"):
        apply_card(mf, overrides={"input_shape": [1, 2000, 2000, 2000]})


# ----------------------------------------------------------------------------- finding 5 and 7: cards


@pytest.mark.parametrize(
    "card, field",
    [
        ({"intensity": ["zscore"]}, "intensity"),
        ({"input_shape": ["1", "64", "64", "64"]}, "input_shape"),
        ({"class_names": 5}, "class_names"),
        ({"spacing": [0, 1, 1]}, "spacing"),
        ({"intensity": {"kind": "ct_window", "level": 40, "width": 0}}, "intensity"),
        ({"intensity": {"kind": "percentile", "lower": 90, "upper": 10}}, "intensity"),
        ({"task": {"a": {"b": {"c": 1}}}}, "task"),
        ({"default_layer": "features; import os"}, "default_layer"),
        ({"nonsense": 1}, "unknown field"),
    ],
)
def test_bad_card_fields_get_one_sentence_each(card, field):
    mf = read_model_file(hostile.tiny_pt2(), "tiny.pt2")
    with pytest.raises(InputError, match=field) as info:
        apply_card(mf, overrides=card)
    assert "Traceback" not in str(info.value) and "\n" not in str(info.value)


def test_deeply_nested_card_inside_a_pt2_is_one_sentence():
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]
    root, files = hostile.members(hostile.tiny_pt2())
    files["extra/model_card.json"] = (
        json.dumps({"name": "n", "description": "d"})[:-1].encode()
        + b', "x": '
        + (b"[" * 100_000)
        + b"]" * 100_000
        + b"}"
    )
    with pytest.raises(InputError, match="not valid JSON|not valid"):
        read_model_file(hostile.repack(root, files), "deep.pt2")


# ----------------------------------------------------------------------------- finding 6: concurrent .pt2 loads


def test_concurrent_pt2_loads_all_succeed():
    data = (SAMPLE / "models" / "unet.pt2").read_bytes()
    errors: list[BaseException] = []

    def load():
        try:
            read_model_file(data, "unet.pt2")
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ----------------------------------------------------------------------------- finding 7: device lock


def test_every_forward_pass_waits_for_the_device(sample_models, sample_case):
    """classify and model_layers queue behind a running computation (on_wait is told)."""
    from explain.cam.device import on_device
    from explain.cam.engine import classify

    waited = threading.Event()
    release = threading.Event()

    def hold():
        with on_device():
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        worker = threading.Thread(target=lambda: classify(sample_models["cnn"], sample_case, on_wait=waited.set))
        worker.start()
        assert waited.wait(10), "classify did not wait for the device"
        assert worker.is_alive()
    finally:
        release.set()
        holder.join()
    worker.join(60)
    assert not worker.is_alive()


# ----------------------------------------------------------------------------- CLI: one line, never a traceback


def test_cli_bad_dicom_orientation_is_one_line(tmp_path):
    from tests.test_volumes import _dicom_slice

    for k in range(3):
        raw = _dicom_slice(2.0 * k, np.full((6, 4), 1000))
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(raw))
        ds.ImageOrientationPatient = [1, 0]  # two numbers where six are needed
        ds.save_as(tmp_path / f"s{k}.dcm")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "explain",
            "cam",
            str(SAMPLE / "models" / "cnn.pt2"),
            str(tmp_path),
            "--out",
            str(tmp_path / "o.nii.gz"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_zip_member_names_never_become_paths(tmp_path):
    bad = tmp_path / "climb.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../../x.dcm", b"x")
    with pytest.raises(InputError, match="outside the archive"):
        load_volume(bad)


def test_nrrd_header_and_data_uploaded_together_in_a_zip(tmp_path):
    """An upload is one file, so a detached NRRD comes as a .zip; its data must sit beside the header."""
    import nrrd

    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    nrrd.write(str(tmp_path / "v.nhdr"), data, {"space": "left-posterior-superior"}, detached_header=True)
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as z:
        for f in tmp_path.glob("v.*"):
            z.write(f, f"case/{f.name}")
    np.testing.assert_array_equal(load_volume(good).data, data)
    climbing = tmp_path / "climb.zip"
    with zipfile.ZipFile(climbing, "w") as z:
        z.writestr("case/v.nhdr", hostile.nrrd_detached("../other/v.raw"))
        z.writestr("other/v.raw", bytes(64))
    with pytest.raises(InputError, match="outside the header's folder"):
        load_volume(climbing)
