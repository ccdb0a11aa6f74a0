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

import numpy as np
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
LOG = logging.getLogger("camviewer")


@dataclass
class Page:
    """The page's state: content hashes and choices only (never arrays, models or results)."""

    volume: str | None = None  # content hash of the image on screen
    model: str | None = None  # identity (file + effective card) of the model on screen
    choices: Choices = field(default_factory=Choices)
    shown: str | None = None  # request key of the map on screen
    history: list = field(default_factory=list)  # explain.policy.Shown: maps seen, for comparison
    case_name: str | None = None  # the image and model as the page names them (the URL uses these names)
    model_name: str | None = None


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
def choose_volume(page: Page, errors: list[str], status):
    from explain.io.volume import safe_name
    from explain.share import upload_name

    st.sidebar.header("1 · Image")
    sources = [*SAMPLE_CASES, "Upload an image"] + (["Case folder"] if CASE_DIR else [])
    sources += ["Worklist (cohort run)"] if BATCH_DIR else []
    source = st.sidebar.radio("Source", sources, key="volume_source", on_change=match_sample_model)
    page.case_name = source if source in SAMPLE_CASES else None
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
            page.case_name = pick.name
            stamp = f"{pick}:{pick.stat().st_mtime}"
            return volume_choice(volume_from_path(str(pick), stamp, chosen_index(stamp)), stamp)
        uploads = st.sidebar.file_uploader(
            "NIfTI, NRRD, MGH, DICOM (file or .zip series), PNG/JPEG; several files: the channels of one case",
            key="volume_upload", accept_multiple_files=True,
        )  # fmt: skip
        if not uploads:
            return from_link("case", stores()["volumes"], "image", page)
        raws = tuple(u.getvalue() for u in uploads)
        reading(status, "volume", tuple(digest(r) for r in raws), f"Reading the image ({_size(raws)})…")
        if len(raws) > 1:
            names = tuple(safe_name(u.name) for u in uploads)
            volume = case_from_uploads(tuple(digest(r) for r in raws), names, raws)
        else:
            key = digest(raws[0])
            volume = volume_choice(volume_from_upload(key, chosen_index(key), safe_name(uploads[0].name), raws[0]), key)
        page.case_name = upload_name(volume.content_hash)
        return volume
    except InputError as e:
        errors.append(f"This image could not be opened: {plain(e)}")
    return None


def _size(raws) -> str:
    total = sum(len(r) for r in raws)
    return f"{total / 2**20:.0f} MB" if total >= 2**20 else f"{total / 2**10:.0f} kB"


def reading(status, what: str, digests: tuple, sentence: str) -> None:
    """Say what is being read, where the user looks, the first time a file is read in this session."""
    seen = st.session_state.setdefault("read_files", set())
    if (what, digests) not in seen:
        seen.add((what, digests))
        status.info(sentence)


def from_link(kind: str, store, what: str, page: Page):
    """An upload a shared link names (`upload:<hash>`): still on the server, or one sentence asking for the file."""
    from explain.share import upload_hash, upload_name

    wanted = upload_hash(st.session_state.get(f"link_{kind}"))
    if wanted is None:
        st.sidebar.info(f"Upload {'an image' if kind == 'case' else 'a model file'} to begin.")
        return None
    found = store.get(wanted)
    if found is None:
        st.sidebar.warning(f"The {what} this link names (an upload, {wanted[:12]}…) is no longer on the server; "
                           f"please upload the file again.")  # fmt: skip
        return None
    st.sidebar.caption(f"The {what} this link names: an upload still on the server ({wanted[:12]}…).")
    if kind == "case":
        page.case_name = upload_name(wanted)
    else:
        page.model_name = upload_name(wanted)
    return found


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


def choose_model(page: Page, errors: list[str], status):
    from explain.io.volume import safe_name
    from explain.models.load import apply_card
    from explain.policy import SERVER_MODELS, UPLOAD_MODEL, UPLOAD_WEIGHTS
    from explain.share import upload_name

    st.sidebar.header("2 · Model")
    options = [*SAMPLE_MODELS, UPLOAD_MODEL, UPLOAD_WEIGHTS] + ([SERVER_MODELS] if MODEL_DIR else [])
    source = st.sidebar.radio("Source", options, key="model_source")
    page.model_name = source if source in SAMPLE_MODELS else None
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
            page.model_name = pick
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
                preprocessing_form(False, None)
                return from_link("model", stores()["models"], "model", page)
            raw = upload.getvalue()
            reading(status, "model", (digest(raw),), f"Reading the model file {safe_name(upload.name, 'model')!r} "
                                                       f"({_size([raw])}): checking it before anything runs…")  # fmt: skip
            mf = model_file(digest(raw), arch, kwargs, safe_name(upload.name, "model"), raw)
            defaults, overrides = preprocessing_form(mf.card is not None, mf.input_shape)
            loaded = apply_card(mf, defaults, overrides)
            page.model_name = upload_name(loaded.identity)
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
        model=st.session_state.get("choices_model"),  # the model the widgets' values were chosen for
    )
    choices, notes = reconcile(asked, model, layers, names, probabilities)
    st.session_state["choices_model"] = model.identity
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


def status_key(request_key: str, mask_id: str | None) -> str:
    """The viewer polls one status per map and overlay: its facts include the scores against that overlay."""
    return f"{request_key}|overlay:{mask_id or ''}"


def compute_map(model, volume, request, title: str, mask, mask_id: str | None, bar=None):
    """Compute (or fetch) a request. The viewer follows the stages through its status file and receives the map
    with its facts; `bar` (a Streamlit progress bar) follows them too, which lets a Stop press end the run there."""
    from explain.report import append_audit, record
    from explain.request import compute
    from viewer.status import write_status

    key, skey = request.key(), status_key(request.key(), mask_id)
    write_status(STATIC, skey, "queued", "preparing the input")
    stages = {"preprocess": ("queued", "preparing the input")}
    words = {"preprocess": "preparing the input", "forward": "running the model", "gradients": "computing gradients",
             "mapping": "mapping onto the image"}  # fmt: skip

    def report(stage: str, done: int = 0, total: int = 0) -> None:
        if stage == "windows":
            write_status(STATIC, skey, "windows", f"{done} of {total}")
        else:
            write_status(STATIC, skey, *stages.get(stage, (stage, "")))
        if bar is not None:  # a Streamlit call: where a Stop press (or any other widget) interrupts the run
            line = f"window {done} of {total}" if stage == "windows" else words.get(stage, stage)
            bar.progress(done / total if stage == "windows" and total else 0.0, text=f"Computing {title}: {line}…")

    try:
        result, cached = compute(
            request, model, volume, cache=stores()["cams"], progress=report,
            on_wait=lambda: write_status(STATIC, skey, "queued", "waiting for the device: another map is computing"),
        )  # fmt: skip
    except InputError as e:
        write_status(STATIC, skey, "failed", str(e))
        raise
    if not cached:
        stores()["stats"]["engine_calls"] += 1
        target = request.targets[0] if isinstance(request.targets, tuple) else result.predicted
        append_audit(
            STATE_DIR / "audit.jsonl", record(request, result, request.layers[0] if request.layers else "", target)
        )
    stores()["requests"].put(key, (request, result))
    facts, warnings = map_facts(model, volume, request, result, mask, mask_id)
    write_status(STATIC, skey, "done", map=published_map(key, chosen(request, result)), facts=facts, warnings=warnings)
    return result, cached


def map_facts(model, volume, request, result, mask, mask_id: str | None) -> tuple[list[str], list[str]]:
    """The facts the viewer shows beside a map once it is drawn (kept per map and overlay)."""
    from explain.policy import score_word
    from explain.report import map_facts as facts_of
    from explain.trust.localisation import localise, target_mask

    key = f"facts:{status_key(request.key(), mask_id)}"
    found = stores()["published"].get(key)
    if found is None:
        cam = chosen(request, result)
        scores = localise(cam.cam, target_mask(mask, cam.target), 0.5).to_dict() if mask is not None else None
        found = stores()["published"].put(key, facts_of(result, cam, score_word(model), scores))
    return found


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
    read_link(page)
    # Room for the viewer: Streamlit's default page margins would take a quarter of a 1400 px window.
    st.html("<style>[data-testid='stMainBlockContainer']{padding:1.2rem 1.5rem 3rem;}</style>")
    st.markdown("**camviewer** · where did the model look? Grad-CAM family and ViT attention on 3D volumes and 2D "
                "images.")  # fmt: skip
    # Fixed places, created first: a new run replaces the last run's panels at once instead of leaving another
    # image's checks on screen while it works.
    status = st.empty()  # what runs now (reading a file, computing a map), with its progress and Stop
    notes = Notes()  # errors, warnings and notes of this run
    view = st.container()  # the viewer, the compare picker and the layer montage
    below = st.empty()  # the panels of the map on screen: prediction, exports, checks
    errors: list[str] = []
    volume, model = choose_volume(page, errors, status), None
    if st.session_state.get("volume_source", "").startswith("Worklist"):
        volume, model = open_from_worklist(errors) or (None, None)
    else:
        model = choose_model(page, errors, status)
    mask, mask_names = choose_mask(volume, model, errors) if volume is not None else (None, None)
    if volume is not None and model is not None:
        volume = match_channels(volume, model, errors)
    status.empty()
    for message in errors:
        notes.add("error", message)
    if volume is None:
        with view:
            show_last(page)
        return
    mask_id = None if mask is None else digest(np.ascontiguousarray(mask).tobytes())  # the scores depend on it
    for warning in volume.warnings:
        notes.add("warning", plain(warning))
    try:
        if model is None:
            raise InputError("choose a model to compute a map; the image is shown meanwhile")
        from explain.domain import domain_warnings
        from explain.models.loaded import check_fit
        from explain.policy import has_no_map, no_map_sentence

        check_fit(model, volume.ndim, volume.source, volume.n_channels)
        probabilities = prediction(volume.content_hash, model.identity, model, volume)
        choices, choice_notes = choose_settings(page, model, probabilities)
        for note in choice_notes:
            notes.add("info", plain(note))
        for warning in domain_warnings(model.card, volume) + untrained_warning(model):
            notes.add("warning", plain(warning))
        request, title = make(model, volume, choices, probabilities)
    except InputError as e:
        if model is not None:
            notes.add("error", f"The map could not be computed: {plain(e)}")
        with view:  # anatomy first, and the last map of this image if there is one
            viewer(page, volume, None, None, mask, mask_names)
        write_link(page, None)
        return
    write_link(page, choices)
    if has_no_map(model, choices.target_name):  # labelled so in the list; never computed
        notes.add("info", plain(no_map_sentence(choices.target_name)))
        with view:
            viewer(page, volume, None, None, mask, mask_names, message=f"{choices.target_name}: no map")
        return
    with view:
        viewer(page, volume, request, title, mask, mask_names, mask_id)
        compare_controls(page, volume, request)
    if st.session_state.get("stopped") == request.key():
        stopped(status, request, title, mask_id)
        return
    try:
        found = stores()["requests"].get(request.key())
        bar = None
        if found is None:  # a map to compute: progress where the user looks, and a way to stop it
            with status.container():
                bar = st.progress(0.0, text=f"Computing {title}…")
                st.button("Stop", key="stop_map", on_click=stop, args=(request.key(),))
        result, cached = compute_map(model, volume, request, title, mask, mask_id, bar)
        status.empty()
        montage_maps(page, volume, request)
    except InputError as e:
        status.empty()
        notes.add("error", f"The map could not be computed: {plain(e)}")
        notes.add("info", "The viewer keeps the last map it showed.")
        return
    from explain.policy import Shown

    page.volume, page.model, page.choices, page.shown = volume.content_hash, model.identity, choices, request.key()
    page.history = remember(page.history, Shown(request.key(), title, volume.content_hash, page.model_name or ""))
    with below.container():
        left, middle, right = st.columns([2, 2, 3])
        with left:
            prediction_panel(model, result)
        with middle:
            exports(volume, model, request, result, title, mask_id)
        with right:
            checks(model, volume, request, result, title)


class Notes:
    """The run's errors, warnings and notes in one place near the top; the last run's go as this run starts."""

    def __init__(self) -> None:
        self.slot = st.empty()
        self.items: list[tuple[str, str]] = []

    def add(self, kind: str, text: str) -> None:
        self.items.append((kind, text))
        with self.slot.container():
            for k, t in self.items:
                getattr(st, k)(t)


def stop(key: str) -> None:
    st.session_state["stopped"] = key


def stopped(status, request, title: str, mask_id: str | None) -> None:
    """A map the user stopped: said so (the viewer keeps the map it had), until they ask for it again."""
    from viewer.status import write_status

    write_status(STATIC, status_key(request.key(), mask_id), "stopped")
    with status.container():
        st.warning(plain(f"Stopped: {title} was not computed. The viewer keeps the map it had."))
        st.button("Compute this map", key="resume_map", on_click=lambda: st.session_state.pop("stopped", None))


def untrained_warning(model) -> list[str]:
    from explain.trust.untrained import untrained_warning as warning_for

    key = f"untrained:{model.identity}"
    found = stores()["published"].get(key)
    if found is None:
        found = stores()["published"].put(key, [warning_for(model.module) or ""])
    return [found[0]] if found[0] else []


# ----------------------------------------------------------------------------- the link
def read_link(page: Page) -> None:
    """Once per session: a shared link's case, model, method, layer and target become the first choices, and its
    crosshair, window and opacity the viewer's first view of that case. Names are looked up, never opened."""
    from explain.share import page_choices, upload_hash, view_of

    if st.session_state.get("link_read"):
        return
    st.session_state["link_read"] = True
    params = {k: st.query_params.get_all(k) for k in st.query_params}
    wanted = page_choices(params)
    case, model = wanted.get("case"), wanted.get("model")
    if case in SAMPLE_CASES:
        st.session_state["volume_source"] = case
    elif upload_hash(case):
        st.session_state.update(volume_source="Upload an image", link_case=case)
    elif case and CASE_DIR:
        found = [p for p in Path(CASE_DIR).iterdir() if p.name == case and not p.name.startswith(".")]
        if found:
            st.session_state.update(volume_source="Case folder", case_pick=found[0])
    if model in SAMPLE_MODELS:
        st.session_state["model_source"] = model
    elif upload_hash(model):
        from explain.policy import UPLOAD_MODEL

        st.session_state.update(model_source=UPLOAD_MODEL, link_model=model)
    elif model and MODEL_DIR:
        from explain.models.files import list_models
        from explain.policy import SERVER_MODELS

        if model in list_models(MODEL_DIR):
            st.session_state.update(model_source=SERVER_MODELS, server_model=model)
    page.choices = Choices(method=wanted.get("method"), layer=wanted.get("layer"), target_name=wanted.get("target"))
    view = view_of(params)
    if view:
        st.session_state["link_view"] = {"case": case, **view}


def write_link(page: Page, choices: Choices | None) -> None:
    """The page's part of the URL: what is on screen, by the names the page lists (the viewer adds its view)."""
    from explain.share import PAGE_KEYS, with_page

    wanted = {"case": page.case_name, "model": page.model_name}
    if choices is not None:
        wanted |= {"method": choices.method, "layer": choices.layer, "target": choices.target_name}
    current = {k: st.query_params.get_all(k) for k in st.query_params}
    new = with_page(current, wanted)
    if {k: v for k, v in new.items() if k in PAGE_KEYS} != {k: current[k][-1] for k in PAGE_KEYS if current.get(k)}:
        st.query_params.from_dict(new)


def link_view(page: Page, volume) -> dict | None:
    """The shared link's view, for the case it named, until another case is opened."""
    view = st.session_state.get("link_view")
    if view is None:
        return None
    if view.get("case") != page.case_name:
        st.session_state.pop("link_view", None)
        return None
    return {k: v for k, v in view.items() if k != "case"}


# ----------------------------------------------------------------------------- the viewer and its maps
def viewer(page: Page, volume, request, title, mask, mask_names=None, mask_id=None, message: str = "") -> None:
    """The slice viewer: anatomy now, the map when ready (with its facts), the maps picked for comparison."""
    import numpy as np

    from viewer.component import camviewer, camviewer_payload
    from viewer.publish import publish_labels
    from viewer.status import pending_map

    maps: list = []
    if request is not None:
        key = request.key()
        found = stores()["requests"].get(key)
        if found:
            facts, warnings = map_facts(stores()["models"].get(request.model), volume, *found, mask, mask_id)
            maps.append(map_entry(title, key, published_map(key, chosen(*found)), facts, warnings))
        else:
            maps.append(pending_map(STATIC, status_key(key, mask_id), title, key=key))
        maps[0]["model"] = page.model_name or ""
        maps += compared(page, volume, request)
    elif not message and page.volume == volume.content_hash and (found := stores()["requests"].get(page.shown)):
        # the last good map stays after a failure; a class without a map shows none, with the message as title
        last = page.history[-1] if page.history else None
        maps.append(
            map_entry(last.title if last else "last map", page.shown, published_map(page.shown, chosen(*found)))
        )
    labels = None
    if mask is not None:
        labels_key = f"mask:{volume.content_hash}:{mask_id or digest(np.ascontiguousarray(mask).tobytes())}"
        labels = publish_labels(np.rint(mask).astype(np.uint8), volume.affine, STATIC, labels_key)
    payload = camviewer_payload(STATIC, anatomy(volume), maps=maps, mask=labels, mask_names=mask_names)
    payload["options"]["view"] = link_view(page, volume)
    payload["message"] = message
    camviewer(payload, key="camviewer")


def map_entry(title: str, key: str, published, facts=(), warnings=(), model: str = "") -> dict:
    return {"title": title, "key": key, "model": model, "facts": list(facts), "warnings": list(warnings),
            **published.to_dict()}  # fmt: skip


def compared(page: Page, volume, request) -> list:
    """The earlier maps of this image the user picked, and every layer at this depth when asked: side by side."""
    out = []
    keys = {h.key: h for h in page.history}
    for key in st.session_state.get("compare_pick") or []:
        shown, found = keys.get(key), stores()["requests"].get(key)
        if shown is not None and found is not None and shown.volume == volume.content_hash:
            out.append(map_entry(shown.title, key, published_map(key, chosen(*found)), model=shown.model_name))
    if st.session_state.get("montage_for") == request.key() and request.layers:
        out += montage_entries(page, volume, request)
    return out


def compare_controls(page: Page, volume, request) -> None:
    """Pick earlier maps of this image to compare (by model, method, layer and class), or the layer montage."""
    from explain.policy import comparable

    offered = comparable(page.history, volume.content_hash, request.key())
    labels = {h.key: h.label for h in offered}
    kept = [k for k in st.session_state.get("compare_pick") or [] if k in labels]
    if kept != (st.session_state.get("compare_pick") or []):
        st.session_state["compare_pick"] = kept
    c1, c2 = st.columns([3, 1])
    c1.multiselect(
        "Compare side by side with earlier maps of this image (up to 3)", list(labels), format_func=labels.get,
        max_selections=3, key="compare_pick",
        placeholder="Earlier maps of this image appear here" if labels else "No earlier map of this image yet",
    )  # fmt: skip
    if request.layers:
        c2.button("Compare every layer at this depth", key="montage", on_click=ask_montage, args=(request.key(),),
                  help="Every layer at the depth of this one, for this class, from one engine pass.")  # fmt: skip


def ask_montage(key: str) -> None:
    st.session_state["montage_for"] = key  # set before the next run starts: the first click shows the montage


def montage_request(volume, request):
    from dataclasses import replace

    from explain.cam.layers import model_layers
    from explain.policy import montage_layers

    model = stores()["models"].get(request.model)
    return model, replace(request, layers=tuple(montage_layers(model_layers(model)[0], request.layers[0])))


def montage_entries(page: Page, volume, request) -> list:
    """Every gradient layer at the depth of the one shown: drawn when computed (after the map on screen)."""
    from explain.policy import method_label
    from viewer.status import pending_map

    model, multi = montage_request(volume, request)
    found = stores()["requests"].get(multi.key())
    target = request.targets[0]
    out = []
    for layer in multi.layers:
        if layer == request.layers[0]:
            continue
        key = f"{multi.key()}:{layer}:{target}"
        title = f"{method_label(request.method)} · {layer} · {st.session_state.get('w_target')}"
        if found is not None:
            cam = found[1].get(layer, target)
            out.append(map_entry(title, key, published_map(key, cam), model=page.model_name or ""))
        else:
            out.append({**pending_map(STATIC, key, title), "model": page.model_name or ""})
    return out


def montage_maps(page: Page, volume, request) -> None:
    """Compute the montage asked for (one engine pass) and hand each layer's map to the viewer."""
    from viewer.status import write_status

    if st.session_state.get("montage_for") != request.key() or not request.layers:
        return
    model, multi = montage_request(volume, request)
    if stores()["requests"].get(multi.key()) is not None:
        return
    result, _ = compute_map(model, volume, multi, "the layer montage", None, None)
    target = request.targets[0]
    for layer in multi.layers:
        if layer != request.layers[0]:
            key = f"{multi.key()}:{layer}:{target}"
            write_status(STATIC, key, "done", map=published_map(key, result.get(layer, target)))


# ----------------------------------------------------------------------------- panels under the viewer
def prediction_panel(model, result) -> None:
    """What the model predicts for this image: the same whichever map is shown."""
    from explain.policy import score_word
    from viewer.figures import probability_bars

    st.subheader("Prediction")
    st.html(probability_bars(result.class_names, result.probabilities, score_word(model)))


def exports(volume, model, request, result, title: str, mask_id: str | None) -> None:
    """The map as NIfTI on the image's own grid, and the JSON report (the viewer exports the PNG it shows)."""
    from explain.io.write import nifti_bytes
    from explain.report import file_stem, report, settings_of

    cam = chosen(request, result)
    st.subheader("Export")
    stem = file_stem(cam.method, cam.layer, cam.target)
    # Built only when clicked (deferred data): a full-resolution NIfTI is tens of MB.
    st.download_button("Map as NIfTI (the input's grid and affine)", lambda: nifti_bytes(cam.cam, volume.affine),
                       f"{stem}.nii.gz", mime="application/gzip", key="dl_nifti")  # fmt: skip

    def full_report() -> str:
        out = report(request, result, cam.layer if request.layers else "", cam.target, volume_name=volume.source,
                     model_name=model.source, model_card=model.card.to_dict(),
                     settings=settings_of(request, cam.target_name, overlay=mask_id))  # fmt: skip
        out["title"] = title
        out["facts"], _ = map_facts(model, volume, request, result, None, None)
        scored = stores()["published"].get(f"facts:{status_key(request.key(), mask_id)}") if mask_id else None
        out["localisation"] = scored[0] if scored else None
        out["sanity"] = stores()["sanity"].get(request.key())
        return json.dumps(out, indent=2)

    st.download_button("JSON report (settings, scores, sanity)", full_report, f"{stem}.json",
                       mime="application/json", key="dl_json")  # fmt: skip
    st.caption(f"camviewer {__version__} · engine calls this server: {stores()['stats']['engine_calls']} · "
               "the PNG of what you see is in the viewer's toolbar")  # fmt: skip


def checks(model, volume, request, result, title: str) -> None:
    """The sanity check of the map on screen: its button, then its progress (with Stop), then its result."""
    from explain.trust.sanity import cascade
    from viewer.panels import sanity_panel

    cam = chosen(request, result)
    key = request.key()
    st.subheader("Sanity check")
    found = stores()["sanity"].get(key)
    running = st.session_state.get("sanity_running")
    if found is None and running and running["key"] == key:  # a run that ended before its last block
        st.warning(f"The sanity check of {plain(title)} stopped after {running['done']} of {running['total'] or '?'} "
                   "blocks (Stop was pressed, or the page changed). Run it again to see its verdict.")  # fmt: skip
    st.session_state.pop("sanity_running", None)
    if found is None:
        slot = st.empty()
        if not slot.button("Run the sanity check: randomise the model block by block, from the top", key="sanity_run"):
            return
        with slot.container():
            bar = st.progress(0.0, text=f"Sanity check of {title}: computing the original map…")
            st.button("Stop the sanity check", key="sanity_stop")
        st.session_state["sanity_running"] = {"key": key, "done": 0, "total": 0}

        def progress(_stage: str, done: int, total: int) -> None:
            st.session_state["sanity_running"].update(done=done, total=total)
            text = f"Sanity check of {title}: randomised {done} of {total} blocks, recomputing the map each time…"
            bar.progress(done / max(total, 1), text=text)

        report = cascade(model, volume, request.method, request.layers[0] if request.layers else None, cam.target,
                         block=request.block, progress=progress)  # fmt: skip
        st.session_state.pop("sanity_running", None)
        found = stores()["sanity"].put(key, report.to_dict())
        slot.empty()
    sanity_panel(found, title, untrained_warning(model))


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
