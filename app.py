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
from explain.policy import Choices, remember
from explain.request import chosen
from explain.samples import SAMPLE_CASES, SAMPLE_MODELS
from viewer.publish import digest
from viewer.text import plain

ROOT = Path(__file__).resolve().parent
STATE_DIR = Path(os.environ.get("CAMVIEWER_STATE_DIR", ROOT / ".cache"))
STATIC = ROOT / "static"  # served at app/static/ (server.enableStaticServing)
CASE_DIR = os.environ.get("CAMVIEWER_CASE_DIR", "")
MODEL_DIR = os.environ.get("CAMVIEWER_MODEL_DIR", "")  # model folders and bundles offered by name (nnU-Net, MONAI)
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
    from explain.cache import page_stores
    from explain.limits import max_bytes

    return page_stores(STATE_DIR, int(os.environ.get("CAMVIEWER_CACHE_BYTES", 2 * 1024**3)), max_bytes())


@st.cache_resource(show_spinner=False, max_entries=4)
def volume_from_path(path: str, stamp: str, index: int | None):
    from explain.io.load import load_volume

    del stamp  # part of the key only: same path, new content -> reload
    return _keep(load_volume(path, volume_index=index), path)


def _keep(volume, source: str | bytes | None = None):
    stores()["volumes"].put(volume.content_hash, volume)
    if source is not None:  # the file as given, so the viewer can fetch it unchanged (see anatomy())
        stores()["sources"].put(volume.content_hash, source)
    return volume


@st.cache_resource(show_spinner=False, max_entries=4)
def volume_from_upload(digest: str, index: int | None, name: str, _raw: bytes):
    from explain.io.load import load_volume_bytes

    del digest  # the key; Streamlit never hashes the bytes themselves
    return _keep(load_volume_bytes(_raw, name, volume_index=index), _raw)


@st.cache_resource(show_spinner=False, max_entries=4)
def case_from_uploads(digests: tuple[str, ...], names: tuple[str, ...], _raws: tuple[bytes, ...]):
    """Several uploaded files of one case: its channels, in nnU-Net's _0000 order when every name has one."""
    from explain.io.load import channel_order, load_volume_bytes
    from explain.io.volume import make_channels

    order = channel_order(list(names))
    volumes = [load_volume_bytes(_raws[i], names[i]) for i in order]
    return _keep(make_channels(volumes))


@st.cache_resource(show_spinner=False, max_entries=8)
def model_file(digest: str, arch: str | None, kwargs_json: str, name: str, _data):
    from explain.models.load import read_model_file

    del digest
    return read_model_file(_data, name, arch=arch, arch_kwargs=json.loads(kwargs_json) if arch else None)


@st.cache_resource(show_spinner=False, max_entries=8)
def predicted_labels(volume_hash: str, model_identity: str, _model, _volume):
    """The model's own segmentation on the image's grid (for the overlay), once per image and model."""
    import numpy as np

    from explain.predict import predict_case

    del volume_hash, model_identity
    outcome = predict_case(_model, _volume, mirroring=False)
    labels = outcome.labels
    if outcome.output == "sigmoid":  # overlapping outputs: each voxel shows the last output that claims it
        labels = np.max(labels * np.arange(1, labels.shape[0] + 1).reshape(-1, *(1,) * (labels.ndim - 1)), axis=0)
        names = dict(enumerate(outcome.class_names, 1))
    else:
        names = {k: n for k, n in enumerate(outcome.class_names) if k > 0}
    return labels.astype(np.uint8), names


@st.cache_resource(show_spinner=False, max_entries=32)
def prediction(volume_hash: str, model_identity: str, _model, _volume):
    """Class scores for the target list: one forward pass without gradients, keyed by content and identity."""
    from explain.cam.engine import classify

    del volume_hash, model_identity
    return classify(_model, _volume)[1]


# ----------------------------------------------------------------------------- sidebar: inputs
def choose_volume(errors: list[str]):
    from explain.io.volume import safe_name

    st.sidebar.header("1 · Image")
    sources = [*SAMPLE_CASES, "Upload an image"] + (["Case folder"] if CASE_DIR else [])
    sources += ["Worklist (cohort run)"] if BATCH_DIR else []
    source = st.sidebar.radio("Source", sources, key="volume_source", on_change=match_sample_model)
    try:
        if source in SAMPLE_CASES:
            path = SAMPLE_CASES[source].image
            return volume_from_path(str(path), str(path.stat().st_mtime), None)
        if source.startswith("Worklist"):
            return None  # main() opens cases from the worklist instead
        if source == "Case folder":
            cases = sorted(p for p in Path(CASE_DIR).iterdir() if not p.name.startswith("."))
            pick = st.sidebar.selectbox("Case", cases, format_func=lambda p: p.name, key="case_pick")
            if pick is None:
                return None
            stamp = f"{pick}:{pick.stat().st_mtime}"
            return volume_choice(volume_from_path(str(pick), stamp, chosen_index(stamp)), stamp)
        uploads = st.sidebar.file_uploader(
            "NIfTI, NRRD, MGH, DICOM (file or .zip series), PNG/JPEG; several files: the channels of one case",
            key="volume_upload", accept_multiple_files=True,
        )  # fmt: skip
        if not uploads:
            st.sidebar.info("Upload an image to begin.")
            return None
        raws = tuple(u.getvalue() for u in uploads)
        if len(raws) > 1:
            names = tuple(safe_name(u.name) for u in uploads)
            return case_from_uploads(tuple(digest(r) for r in raws), names, raws)
        key = digest(raws[0])
        return volume_choice(volume_from_upload(key, chosen_index(key), safe_name(uploads[0].name), raws[0]), key)
    except InputError as e:
        errors.append(f"This image could not be opened: {plain(e)}")
    return None


def match_sample_model() -> None:
    """Opening a sample case with a bundled model of the other dimension switches to the case's own model."""
    from explain.samples import sample_model_for

    switch = sample_model_for(st.session_state.get("volume_source"), st.session_state.get("model_source"))
    if switch is not None:
        st.session_state["model_source"] = switch


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
    from explain.models.cards import FORM_INTENSITIES, form_card

    with st.sidebar.expander("Preprocessing (fills what the model's card lacks)", expanded=not has_card):
        intensity = st.selectbox("Intensity", list(FORM_INTENSITIES), key="pre_intensity")
        shape = "1, 96, 96, 96"
        if program_shape is None:
            shape = st.text_input("Model input shape (C, D, H, W) or (C, H, W)", shape, key="pre_shape")
        else:  # a .pt2 states its own input shape; the form cannot change a fact about the program
            st.caption(f"Input shape, from the program: {tuple(program_shape)}")
        task = st.selectbox("Task", ["classification", "segmentation"], key="pre_task")
        override = has_card and st.checkbox("Override the model's own card with these values", key="pre_override")
    card = form_card(intensity, shape, task, program_shape)
    return card, (card if override else None)


def choose_model(errors: list[str]):
    from explain.io.volume import safe_name
    from explain.models.load import apply_card
    from explain.policy import SERVER_MODELS, UPLOAD_MODEL, UPLOAD_WEIGHTS

    st.sidebar.header("2 · Model")
    options = [*SAMPLE_MODELS, UPLOAD_MODEL, UPLOAD_WEIGHTS] + ([SERVER_MODELS] if MODEL_DIR else [])
    source = st.sidebar.radio("Source", options, key="model_source")
    try:
        if source in SAMPLE_MODELS:
            sample = SAMPLE_MODELS[source]
            loaded = apply_card(model_file(sample.stamp(), None, "{}", sample.path.name, str(sample.path)))
        elif source == SERVER_MODELS:
            from explain.models.files import list_models

            offered = list_models(MODEL_DIR)
            pick = st.sidebar.selectbox("Model", list(offered), key="server_model")
            if pick is None:
                st.sidebar.info("The model folder holds no model folders, bundles or .pt2 files.")
                return None
            path = offered[pick]
            loaded = apply_card(model_file(f"{path}:{path.stat().st_mtime}", None, "{}", pick, str(path)))
        else:
            upload = st.sidebar.file_uploader("Model file", key="model_upload")
            arch, kwargs = None, "{}"
            if source == UPLOAD_WEIGHTS:
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


def match_channels(volume, model, errors: list[str]):
    """A multi-channel case named with the model's channels, and the channel shown as anatomy (chosen here)."""
    from explain.io.volume import show_channel

    if volume.n_channels == 1:
        return volume
    names = list(model.card.channel_names or []) if len(model.card.channel_names or []) == volume.n_channels else []
    labels = [f"{n} ({v})" for n, v in zip(names, volume.source.split(" + "))] or volume.source.split(" + ")
    st.sidebar.caption(plain("Channels, in the model's order: " + "; ".join(labels)))
    shown = st.sidebar.selectbox("Channel shown as anatomy", range(volume.n_channels), format_func=lambda i: labels[i],
                                 key="shown_channel")  # fmt: skip
    try:
        return show_channel(volume, int(shown or 0))
    except InputError as e:
        errors.append(plain(e))
        return volume


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
    from explain.cohort.worklist import NUMERIC, WORKLIST_COLUMNS, batch_model, list_batches, worklist
    from explain.models.load import apply_card
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


def choose_mask(volume, model, errors: list[str]):
    """An overlay: a mask on the image's grid (localisation scores; the sample's lesion mask is offered), or a
    segmentation model's own prediction with its label names. Returns (mask data or None, label names or None)."""
    from explain.io.volume import safe_name

    st.sidebar.header("3 · Overlay (optional)")
    try:
        if model is not None and model.card.task == "segmentation":
            if st.sidebar.checkbox("The model's predicted segmentation", key="predicted_overlay"):
                return predicted_labels(volume.content_hash, model.identity, model, volume)
        case = SAMPLE_CASES.get(st.session_state.get("volume_source"))
        if case is not None:
            if st.sidebar.checkbox("The sample's lesion mask", key="sample_mask"):
                return volume_from_path(str(case.mask), str(case.mask.stat().st_mtime), None).data, case.mask_names
            return None, None
        upload = st.sidebar.file_uploader("A mask on the same grid as the image", key="mask_upload")
        if upload is None:
            return None, None
        raw = upload.getvalue()
        mask = volume_from_upload(digest(raw), None, safe_name(upload.name, "mask"), raw)
        if mask.shape != volume.shape:
            raise InputError(f"the mask's grid {mask.shape} is not the image's grid {volume.shape}")
        return mask.data, None
    except InputError as e:
        errors.append(f"This overlay could not be used: {plain(e)}")
    return None, None


# ----------------------------------------------------------------------------- sidebar: choices
def choose_settings(page: Page, model, probabilities) -> tuple[Choices, list[str]]:
    """Widgets show `page.choices`, made valid for this model; a change the user did not make is explained."""
    from explain.cam.layers import model_layers
    from explain.models.loaded import class_names
    from explain.policy import (
        attention_blocks,
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
    st.sidebar.header("4 · Explanation")
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
def make(model, volume, choices: Choices, probabilities):
    """The request for these choices (defaults resolved by explain.request) and its title."""
    from explain.models.loaded import class_names
    from explain.policy import is_attention, request_title
    from explain.request import make_request

    target = class_names(model, len(probabilities)).index(choices.target_name)
    layers = None if is_attention(choices.method) else [choices.layer]
    request = make_request(model, volume, choices.method, layers, target, block=choices.block, head=choices.head)
    window = tuple(model.card.patch_size) if model.card.patch_size else None
    return request, request_title(request.method, request.layers, request.block, choices.target_name, window)


def compute_map(model, volume, request):
    """Compute (or fetch) a request; the viewer follows the stages through its status file."""
    from explain.report import append_audit, record
    from explain.request import compute
    from viewer.status import write_status

    key = request.key()
    write_status(STATIC, key, "queued", "preparing the input")
    stages = {"preprocess": ("queued", "preparing the input")}

    def report(stage: str, done: int = 0, total: int = 0) -> None:
        if stage == "windows":
            write_status(STATIC, key, "windows", f"{done} of {total}")
        else:
            write_status(STATIC, key, *stages.get(stage, (stage, "")))

    try:
        result, cached = compute(
            request, model, volume, cache=stores()["cams"], progress=report,
            on_wait=lambda: write_status(STATIC, key, "queued", "waiting for the device: another map is computing"),
        )  # fmt: skip
    except InputError as e:
        write_status(STATIC, key, "failed", str(e))
        raise
    if not cached:
        stores()["stats"]["engine_calls"] += 1
        target = request.targets[0] if isinstance(request.targets, tuple) else result.predicted
        append_audit(
            STATE_DIR / "audit.jsonl", record(request, result, request.layers[0] if request.layers else "", target)
        )
    stores()["requests"].put(key, (request, result))
    write_status(STATIC, key, "done", map=published_map(key, chosen(request, result)))
    return result, cached


def published_map(key: str, cam):
    """A map on its model grid with the affine placing it in the world, written once per key."""
    from viewer.publish import publish_cam

    return stores()["published"].get(key) or stores()["published"].put(key, publish_cam(cam, STATIC, key))


def anatomy(volume):
    """The image for the viewer, published once per content hash (the user's NIfTI bytes as they are if it can)."""
    from viewer.publish import publish_anatomy

    key = f"anatomy:{volume.content_hash}:{volume.shown_channel}"  # one case, one published copy per channel
    found = stores()["published"].get(key)
    if found is None:
        source = stores()["sources"].get(volume.content_hash) if volume.n_channels == 1 else None
        if isinstance(source, str) and source.endswith((".nii", ".nii.gz")) and Path(source).is_file():
            source = Path(source).read_bytes()
        source = source if isinstance(source, bytes) and volume.n_volumes == 1 else None
        found = publish_anatomy(volume.data, volume.affine, STATIC, key, source)
        stores()["published"].put(key, found)
    return found


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
    mask, mask_names = choose_mask(volume, model, errors) if volume is not None else (None, None)
    if volume is not None and model is not None:
        volume = match_channels(volume, model, errors)
    for message in errors:
        st.error(message)
    if volume is None:
        show_last(page)
        return
    for warning in volume.warnings:
        st.warning(plain(warning))
    left, right = st.columns([3, 1])
    try:
        if model is None:
            raise InputError("choose a model to compute a map; the image is shown meanwhile")
        from explain.models.loaded import check_fit

        check_fit(model, volume.ndim, volume.source, volume.n_channels)
        probabilities = prediction(volume.content_hash, model.identity, model, volume)
        choices, notes = choose_settings(page, model, probabilities)
        for note in notes:
            st.info(plain(note))
        request, title = make(model, volume, choices, probabilities)
    except InputError as e:
        if model is not None:
            st.error(f"The map could not be computed: {plain(e)}")
        with left:  # anatomy first, and the last map of this image if there is one
            viewer(page, volume, None, None, mask, mask_names)
        return
    with left:
        st.markdown(f"**{plain(title)}**", help="method · layer · target class")
        viewer(page, volume, request, title, mask, mask_names)
        if not request.layers or st.button("Compare every layer at this depth (one engine pass)", key="montage"):
            st.session_state["montage_for"] = request.key() if request.layers else None
    try:
        result, cached = compute_map(model, volume, request)
    except InputError as e:
        st.error(f"The map could not be computed: {plain(e)}")
        st.info("The viewer keeps the last map it showed.")
        return
    page.volume, page.model, page.choices, page.shown = volume.content_hash, model.identity, choices, request.key()
    page.history = remember(page.history, request.key(), title)
    with right:
        prediction_panel(model, result, chosen(request, result), cached)
    exports(volume, model, request, result)
    checks(model, volume, request, result, mask)


def viewer(page: Page, volume, request, title: str | None, mask, mask_names=None) -> None:
    """The slice viewer: anatomy now, the map when ready (pending), compare maps, and the mask."""
    import numpy as np

    from viewer.component import camviewer, camviewer_payload
    from viewer.publish import publish_labels
    from viewer.status import pending_map

    maps: list = []
    if request is not None:
        key = request.key()
        found = stores()["requests"].get(key)
        maps.append((title, published_map(key, chosen(*found)), key) if found else pending_map(STATIC, key, title))
        maps += compare_maps(page, volume, request)
    elif page.volume == volume.content_hash and (found := stores()["requests"].get(page.shown)):
        title = page.history[-1][1] if page.history else "last map"
        maps.append((title, published_map(page.shown, chosen(*found)), page.shown))
    labels = None
    if mask is not None:
        labels = publish_labels(np.rint(mask).astype(np.uint8), volume.affine, STATIC, f"mask:{volume.content_hash}")
    camviewer(camviewer_payload(STATIC, anatomy(volume), maps=maps, mask=labels, mask_names=mask_names),
              key="camviewer")  # fmt: skip


def compare_maps(page: Page, volume, request) -> list:
    """Earlier maps of this image the user picked, and every layer at this depth when asked: side by side."""
    out = []
    others = [h for h in page.history if h[0] != request.key()]
    picked = st.multiselect(
        "Compare side by side with earlier maps", others, format_func=lambda h: h[1], max_selections=3,
        key="compare_pick",
    )  # fmt: skip
    for key, other_title in picked:
        found = stores()["requests"].get(key)
        if found is not None and found[0].volume == volume.content_hash:
            out.append((other_title, published_map(key, chosen(*found)), key))
    if st.session_state.get("montage_for") == request.key():
        out += montage(volume, request)
    return out


def montage(volume, request) -> list:
    """Every gradient layer at the depth of the one shown, from one engine pass (cached)."""
    from dataclasses import replace

    from explain.cam.layers import model_layers
    from explain.policy import method_label, montage_layers

    model = stores()["models"].get(request.model)
    multi = replace(request, layers=tuple(montage_layers(model_layers(model)[0], request.layers[0])))
    result, _ = compute_map(model, volume, multi)
    target = request.targets[0] if isinstance(request.targets, tuple) else result.predicted
    out = []
    for r in result.results:
        if r.target == target and r.layer != request.layers[0]:
            title = f"{method_label(r.method)} · {r.layer} · {r.target_name}"
            key = f"{multi.key()}:{r.layer}:{r.target}"
            out.append((title, published_map(key, r), key))
    return out


def prediction_panel(model, result, cam, cached: bool) -> None:
    from explain.policy import score_word
    from viewer.figures import probability_bars

    st.subheader("Prediction")
    st.plotly_chart(probability_bars(result.class_names, result.probabilities, cam.target, score_word(model)))
    st.metric("Compute", "cached" if cached else f"{result.timings.get('total', 0.0):.2f} s")
    st.caption(
        plain(f"model grid {'x'.join(map(str, result.model_grid))} · {result.device} · raw peak {cam.raw_peak:.3g}")
    )
    for note in result.warnings + cam.warnings:
        st.warning(plain(note))


def exports(volume, model, request, result) -> None:
    """The map as NIfTI on the image's own grid, and the JSON report (the viewer exports the PNG it shows)."""
    from explain.io.write import nifti_bytes
    from explain.report import report

    cam = chosen(request, result)
    st.subheader("Export")
    c1, c2 = st.columns(2)
    stem = f"cam_{cam.method}_{cam.layer.replace('.', '-')}_{cam.target}"
    # Built only when clicked (deferred data): a full-resolution NIfTI is tens of MB.
    c1.download_button("Map as NIfTI (the input's grid and affine)", lambda: nifti_bytes(cam.cam, volume.affine),
                       f"{stem}.nii.gz", mime="application/gzip", key="dl_nifti")  # fmt: skip
    record = lambda: report(  # noqa: E731 - deferred: built when clicked
        request, result, cam.layer if request.layers else "", cam.target, volume_name=volume.source,
        model_name=model.source, model_card=model.card.to_dict(),
    )  # fmt: skip
    c2.download_button("JSON report", lambda: json.dumps(record(), indent=2), f"{stem}.json",
                       mime="application/json", key="dl_json")  # fmt: skip
    st.caption(f"camviewer {__version__} · engine calls this server: {stores()['stats']['engine_calls']} · "
               "the PNG of what you see is in the viewer's toolbar")  # fmt: skip


def checks(model, volume, request, result, mask) -> None:
    """Localisation against a mask, and the sanity check, for the map on screen (built only when asked for)."""
    from explain.trust.localisation import localise, target_mask
    from viewer.panels import localisation_panel, sanity_panel

    cam = chosen(request, result)
    st.subheader("Checks")
    if mask is not None:
        localisation_panel(localise(cam.cam, target_mask(mask, cam.target), 0.5).to_dict())
    found = stores()["sanity"].get(request.key())
    if found is None and st.button("Run the sanity check: randomise the model block by block, from the top",
                                   key="sanity_run"):  # fmt: skip
        from explain.trust.sanity import cascade

        with st.spinner("Randomising blocks and recomputing the map…"):
            layer = request.layers[0] if request.layers else None
            report = cascade(model, volume, request.method, layer, cam.target, block=request.block)
            found = stores()["sanity"].put(request.key(), report.to_dict())
    if found is not None:
        sanity_panel(found)


def show_last(page: Page) -> None:
    """With no image chosen, the last image and map of this session, said to be the previous ones."""
    volume = stores()["volumes"].get(page.volume)
    if volume is not None and stores()["requests"].get(page.shown) is not None:
        st.info("Showing the last successful result.")
        viewer(page, volume, None, None, None)


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
