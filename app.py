"""camviewer: where did a 3D medical-imaging model look? (Streamlit entry; composition only.)

streamlit run app.py        # or: make app
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import streamlit as st

from explain import __version__
from explain.errors import InputError
from explain.methods import LABELS as METHOD_LABELS
from explain.volumes import Volume, load_volume, load_volume_bytes, nifti_bytes, to_ras
from viewer.windowing import auto_window, default_window

ROOT = Path(__file__).resolve().parent
SAMPLE_CASE = ROOT / "sample_data" / "case_brain" / "t1_lesions.nii.gz"
SAMPLE_MODELS = {
    "Sample 3D CNN (lesion classifier)": ROOT / "sample_data" / "models" / "cnn.pt2",
    "Sample 3D ViT (lesion classifier)": ROOT / "sample_data" / "models" / "vit.pt2",
    "Sample 3D UNet (lesion segmentation)": ROOT / "sample_data" / "models" / "unet.pt2",
}
STATE_DIR = Path(os.environ.get("CAMVIEWER_STATE_DIR", ROOT / ".cache"))
CASE_DIR = os.environ.get("CAMVIEWER_CASE_DIR", "")
MAX_VOXELS = int(os.environ.get("CAMVIEWER_MAX_VOXELS", 200_000_000))
PLAIN_ERRORS = {
    "volume": "This image could not be opened",
    "model": "This model could not be used",
    "compute": "The map could not be computed",
}

st.set_page_config(page_title="camviewer", layout="wide")


# ----------------------------------------------------------------------------- cached resources
@st.cache_resource(show_spinner=False)
def cam_cache():
    from explain.cache import CamCache

    return CamCache(STATE_DIR / "cams", max_disk_bytes=int(os.environ.get("CAMVIEWER_CACHE_BYTES", 2 * 1024**3)))


@st.cache_resource(show_spinner=False)
def engine_stats() -> dict:
    """Counts real engine runs (cache misses); tests read it."""
    return {"engine_calls": 0}


@st.cache_resource(show_spinner=False, max_entries=8)
def load_model_cached(path: str, file_hash: str, arch: str | None, arch_kwargs_json: str, card_json: str):
    from explain.models import load_model

    del file_hash  # part of the cache key only: same path, new content -> reload
    card = json.loads(card_json) if card_json else None
    return load_model(path, arch=arch, arch_kwargs=json.loads(arch_kwargs_json), card=card)


@st.cache_resource(show_spinner=False, max_entries=4)
def volume_by_key(key: str, path: str) -> Volume:
    del key
    return load_volume(path, max_voxels=MAX_VOXELS)


@st.cache_resource(show_spinner=False, max_entries=4)
def uploaded_volume(digest: str, name: str, _raw: bytes) -> Volume:
    del digest  # the key; the bytes are not hashed by Streamlit
    return load_volume_bytes(_raw, name, max_voxels=MAX_VOXELS)


@st.cache_resource(show_spinner=False, max_entries=4)
def display_copy(volume_hash: str, _volume: Volume) -> dict:
    """RAS-ordered anatomy, published once for the browser; plus its window."""
    from viewer.display import publish_anatomy, spacing_of

    data_ras, affine_ras = to_ras(_volume.data, _volume.affine)
    preset, width, level = default_window(data_ras)
    auto_width, auto_level = auto_window(data_ras)  # the 'MR auto' preset, for any modality
    published = publish_anatomy(data_ras, volume_hash, ROOT / "static")
    return {
        "data_ras": data_ras,
        "affine_ras": affine_ras,
        "published": published,
        "spacing": spacing_of(affine_ras),
        "window": {
            "preset": preset,
            "width": width,
            "level": level,
            "auto_width": auto_width,
            "auto_level": auto_level,
        },
    }


@st.cache_resource(show_spinner=False, max_entries=8)
def display_cam(volume_hash: str, model_hash: str, method: str, layer: str, target: int, _cam, _affine) -> tuple:
    """One map in RAS order, published once for the browser, and its peak voxel; cached per map, not per rerun."""
    from viewer.display import peak_voxel, publish_cam

    cam_ras, _ = to_ras(_cam, _affine)
    key = f"{volume_hash}:{model_hash}:{method}:{layer}:{target}"
    return cam_ras, publish_cam(cam_ras, key, ROOT / "static"), peak_voxel(cam_ras)


def digest(raw: bytes) -> str:
    import hashlib

    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def fail(stage: str, error: Exception) -> None:
    st.session_state["errors"].append(f"{PLAIN_ERRORS[stage]}: {error}")


# ----------------------------------------------------------------------------- sidebar: inputs
def choose_volume() -> Volume | None:
    st.sidebar.header("1 · Image")
    sources = ["Sample brain MRI", "Upload a volume"] + (["Case folder"] if CASE_DIR else [])
    source = st.sidebar.radio("Source", sources, key="volume_source")
    try:
        if source == "Sample brain MRI":
            return volume_by_key(f"sample:{SAMPLE_CASE.stat().st_mtime}", str(SAMPLE_CASE))
        if source == "Case folder":
            cases = sorted(p for p in Path(CASE_DIR).iterdir() if not p.name.startswith("."))
            pick = st.sidebar.selectbox("Case", cases, format_func=lambda p: p.name, key="case_pick")
            return volume_by_key(f"case:{pick}:{pick.stat().st_mtime}", str(pick)) if pick else None
        upload = st.sidebar.file_uploader("NIfTI, NRRD or a DICOM series (.zip)", key="volume_upload")
        if upload is None:
            st.sidebar.info("Upload a volume to begin.")
            return None
        raw = upload.getvalue()
        return uploaded_volume(digest(raw), upload.name, raw)
    except InputError as e:
        fail("volume", e)
    return None


def choose_model():
    st.sidebar.header("2 · Model")
    source = st.sidebar.radio(
        "Source", [*SAMPLE_MODELS, "Upload .pt2", "Upload weights + MONAI network"], key="model_source"
    )
    try:
        if source in SAMPLE_MODELS:
            path = SAMPLE_MODELS[source]
            return load_model_cached(str(path), str(path.stat().st_mtime), None, "{}", "")
        upload = st.sidebar.file_uploader("Model file", key="model_upload")
        arch, kwargs = None, "{}"
        if source.startswith("Upload weights"):
            arch = st.sidebar.text_input("MONAI network", "DenseNet121", key="arch")
            kwargs = st.sidebar.text_input(
                "Arguments (JSON)", '{"spatial_dims": 3, "in_channels": 1, "out_channels": 2}', key="arch_kwargs"
            )
        card_json = preprocessing_form()
        if upload is None:
            st.sidebar.info("Upload a model file.")
            return None
        raw = upload.getvalue()
        folder = Path(tempfile.gettempdir()) / "camviewer-models" / digest(raw)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / Path(upload.name).name
        path.write_bytes(raw)
        try:
            json.loads(kwargs)
        except json.JSONDecodeError as e:
            raise InputError(f"the network arguments are not valid JSON ({e})") from e
        return load_model_cached(str(path), digest(raw), arch, kwargs, card_json)
    except InputError as e:
        fail("model", e)
    return None


def preprocessing_form() -> str:
    """For models without a card: intensity and input shape, chosen by the user."""
    with st.sidebar.expander("Preprocessing (used when the model has no card)"):
        intensity = st.selectbox(
            "Intensity", ["MR percentile 0.5-99.5", "CT soft tissue", "z-score", "none"], key="pre_intensity"
        )
        shape = st.text_input("Model input shape (C, D, H, W)", "1, 96, 96, 96", key="pre_shape")
        task = st.selectbox("Task", ["classification", "segmentation"], key="pre_task")
    spec = {
        "MR percentile 0.5-99.5": {"kind": "percentile", "lower": 0.5, "upper": 99.5},
        "CT soft tissue": {"kind": "ct_window", "level": 40, "width": 400},
        "z-score": {"kind": "zscore"},
        "none": {"kind": "none"},
    }[intensity]
    try:
        dims = [int(s) for s in shape.replace("x", ",").split(",") if s.strip()]
    except ValueError:
        dims = []
    card = {"task": task, "intensity": spec, "orientation": "RAS"}
    if len(dims) == 4:
        card["input_shape"] = dims
    return json.dumps(card)


def choose_settings(model, probabilities) -> dict | None:
    from explain.engine import default_layer_for, model_layers, valid_methods

    st.sidebar.header("3 · Explanation")
    methods = valid_methods(model)
    method = st.sidebar.selectbox("Method", methods, format_func=METHOD_LABELS.get, key="method")
    layers, _ = model_layers(model)
    names = [info.name for info in layers]
    default = default_layer_for(model)
    settings = {"method": method, "layer": default, "block": None, "head": None}
    if method in ("gradcam", "gradcampp", "hirescam", "layercam"):
        shapes = {info.name: "x".join(map(str, info.shape)) for info in layers}
        if st.session_state.get("layer") not in names:
            st.session_state["layer"] = default
        settings["layer"] = st.sidebar.selectbox(
            "Layer", names, format_func=lambda n: f"{n}  [{shapes[n]}]", key="layer"
        )
    elif method == "vit-attention":
        n_blocks = sum(1 for info in layers if info.kind == "tokens")
        settings["block"] = st.sidebar.number_input("Block", 0, max(n_blocks - 1, 0), max(n_blocks - 1, 0), key="block")
    names_k = model.card.class_names or [f"class {i}" for i in range(len(probabilities))]
    options = list(range(len(names_k)))
    predicted = int(max(options, key=lambda k: probabilities[k])) if probabilities is not None else 0
    if model.card.task == "segmentation" and predicted == 0 and len(options) > 1:
        predicted = 1
    label = (lambda k: f"{names_k[k]} ({probabilities[k]:.0%})") if probabilities is not None else names_k.__getitem__
    if st.session_state.get("target") not in options:
        st.session_state["target"] = predicted
    settings["target"] = st.sidebar.selectbox("Target class", options, format_func=label, key="target")
    return settings


# ----------------------------------------------------------------------------- computation
def audit(result, volume: Volume, model, method: str, layers: list[str], target) -> None:
    """One JSONL line per engine computation: hashes, choices, scores, timings; no patient fields."""
    from explain.report import append_audit

    summary = result.summary()
    append_audit(
        STATE_DIR / "audit.jsonl",
        {
            "event": "compute",
            "camviewer_version": __version__,
            "volume_name": volume.source,
            "volume_hash": volume.content_hash,
            "model_name": model.source,
            "model_hash": model.content_hash,
            "method": method,
            "layers": layers,
            "target": target,
            "probabilities": summary["probabilities"],
            "predicted": summary["predicted"],
            "timings_s": summary["timings_s"],
            "device": summary["device"],
        },
    )


def compute(model, volume: Volume, settings: dict, layers: list[str] | None = None, target="single"):
    """Cached by content; one engine pass on a cache miss, serialised on the device."""
    from explain.cache import cache_key, device_lock
    from explain.engine import explain

    layers = layers or [settings["layer"]]
    wanted = settings["target"] if target == "single" else target
    key = cache_key(
        volume.content_hash,
        model.content_hash,
        settings["method"],
        layers,
        wanted,
        block=settings.get("block"),
        head=settings.get("head"),
    )
    cache = cam_cache()
    found = cache.get(key)
    if found is not None:
        return found, True
    lock = device_lock()
    if not lock.acquire(blocking=False):
        with st.status("Waiting for the device (another computation is running)…"):
            lock.acquire()
    try:
        result = explain(
            model, volume, settings["method"], layers, wanted, block=settings.get("block"), head=settings.get("head")
        )
        engine_stats()["engine_calls"] += 1
    finally:
        lock.release()
    audit(result, volume, model, settings["method"], layers, wanted)
    cache.put(key, result)
    return result, False


@st.cache_resource(show_spinner=False, max_entries=16)
def probabilities_for(volume_hash: str, model_hash: str, _model, _volume: Volume):
    """Class probabilities for the target list: one forward pass, no gradients, cached by content."""
    from explain.engine import classify

    del volume_hash, model_hash
    return classify(_model, _volume)[1]


# ----------------------------------------------------------------------------- page
def main() -> None:
    st.session_state.setdefault("errors", [])
    st.session_state["errors"] = []
    st.title("camviewer")
    st.caption("Where did the model look? Grad-CAM family and ViT attention on 3D volumes.")
    volume = choose_volume()
    model = choose_model()
    for message in st.session_state["errors"]:
        st.error(message)
    if volume is None or model is None:
        show_previous()
        return
    for warning in volume.warnings:
        st.warning(warning)
    try:
        probabilities = probabilities_for(volume.content_hash, model.content_hash, model, volume)
        settings = choose_settings(model, probabilities)
        result, cached = compute(model, volume, settings)
    except InputError as e:
        st.error(f"{PLAIN_ERRORS['compute']}: {e}")
        show_previous()
        return
    st.session_state["previous"] = (volume, model, settings, result)
    show_result(volume, model, settings, result, cached)


def show_previous() -> None:
    if "previous" in st.session_state:
        st.info("Showing the last successful result.")
        show_result(*st.session_state["previous"], cached=True)


def show_result(volume: Volume, model, settings: dict, result, cached: bool) -> None:
    from explain.report import report
    from viewer.component import slice_view, view_payload
    from viewer.figures import cam_3d, montage, probability_bars, views_png

    cam = result.get(target=settings["target"])
    display = display_copy(volume.content_hash, volume)
    cam_ras, overlay, peak = display_cam(
        volume.content_hash, model.content_hash, cam.method, cam.layer, cam.target, cam.cam, volume.affine
    )
    timing = result.timings.get("total", 0.0)
    left, right = st.columns([3, 1])
    with right:
        st.subheader("Prediction")
        st.plotly_chart(probability_bars(result.class_names, result.probabilities, cam.target), key="probs")
        st.metric("Compute", "cached" if cached else f"{timing:.2f} s")
        st.caption(
            f"{METHOD_LABELS[cam.method]} · layer `{cam.layer}` · target {cam.target_name} · "
            f"model grid {'x'.join(map(str, result.model_grid))} · {result.device}"
        )
        for note in result.warnings + cam.warnings:
            st.warning(note)
    with left:
        compare = compare_maps(volume, model, settings)
        payload = view_payload(
            display["published"],
            display["affine_ras"],
            volume.affine,
            display["spacing"],
            window=display["window"],
            version=volume.content_hash,
            overlay=overlay,
            raw_peak=cam.raw_peak,
            overlay_label=f"{METHOD_LABELS[cam.method]} · {cam.layer} · {cam.target_name}",
            crosshair=peak,
            compare=compare,
        )
        view_state = slice_view(payload, key="slices")
    # The component reports the crosshair on pointer release only; before that, the map's peak.
    clicked = view_state.get("crosshair") if hasattr(view_state, "get") else getattr(view_state, "crosshair", None)
    crosshair = list(clicked) if clicked else peak
    window = (display["window"]["width"], display["window"]["level"])
    with st.expander("Layer montage (current axial slice, every block-level layer, one engine pass)"):
        if st.button("Compute montage", key="montage_btn"):
            from explain.engine import model_layers

            layers, _ = model_layers(model)
            depth = cam.layer.count(".")
            candidates = [i.name for i in layers if i.kind in ("grid", "tokens") and i.name.count(".") == depth][:12]
            if settings["method"] in ("vit-attention", "vit-rollout"):
                st.info("The montage compares layers of gradient methods; pick Grad-CAM to use it.")
            else:
                multi, _ = compute(model, volume, settings, layers=candidates)
                maps = [(r.layer, to_ras(r.cam, volume.affine)[0]) for r in multi.results]
                st.plotly_chart(montage(display["data_ras"], maps, "axial", crosshair[2], window), key="montage")
    with st.expander("3D view: CAM above threshold inside the head outline"):
        level = st.slider("3D threshold", 0.1, 0.95, 0.5, 0.05, key="iso_threshold")
        st.plotly_chart(cam_3d(display["data_ras"], cam_ras, display["spacing"], threshold=level), key="cam3d")
    st.subheader("Export")
    c1, c2, c3 = st.columns(3)
    stem = f"cam_{cam.method}_{cam.layer.replace('.', '-')}_{cam.target}"
    # Files are built only when clicked (deferred data): a full-resolution NIfTI is tens of MB.
    c1.download_button(
        "CAM as NIfTI (input space)",
        lambda: nifti_bytes(cam.cam, volume.affine),
        f"{stem}.nii.gz",
        mime="application/gzip",
        key="dl_nifti",
    )
    c2.download_button(
        "PNG of the three planes",
        lambda: views_png(
            display["data_ras"], cam_ras, crosshair, display["spacing"], window, title=payload["overlay_label"]
        ),
        f"{stem}.png",
        mime="image/png",
        key="dl_png",
    )
    record = report(
        result.summary(),
        volume_name=volume.source,
        model_name=model.source,
        method=cam.method,
        layer=cam.layer,
        target=cam.target,
        target_name=cam.target_name,
    )
    c3.download_button(
        "JSON report", json.dumps(record, indent=2), f"{stem}.json", mime="application/json", key="dl_json"
    )
    st.caption(f"camviewer {__version__} · engine calls this server: {engine_stats()['engine_calls']}")


def compare_maps(volume: Volume, model, settings: dict) -> list:
    """Up to four other (method, layer, target) maps from this session, shown side by side."""
    history = st.session_state.setdefault("history", [])
    entry = (settings["method"], settings["layer"], settings["target"], settings.get("block"))
    if entry not in history:
        history.append(entry)
    del history[:-8]
    others = [h for h in history if h != entry]
    labels = {h: f"{METHOD_LABELS[h[0]]} · {h[1]} · class {h[2]}" for h in others}
    picked = st.multiselect(
        "Compare with earlier maps (same slice, same colour scale)",
        others,
        format_func=labels.get,
        max_selections=3,
        key="compare_pick",
    )
    out = []
    for method, layer, target, block in picked:
        other = {**settings, "method": method, "layer": layer, "target": target, "block": block}
        try:
            result, _ = compute(model, volume, other)
        except InputError as e:
            st.warning(f"{labels[(method, layer, target, block)]}: {e}")
            continue
        r = result.get(target=target)
        _, published, _ = display_cam(
            volume.content_hash, model.content_hash, method, r.layer, target, r.cam, volume.affine
        )
        out.append((labels[(method, layer, target, block)], published))
    return out


main()
