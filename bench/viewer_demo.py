"""A small Streamlit page that feeds the viewer generated data through its real Python API.

    streamlit run bench/viewer_demo.py      # then open ?case=sample&map=now&compare=2

Used by the browser tests (tests/test_browser.py) and the viewer benchmark (bench/viewer_speed.py).
Query parameters:
  case     sample (the bundled MRI, served as its NIfTI file) | permuted (the same voxels stored LPS with axes
           permuted: must look identical) | ct (the NIfTI file named by CAMVIEWER_DEMO_CT, as is) |
           ct-array (the same voxels as an array: the server writes a compact copy) | 2d
  map      now | pending (computed in the background: stages, then the map) | fail | none
  compare  number of extra maps (0..3), shown side by side
  mask     1 | 0 (sample cases: the lesion mask)
  run      any text: a fresh content key for pending maps (each test run gets its own)
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.demo_data import MODEL_GRID, blob_map, ct_map, model_grid_affine  # noqa: E402
from viewer.component import camviewer, camviewer_payload  # noqa: E402
from viewer.publish import publish_labels, publish_map, publish_nifti, publish_volume  # noqa: E402
from viewer.status import pending_map, write_status  # noqa: E402

STATIC = Path(__file__).resolve().parent / "static"
CASE = ROOT / "sample_data" / "case_brain"

st.set_page_config(page_title="camviewer viewer demo", layout="wide")


@st.cache_resource
def sample_case() -> dict:
    import nibabel as nib

    raw = (CASE / "t1_lesions.nii.gz").read_bytes()
    mask = nib.load(CASE / "lesion_mask.nii.gz")
    info = json.loads((CASE / "lesions.json").read_text())
    return {"raw": raw, "mask": np.asarray(mask.dataobj), "mask_affine": mask.affine, "info": info}


cached_ct_map = st.cache_resource(ct_map)


@st.cache_resource
def ct_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


@st.cache_resource
def ct_array(path: str) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    image = nib.load(path)
    return np.asarray(image.dataobj), image.affine


@st.cache_resource
def permuted_anatomy():
    """The sample's voxels stored in another order (S, L, P axes) with the matching affine: must look the same."""
    import nibabel as nib

    image = nib.Nifti1Image.from_bytes(gzip.decompress(sample_case()["raw"]))
    voxels = np.asarray(image.dataobj)[::-1, ::-1, :].transpose(2, 0, 1)
    n0, n1 = voxels.shape[1] - 1, voxels.shape[2] - 1
    flip = np.array([[-1, 0, 0, n0], [0, -1, 0, n1], [0, 0, 1, 0], [0, 0, 0, 1]])
    permute = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    return publish_volume(voxels, image.affine @ flip @ permute, STATIC, "demo:permuted")


@st.cache_resource
def sample_maps(_anatomy_affine: np.ndarray, shape, _lesions: list) -> list[tuple[str, np.ndarray, np.ndarray]]:
    affine = model_grid_affine(_anatomy_affine, shape, MODEL_GRID)
    bright, dark = (next(x for x in _lesions if x["label"] == n)["center_world_mm"] for n in (1, 2))
    return [
        ("Grad-CAM · block3 · bright lesion", affine, blob_map(affine, MODEL_GRID, [(1.0, bright)], 7.0)),
        ("Grad-CAM · block3 · dark lesion", affine, blob_map(affine, MODEL_GRID, [(1.0, dark)], 7.0)),
        ("HiResCAM · block2 · bright lesion", affine, blob_map(affine, MODEL_GRID, [(1.0, bright), (0.5, dark)], 9.0)),
        ("LayerCAM · block1 · bright lesion", affine, blob_map(affine, MODEL_GRID, [(0.7, bright)], 5.0)),
    ]


def simulate_engine(key: str, title: str, values: np.ndarray, affine: np.ndarray, fail: bool) -> None:
    """Stand-in for the engine: stages a few hundred ms apart, then the map (or a failure)."""
    for stage in ("forward", "gradients", "mapping"):
        time.sleep(0.8)
        write_status(STATIC, key, stage, message="(demo)")
    time.sleep(0.8)
    if fail:
        write_status(STATIC, key, "failed", message="The demo engine was told to fail.")
        return
    write_status(STATIC, key, "done", map=publish_map(values, affine, STATIC, key))


def map_entries(specs, mode: str, run: str, n_compare: int) -> list:
    entries = []
    for n, (title, affine, values) in enumerate(specs[: 1 + n_compare]):
        if n == 0 and mode in ("pending", "fail"):
            key = f"demo-map:{run}:{title}:{st.session_state.get('recompute', 0)}"
            started = st.session_state.setdefault("started", set())
            if key not in started:
                started.add(key)
                threading.Thread(target=simulate_engine, args=(key, title, values, affine, mode == "fail")).start()
            entries.append(pending_map(STATIC, key, title))
        else:
            entries.append((title, publish_map(values, affine, STATIC, f"demo-map:{title}")))
    return entries


def main() -> None:
    q = st.query_params
    case, mode = q.get("case", "sample"), q.get("map", "now")
    n_compare, run = int(q.get("compare", "0")), q.get("run", "0")
    if st.button("Recompute the map", key="recompute_btn"):
        st.session_state["recompute"] = st.session_state.get("recompute", 0) + 1
        mode = "pending" if mode == "now" else mode
    if st.session_state.get("recompute"):
        mode = "pending" if mode == "now" else mode
    mask_kw = {}
    if case in ("sample", "permuted"):
        data = sample_case()
        t0 = time.time()  # the data is on the server: from here on, the viewer's time
        sample = publish_nifti(data["raw"], STATIC, "demo:sample")
        anatomy = permuted_anatomy() if case == "permuted" else sample
        specs = sample_maps(np.array(sample.affine), tuple(data["mask"].shape), data["info"]["lesions"])
        if q.get("mask", "1") == "1":
            mask = publish_labels(data["mask"], data["mask_affine"], STATIC, "demo:mask")
            names = {int(k): v for k, v in data["info"]["mask_labels"].items()}
            mask_kw = {"mask": mask, "mask_names": names, "mask_title": "lesion mask"}
    elif case in ("ct", "ct-array"):
        raw = ct_bytes(os.environ["CAMVIEWER_DEMO_CT"])
        if case == "ct":
            t0 = time.time()
            anatomy = publish_nifti(raw, STATIC, f"demo:ct:{len(raw)}")
        else:  # the path of DICOM or NRRD uploads: an array the server must write a compact copy of
            voxels, affine = ct_array(os.environ["CAMVIEWER_DEMO_CT"])
            t0 = time.time()
            anatomy = publish_volume(voxels, affine, STATIC, f"demo:ct-array:{run}")
        values, grid_affine = cached_ct_map()
        specs = [("Grad-CAM · demo · CT", grid_affine, values)]
    elif case == "2d":
        y, x = np.mgrid[0:200, 0:300]
        image = (1000 + 800 * (np.hypot(x - 90, y - 60) < 25) + 40 * np.sin(x / 9.0)).T.astype(np.int16)  # [nx, ny]
        affine = np.diag([0.5, 0.5, 1.0, 1.0])
        t0 = time.time()
        anatomy = publish_volume(image, affine, STATIC, "demo:2d")
        grid = (30, 20)
        grid_affine = np.diag([5.0, 5.0, 1.0, 1.0])
        grid_affine[:2, 3] = 2.25
        specs = [("Grad-CAM · demo · 2D", grid_affine, blob_map(grid_affine, grid, [(1.0, (45.0, 30.0))], 8.0))]
    else:
        st.error(f"unknown case {case!r}")
        return
    maps = [] if mode == "none" else map_entries(specs, mode, run, n_compare)
    payload = camviewer_payload(STATIC, anatomy, maps=maps, layout=q.get("layout", "1x3"), **mask_kw)
    camviewer(payload, key="demo")
    st.caption(f"server-data-ready-epoch={t0:.3f}")


main()
