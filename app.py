"""camviewer: where did a medical-imaging model look? (Streamlit entry: widgets and layout only.)

streamlit run app.py        # or: make app

Every decision (defaults, valid choices, keys) is made in `explain/`; every picture
in `viewer/`. The page keeps one small typed state object (`Page`) of hashes and
choices; volumes, models and maps live in server-side stores keyed by content.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from explain import __version__
from explain.errors import InputError
from explain.policy import Choices
from viewer.text import plain

ROOT = Path(__file__).resolve().parent
SAMPLE_CASE = ROOT / "sample_data" / "case_brain" / "t1_lesions.nii.gz"
SAMPLE_MODELS = {
    "Sample 3D CNN (lesion classifier)": ROOT / "sample_data" / "models" / "cnn.pt2",
    "Sample 3D ViT (lesion classifier)": ROOT / "sample_data" / "models" / "vit.pt2",
    "Sample 3D UNet (lesion segmentation)": ROOT / "sample_data" / "models" / "unet.pt2",
}
STATE_DIR = Path(os.environ.get("CAMVIEWER_STATE_DIR", ROOT / ".cache"))
CASE_DIR = os.environ.get("CAMVIEWER_CASE_DIR", "")
BATCH_DIR = os.environ.get("CAMVIEWER_BATCH_DIR", "")  # cohort runs (python -m explain batch) to open as worklists
STAGES = {
    "preprocess": "preparing the input",
    "forward": "forward pass",
    "gradients": "gradients",
    "mapping": "mapping",
}
LOG = logging.getLogger("camviewer")


@dataclass
class Page:
    """The page's state: content hashes and choices only (never arrays, models or results)."""

    volume: str | None = None  # content hash of the image on screen
    model: str | None = None  # identity (file + effective card) of the model on screen
    choices: Choices = field(default_factory=Choices)
    shown: str | None = None  # request key of the map on screen
    history: list[tuple[str, str]] = field(default_factory=list)  # (request key, title) for comparison


# ----------------------------------------------------------------------------- server-side stores
@st.cache_resource(show_spinner=False)
def stores() -> dict:
    from explain.cache import CamCache, ObjectStore
    from explain.limits import max_bytes

    return {
        "cams": CamCache(STATE_DIR / "cams", max_disk_bytes=int(os.environ.get("CAMVIEWER_CACHE_BYTES", 2 * 1024**3))),
        "volumes": ObjectStore(8, 2 * max_bytes(), lambda v: v.data.nbytes),
        "models": ObjectStore(16, max_bytes(), lambda m: sum(p.numel() * 4 for p in m.module.parameters())),
        "requests": ObjectStore(256, 1 << 20, lambda _r: 1),
        "sanity": ObjectStore(256, 1 << 20, lambda _r: 1),
        "stats": {"engine_calls": 0},
    }


@st.cache_resource(show_spinner=False, max_entries=4)
def volume_from_path(path: str, stamp: str, index: int | None):
    from explain.volumes import load_volume

    del stamp  # part of the key only: same path, new content -> reload
    return _keep(load_volume(path, volume_index=index))


def _keep(volume):
    stores()["volumes"].put(volume.content_hash, volume)
    return volume


@st.cache_resource(show_spinner=False, max_entries=4)
def volume_from_upload(digest: str, index: int | None, name: str, _raw: bytes):
    from explain.volumes import load_volume_bytes

    del digest  # the key; Streamlit never hashes the bytes themselves
    return _keep(load_volume_bytes(_raw, name, volume_index=index))


@st.cache_resource(show_spinner=False, max_entries=8)
def model_file(digest: str, arch: str | None, kwargs_json: str, name: str, _data):
    from explain.models import read_model_file

    del digest
    return read_model_file(_data, name, arch=arch, arch_kwargs=json.loads(kwargs_json) if arch else None)


@st.cache_resource(show_spinner=False, max_entries=32)
def prediction(volume_hash: str, model_identity: str, _model, _volume):
    """Class scores for the target list: one forward pass without gradients, keyed by content and identity."""
    from explain.engine import classify

    del volume_hash, model_identity
    return classify(_model, _volume)[1]


def digest(raw: bytes) -> str:
    import hashlib

    return hashlib.blake2b(raw, digest_size=16).hexdigest()


# ----------------------------------------------------------------------------- sidebar: inputs
def choose_volume(errors: list[str]):
    from explain.volumes import safe_name

    st.sidebar.header("1 · Image")
    sources = ["Sample brain MRI", "Upload an image"] + (["Case folder"] if CASE_DIR else [])
    sources += ["Worklist (cohort run)"] if BATCH_DIR else []
    source = st.sidebar.radio("Source", sources, key="volume_source")
    try:
        if source == "Sample brain MRI":
            return volume_from_path(str(SAMPLE_CASE), str(SAMPLE_CASE.stat().st_mtime), None)
        if source.startswith("Worklist"):
            return None  # main() opens cases from the worklist instead
        if source == "Case folder":
            cases = sorted(p for p in Path(CASE_DIR).iterdir() if not p.name.startswith("."))
            pick = st.sidebar.selectbox("Case", cases, format_func=lambda p: p.name, key="case_pick")
            if pick is None:
                return None
            stamp = f"{pick}:{pick.stat().st_mtime}"
            return volume_choice(volume_from_path(str(pick), stamp, chosen_index(stamp)), stamp)
        upload = st.sidebar.file_uploader(
            "NIfTI, NRRD, MGH, DICOM (file or .zip series), PNG/JPEG", key="volume_upload"
        )
        if upload is None:
            st.sidebar.info("Upload an image to begin.")
            return None
        raw = upload.getvalue()
        key = digest(raw)
        return volume_choice(volume_from_upload(key, chosen_index(key), safe_name(upload.name), raw), key)
    except InputError as e:
        errors.append(f"This image could not be opened: {plain(e)}")
    return None


def chosen_index(file_key: str) -> int | None:
    """The 'Volume in file' choice, if it was made for this very file (a new file starts at its first volume)."""
    if st.session_state.get("volume_index_for") != file_key:
        return None
    return st.session_state.get("volume_index")


def volume_choice(volume, file_key: str):
    """Offer 'Volume in file' for a 4D file: the control its warning names."""
    if volume.n_volumes > 1:
        st.session_state["volume_index_for"] = file_key
        st.sidebar.number_input(
            f"Volume in file (0 to {volume.n_volumes - 1})", 0, volume.n_volumes - 1, key="volume_index"
        )
    return volume


def preprocessing_form(has_card: bool, program_shape: tuple | None) -> tuple[dict, dict | None]:
    """Card fields for a model that lacks them; or, ticked on purpose, overrides of its own card."""
    title = "Preprocessing (fills what the model's card lacks)"
    with st.sidebar.expander(title, expanded=not has_card):
        intensity = st.selectbox(
            "Intensity", ["MR percentile 0.5-99.5", "CT soft tissue", "z-score", "none"], key="pre_intensity"
        )
        if program_shape is None:
            shape = st.text_input("Model input shape (C, D, H, W) or (C, H, W)", "1, 96, 96, 96", key="pre_shape")
        else:  # a .pt2 states its own input shape; the form cannot change a fact about the program
            shape = ", ".join(map(str, program_shape))
            st.caption(f"Input shape, from the program: ({shape})")
        task = st.selectbox("Task", ["classification", "segmentation"], key="pre_task")
        override = has_card and st.checkbox("Override the model's own card with these values", key="pre_override")
    spec = {
        "MR percentile 0.5-99.5": {"kind": "percentile", "lower": 0.5, "upper": 99.5},
        "CT soft tissue": {"kind": "ct_window", "level": 40, "width": 400},
        "z-score": {"kind": "zscore"},
        "none": {"kind": "none"},
    }[intensity]
    card: dict = {"task": task, "intensity": spec}
    parts = [s.strip() for s in shape.replace("x", ",").split(",") if s.strip()]
    if not all(p.isdigit() and len(p) < 6 for p in parts):
        raise InputError(f"the input shape {plain(shape[:40])} must be whole numbers, like 1, 96, 96, 96")
    if program_shape is None:
        card["input_shape"] = [int(p) for p in parts]
    if len(parts) == 4:
        card["orientation"] = "RAS"
    return card, (card if override else None)


def choose_model(errors: list[str]):
    from explain.models import apply_card
    from explain.volumes import safe_name

    st.sidebar.header("2 · Model")
    options = [*SAMPLE_MODELS, "Upload .pt2", "Upload weights + MONAI network"]
    source = st.sidebar.radio("Source", options, key="model_source")
    try:
        if source in SAMPLE_MODELS:
            path = SAMPLE_MODELS[source]
            loaded = apply_card(model_file(f"{path}:{path.stat().st_mtime}", None, "{}", path.name, str(path)))
        else:
            upload = st.sidebar.file_uploader("Model file", key="model_upload")
            arch, kwargs = None, "{}"
            if source.startswith("Upload weights"):
                arch = st.sidebar.text_input("MONAI network", "DenseNet121", key="arch")
                kwargs = st.sidebar.text_input(
                    "Arguments (JSON)", '{"spatial_dims": 3, "in_channels": 1, "out_channels": 2}', key="arch_kwargs"
                )
                try:
                    kwargs = json.dumps(json.loads(kwargs[:10_000]), sort_keys=True)
                except (ValueError, RecursionError) as e:
                    raise InputError(f"the network arguments are not valid JSON ({type(e).__name__})") from e
            if upload is None:
                st.sidebar.info("Upload a model file.")
                preprocessing_form(False, None)
                return None
            raw = upload.getvalue()
            mf = model_file(digest(raw), arch, kwargs, safe_name(upload.name, "model"), raw)
            defaults, overrides = preprocessing_form(mf.card is not None, mf.input_shape)
            loaded = apply_card(mf, defaults, overrides)
        describe_model(loaded)
        stores()["models"].put(loaded.identity, loaded)
        return loaded
    except InputError as e:
        errors.append(f"This model could not be used: {plain(e)}")
    return None


def describe_model(model) -> None:
    card = model.card
    if card.name or card.description:
        st.sidebar.caption(plain(f"{card.name}: {card.description}".strip(": ")))
    st.sidebar.caption(plain(f"Model card: {model.card_origin}; task {card.task}"))
    if model.filled:
        st.sidebar.caption(plain(f"The model's card lacks {', '.join(model.filled)}; the form fills them in."))
    if model.overridden:
        values = ", ".join(f"{k} = {json.dumps(card.to_dict()[k])}" for k in model.overridden)
        st.sidebar.warning(plain(f"Overriding the model's own card on purpose: {values}"))


def open_from_worklist(errors: list[str]):
    """A cohort run's table; the row picked opens its case and model, and sets its method, layer and class once."""
    from explain.models import apply_card
    from explain.worklist import NUMERIC, WORKLIST_COLUMNS, batch_model, list_batches, worklist
    from viewer.panels import worklist_panel

    runs = list_batches(BATCH_DIR)
    if not runs:
        st.info("No cohort runs (folders with results.csv) in the worklist folder yet.")
        return None
    run_folder = st.sidebar.selectbox("Cohort run", runs, format_func=lambda p: p.name, key="batch_pick")
    sort_by = st.sidebar.selectbox("Sort by", WORKLIST_COLUMNS, key="worklist_sort")
    descending = st.sidebar.toggle("Descending", key="worklist_desc")
    rows = worklist(run_folder, sort_by, descending)
    ids = [f"{r['case']}|{r['method']}|{r['layer']}|{r['target']}" for r in rows]
    st.subheader(plain(f"Worklist: {run_folder.name}"))
    picked = worklist_panel(rows, ids, WORKLIST_COLUMNS, NUMERIC)
    if picked is None:
        return None
    row = rows[ids.index(picked)]
    if row["status"] != "ok":
        errors.append(f"This case failed in the cohort run: {plain(row['error'])}")
        return None
    try:
        path = Path(row["path"])
        volume = volume_from_path(str(path), f"{path}:{path.stat().st_mtime}", None)
        spec = batch_model(run_folder)
        options = spec.get("options", {})
        model_path = Path(spec["path"])
        kwargs = json.dumps(options.get("arch_kwargs") or {}, sort_keys=True)
        mf = model_file(f"{model_path}:{model_path.stat().st_mtime}", options.get("arch"), kwargs, model_path.name,
                        str(model_path))  # fmt: skip
        model = apply_card(mf, overrides=options.get("card"))
    except (InputError, OSError) as e:
        errors.append(f"This case could not be opened: {plain(e)}")
        return None
    if st.session_state.get("worklist_opened") != picked:  # a newly opened row sets the choices, once
        st.session_state["worklist_opened"] = picked
        st.session_state.update(w_method=row["method"], w_layer=row["layer"], w_target=row["target_name"])
    st.sidebar.caption(plain(f"Model of the run: {model.source}"))
    stores()["models"].put(model.identity, model)
    return volume, model


def choose_mask(volume, errors: list[str]):
    """An optional mask on the image's grid, for localisation scores (the sample's own lesion mask is offered)."""
    from explain.volumes import safe_name

    st.sidebar.header("4 · Mask (optional)")
    try:
        if st.session_state.get("volume_source") == "Sample brain MRI":
            if st.sidebar.checkbox("The sample's lesion mask", key="sample_mask"):
                path = SAMPLE_CASE.with_name("lesion_mask.nii.gz")
                return volume_from_path(str(path), str(path.stat().st_mtime), None).data
            return None
        upload = st.sidebar.file_uploader("A mask on the same grid as the image", key="mask_upload")
        if upload is None:
            return None
        raw = upload.getvalue()
        mask = volume_from_upload(digest(raw), None, safe_name(upload.name, "mask"), raw)
        if mask.shape != volume.shape:
            raise InputError(f"the mask's grid {mask.shape} is not the image's grid {volume.shape}")
        return mask.data
    except InputError as e:
        errors.append(f"This mask could not be used: {plain(e)}")
    return None


# ----------------------------------------------------------------------------- sidebar: choices
def choose_settings(page: Page, model, probabilities) -> tuple[Choices, list[str]]:
    """Widgets show `page.choices`, made valid for this model; a change the user did not make is explained."""
    from explain.layers import model_layers
    from explain.policy import (
        attention_blocks,
        class_names,
        gradient_layers,
        is_attention,
        method_label,
        reconcile,
        target_label,
        valid_methods,
    )

    layers, _ = model_layers(model)
    names = class_names(model, len(probabilities))
    asked = Choices(
        method=st.session_state.get("w_method", page.choices.method),
        layer=st.session_state.get("w_layer", page.choices.layer),
        target_name=st.session_state.get("w_target", page.choices.target_name),
        block=st.session_state.get("w_block", page.choices.block),
        head=page.choices.head,
    )
    choices, notes = reconcile(asked, model, layers, names, probabilities)
    for key, value in (("w_method", choices.method), ("w_layer", choices.layer), ("w_target", choices.target_name)):
        st.session_state[key] = value
    st.sidebar.header("3 · Explanation")
    st.sidebar.selectbox("Method", valid_methods(model), format_func=method_label, key="w_method")
    if not is_attention(choices.method):
        shapes = {info.name: "x".join(map(str, info.shape)) for info in layers}
        st.sidebar.selectbox(
            "Layer", gradient_layers(layers), format_func=lambda n: f"{n}  [{shapes[n]}]", key="w_layer"
        )
    elif choices.method == "vit-attention":
        st.session_state["w_block"] = choices.block
        st.sidebar.number_input("Block", 0, max(attention_blocks(layers) - 1, 0), key="w_block")
    values = dict(zip(names, probabilities))
    st.sidebar.selectbox("Target class", names, format_func=lambda n: target_label(n, values[n], model), key="w_target")
    return choices, notes


# ----------------------------------------------------------------------------- computation
def run(page: Page, model, volume, choices: Choices):
    """The request for these choices, and its explanation (cached by request key)."""
    from explain.policy import class_names, is_attention
    from explain.report import append_audit, record
    from explain.request import compute, make_request

    probabilities = prediction(volume.content_hash, model.identity, model, volume)
    target = class_names(model, len(probabilities)).index(choices.target_name)
    layers = None if is_attention(choices.method) else [choices.layer]
    request = make_request(model, volume, choices.method, layers, target, block=choices.block, head=choices.head)
    status = st.empty()
    result, cached = compute(
        request,
        model,
        volume,
        cache=stores()["cams"],
        progress=lambda stage: status.caption(f"Computing the map: {STAGES.get(stage, stage)}…"),
        on_wait=lambda: status.info("Waiting for the device: another computation is running…"),
    )
    status.empty()
    if not cached:
        stores()["stats"]["engine_calls"] += 1
        append_audit(STATE_DIR / "audit.jsonl", record(request, result, request.layers[0] if layers else "", target))
    stores()["requests"].put(request.key(), (request, result))
    return request, result, cached


# ----------------------------------------------------------------------------- page
def main() -> None:
    st.set_page_config(page_title="camviewer", layout="wide")
    page = st.session_state.setdefault("page", Page())
    st.title("camviewer")
    st.caption("Where did the model look? Grad-CAM family and ViT attention on 3D volumes and 2D images.")
    errors: list[str] = []
    volume, model = choose_volume(errors), None
    if st.session_state.get("volume_source", "").startswith("Worklist"):
        volume, model = open_from_worklist(errors) or (None, None)
    else:
        model = choose_model(errors)
    mask = choose_mask(volume, errors) if volume is not None else None
    for message in errors:
        st.error(message)
    if volume is None or model is None:
        show_last(page)
        return
    for warning in volume.warnings:
        st.warning(plain(warning))
    try:
        from explain.policy import check_fit

        check_fit(model, volume.ndim, volume.source)
        probabilities = prediction(volume.content_hash, model.identity, model, volume)
        choices, notes = choose_settings(page, model, probabilities)
        for note in notes:
            st.info(plain(note))
        request, result, cached = run(page, model, volume, choices)
    except InputError as e:
        st.error(f"The map could not be computed: {plain(e)}")
        show_last(page)
        return
    page.volume, page.model, page.choices, page.shown = volume.content_hash, model.identity, choices, request.key()
    show(page, volume, model, request, result, cached)
    checks(model, volume, request, result, mask)


def checks(model, volume, request, result, mask) -> None:
    """Localisation against a mask, and the sanity check, for the map on screen (built only when asked for)."""
    from explain.localisation import localise, target_mask
    from explain.policy import is_attention
    from viewer.panels import localisation_panel, sanity_panel

    target = request.targets[0] if isinstance(request.targets, tuple) else result.predicted
    cam = result.get(None if is_attention(request.method) else request.layers[0], target)
    st.subheader("Checks")
    if mask is not None:
        localisation_panel(localise(cam.cam, target_mask(mask, target), 0.5).to_dict())
    found = stores()["sanity"].get(request.key())
    if found is None and st.button("Run the sanity check: randomise the model block by block, from the top",
                                   key="sanity_run"):  # fmt: skip
        from explain.sanity import cascade

        with st.spinner("Randomising blocks and recomputing the map…"):
            layer = None if is_attention(request.method) else request.layers[0]
            found = stores()["sanity"].put(
                request.key(), cascade(model, volume, request.method, layer, target, block=request.block).to_dict()
            )
    if found is not None:
        sanity_panel(found)


def show_last(page: Page) -> None:
    """The last good result, looked up by its keys; said to be the previous one."""
    found = stores()["requests"].get(page.shown)
    volume, model = stores()["volumes"].get(page.volume), stores()["models"].get(page.model)
    if found is None or volume is None or model is None:
        return
    st.info("Showing the last successful result.")
    show(page, volume, model, *found, cached=True)


def show(page: Page, volume, model, request, result, cached: bool) -> None:
    """The viewer, the prediction and the exports, all derived from the request actually shown."""
    from explain.policy import is_attention, method_label, score_word
    from explain.volumes import nifti_bytes
    from viewer.figures import probability_bars

    target = request.targets[0] if isinstance(request.targets, tuple) else result.predicted
    cam = result.get(None if is_attention(request.method) else request.layers[0], target)
    title = f"{method_label(cam.method)} · {cam.layer} · {cam.target_name}"
    remember(page, request, title)
    left, right = st.columns([3, 1])
    with right:
        st.subheader("Prediction")
        st.plotly_chart(probability_bars(result.class_names, result.probabilities, cam.target, score_word(model)))
        st.metric("Compute", "cached" if cached else f"{result.timings.get('total', 0.0):.2f} s")
        st.caption(plain(f"{title} · model grid {'x'.join(map(str, result.model_grid))} · {result.device}"))
        for note in result.warnings + cam.warnings:
            st.warning(plain(note))
    with left:
        st.markdown(f"**{plain(title)}**", help="method · layer · target class, as computed")
        viewer_panel(page, volume, model, request, cam, title)
    st.subheader("Export")
    c1, c2 = st.columns(2)
    stem = f"cam_{cam.method}_{cam.layer.replace('.', '-')}_{cam.target}"
    # Built only when clicked (deferred data): a full-resolution NIfTI is tens of MB.
    c1.download_button(
        "Map as NIfTI (the input's grid and affine)",
        lambda: nifti_bytes(cam.cam, volume.affine),
        f"{stem}.nii.gz",
        mime="application/gzip",
        key="dl_nifti",
    )
    c2.download_button(
        "JSON report",
        lambda: json.dumps(report_for(volume, model, request, result, cam), indent=2),
        f"{stem}.json",
        mime="application/json",
        key="dl_json",
    )
    st.caption(f"camviewer {__version__} · engine calls this server: {stores()['stats']['engine_calls']}")


def report_for(volume, model, request, result, cam) -> dict:
    from explain.report import report

    return report(
        request,
        result,
        cam.layer if request.layers else "",
        cam.target,
        volume_name=volume.source,
        model_name=model.source,
        model_card=model.card.to_dict(),
    )


def remember(page: Page, request, title: str) -> None:
    """Keep the last few maps of this session for side-by-side comparison (keys and titles only)."""
    entry = (request.key(), title)
    page.history = [h for h in page.history if h[0] != entry[0]][-7:] + [entry]


def viewer_panel(page: Page, volume, model, request, cam, title: str) -> None:
    """The slice viewer with the map and any chosen comparison maps."""
    from explain.volumes import to_ras
    from viewer.component import slice_view, view_payload
    from viewer.display import peak_voxel, publish_anatomy, publish_cam, spacing_of
    from viewer.windowing import auto_window, default_window

    if volume.ndim != 3:
        st.info("2D images are shown by the new viewer; this build shows 3D volumes only.")
        return
    data_ras, affine_ras = to_ras(volume.data, volume.affine)
    preset, width, level = default_window(data_ras)
    auto_width, auto_level = auto_window(data_ras)
    anatomy = publish_anatomy(data_ras, volume.content_hash, ROOT / "static")

    def published(c, key):
        cam_ras, _ = to_ras(c.cam, volume.affine)
        return publish_cam(cam_ras, key, ROOT / "static"), peak_voxel(cam_ras)

    overlay, peak = published(cam, request.key())
    others = [h for h in page.history if h[0] != request.key()]
    picked = st.multiselect(
        "Compare with earlier maps (same slice, same colour scale)",
        others,
        format_func=lambda h: h[1],
        max_selections=3,
        key="compare_pick",
    )
    compare = []
    for key, other_title in picked:
        found = stores()["requests"].get(key)
        if found is not None and found[0].volume == volume.content_hash:
            other_request, other_result = found
            target = other_request.targets[0] if isinstance(other_request.targets, tuple) else other_result.predicted
            other = other_result.get(other_request.layers[0] if other_request.layers else None, target)
            compare.append((other_title, published(other, key)[0]))
    payload = view_payload(
        anatomy,
        affine_ras,
        volume.affine,
        spacing_of(affine_ras),
        window={"preset": preset, "width": width, "level": level, "auto_width": auto_width, "auto_level": auto_level},
        version=volume.content_hash,
        overlay=overlay,
        raw_peak=cam.raw_peak,
        overlay_label=title,
        crosshair=peak,
        compare=compare,
    )
    slice_view(payload, key="slices")


def run_page() -> None:
    """Every failure ends in one sentence on the page; the details go to the server log only."""
    try:
        main()
    except Exception:  # noqa: BLE001 - the last line of defence: no traceback reaches the page
        ref = uuid.uuid4().hex[:8]
        LOG.exception("camviewer page failed (reference %s)", ref)
        st.error(f"Something went wrong on our side (reference {ref}); the details are in the server log.")
        show_last(st.session_state.setdefault("page", Page()))


if __name__ == "__main__":
    run_page()
else:  # `streamlit run app.py` serves this file as an ASGI app, so we can set our own response headers.
    from starlette.middleware import Middleware

    from viewer.headers import StaticHeaders

    app = st.App(__file__, middleware=[Middleware(StaticHeaders)])
