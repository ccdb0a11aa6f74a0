"""Load, validate and describe models without executing code from the file.

Two ways in:
- a `.pt2` program (`torch.export.save`), read by `explain.models.pt2` (which never
  unpickles) and `torch.export.unflatten`-ed so that named submodules accept hooks;
- a weights file (`.pt`/`.pth` read with `weights_only=True`, or `.safetensors`)
  plus the name of an allowed `monai.networks.nets` class and plain arguments
  (`explain.models.netargs`).
TorchScript (cannot be hooked) and pickled whole modules (loading them runs code)
are refused with a message saying how to export a `.pt2` instead.

Identity rule (see docs/decisions.md): a model is its file's bytes plus the
canonical JSON of its *effective* card. The card inside the file (or its sidecar)
wins; a form's values only fill fields the card lacks; a user's deliberate
overrides win over both and are listed. Any of these changing changes the identity,
so every cache keyed by it recomputes.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from explain.errors import InputError
from explain.limits import check_bytes, max_bytes, mib
from explain.models.cards import ModelCard, canonical_json, validate_card
from explain.models.files import ModelFiles
from explain.models.loaded import LoadedModel, ModelFile

CARD_FILE = "model_card.json"

EXPORT_HINT = (
    "Export the model instead: `ep = torch.export.export(model.eval(), (example_input,)); "
    "torch.export.save(ep, 'model.pt2')`, or save its state_dict and give the MONAI network name."
)


def read_model_file(
    data: bytes | str | Path,
    name: str | None = None,
    *,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    fold: str = "all",
) -> ModelFile:
    """Read a model from a path (its sidecar card is looked for beside it) or from uploaded bytes (no sidecar).

    A folder, or a .zip of one, is an nnU-Net v2 results folder or a MONAI bundle; `fold` picks nnU-Net folds.
    """
    path = None
    if not isinstance(data, bytes):
        path = Path(data)
        name = name or path.name
        if path.is_dir():
            return _read_folder(ModelFiles.open(path, name), fold)
        if not path.is_file():
            raise InputError(f"{name}: no such model file")
        check_bytes(path.stat().st_size, "reading the model file", name)
        data = path.read_bytes()
    name = name or "model"
    check_bytes(len(data), "reading the model file", name)
    names = _zip_names(data)
    if names and any(n.rsplit("/", 1)[-1] in ("plans.json", "metadata.json", "inference.json", "inference.yaml")
                     for n in names):  # fmt: skip
        return _read_folder(ModelFiles.open(data, name), fold)
    if any(n.endswith("/archive_format") or "/models/" in n for n in names):
        module, shape, card, origin = _read_pt2(data, name)
        kind, file_hash = "pt2", _digest(data)
    elif any("/code/" in n for n in names) or any(n.endswith("constants.pkl") for n in names):
        raise InputError(
            f"{name}: TorchScript models cannot be hooked, so CAMs cannot be computed from them. {EXPORT_HINT}"
        )
    else:
        if arch is None:
            raise InputError(
                f"{name}: a weights file needs the MONAI network name (for example DenseNet121) and its "
                "arguments; or load a .pt2 program instead"
            )
        module = _load_weights(data, name, arch, arch_kwargs or {}, names)
        kind, shape, card, origin = "weights", None, None, "none"
        file_hash = _digest(data, json.dumps({"arch": arch, "kwargs": arch_kwargs or {}}, sort_keys=True))
    if path is not None and card is None:
        card, origin = _sidecar_card(path)
    return ModelFile(module, file_hash, name, kind, shape, card, origin)


def apply_card(
    model_file: ModelFile, defaults: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> LoadedModel:
    """The effective card (overrides > the file's own card > form defaults) and the model's identity."""
    embedded = dict(model_file.card or {})
    filler = validate_card(defaults, "the preprocessing form") if defaults else {}
    forced = validate_card(overrides, "the override") if overrides else {}
    merged = {**filler, **embedded, **forced}
    program_shape = model_file.input_shape
    if program_shape is not None:
        stated = merged.get("input_shape")
        if stated is not None and tuple(stated) != tuple(program_shape):
            if "input_shape" in embedded or "input_shape" in forced:
                raise InputError(
                    f"{model_file.source}: the card says input_shape {list(stated)}, but the program takes "
                    f"{list(program_shape)}; fix the card"
                )
            filler.pop("input_shape", None)  # the form's guess; the program's own shape is a fact
        merged["input_shape"] = tuple(program_shape)
    card_dict = validate_card(ModelCard(**merged).to_dict(), f"{model_file.source} (effective card)")
    card = ModelCard(**card_dict)
    filled = tuple(sorted(k for k in filler if k not in embedded and k not in forced))
    overridden = tuple(sorted(k for k in forced if embedded.get(k, _MISSING) != forced[k]))
    identity = _digest(model_file.file_hash.encode(), canonical_json(card))
    shape = tuple(card.input_shape) if card.input_shape else program_shape
    return LoadedModel(
        model_file.module,
        card,
        identity,
        model_file.source,
        model_file.kind,
        shape,
        model_file.file_hash,
        model_file.card_origin,
        filled,
        overridden,
        model_file.framework,
    )


_MISSING = object()


def load_model(
    path: str | Path | bytes,
    *,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    card: ModelCard | dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    name: str | None = None,
    fold: str = "all",
) -> LoadedModel:
    """Read a model file and apply its card. `card` is a deliberate override (wins); `defaults` fill gaps."""
    model_file = read_model_file(path, name, arch=arch, arch_kwargs=arch_kwargs, fold=fold)
    overrides = card.to_dict() if isinstance(card, ModelCard) else card  # a whole card overrides every field
    return apply_card(model_file, defaults, overrides)


# ----------------------------------------------------------------------------- helpers


def _read_folder(files: ModelFiles, fold: str) -> ModelFile:
    """An nnU-Net v2 results folder or a MONAI bundle: the framework's own files state the card."""
    from explain.models.nnunet import is_nnunet, read_nnunet

    if is_nnunet(files):
        from explain.models.nnunet_prep import NnunetFramework

        module, card, spec, digest = read_nnunet(files, fold)
        card = validate_card(card, f"{files.name} (from its plans and dataset.json)")
        origin = "nnU-Net plans.json and dataset.json"
        return ModelFile(module, digest, files.name, "nnunet", card["input_shape"], card, origin, NnunetFramework(spec))
    from explain.models.bundle import is_bundle, read_bundle

    if is_bundle(files):
        from explain.models.bundle_prep import BundleFramework

        module, card, spec, digest = read_bundle(files)
        card = validate_card(card, f"{files.name} (from its configs and metadata)")
        origin = "the bundle's inference config and metadata.json"
        return ModelFile(module, digest, files.name, "bundle", None, card, origin, BundleFramework(spec))
    raise InputError(
        f"{files.name}: a folder must be an nnU-Net v2 results folder (plans.json, dataset.json, fold_K/"
        "checkpoint_final.pth) or a MONAI bundle (configs/inference.json or .yaml, models/model.pt)"
    )


def _digest(data: bytes, extra: str = "") -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(data)
    h.update(extra.encode())
    return h.hexdigest()


def _zip_names(data: bytes) -> list[str]:
    if not data.startswith(b"PK"):
        return []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return z.namelist()
    except (zipfile.BadZipFile, ValueError):
        return []


def _parse_card_text(text: str, source: str) -> dict[str, Any]:
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise InputError(f"{source}: the model card is not valid JSON ({type(e).__name__})") from e
    return validate_card(raw, source)


def _sidecar_card(path: Path) -> tuple[dict[str, Any] | None, str]:
    """`<stem>.json` or `MODEL.json` beside a model the user named on the command line."""
    for sidecar in (path.with_name(path.name.split(".")[0] + ".json"), path.with_name("MODEL.json")):
        if sidecar.is_file():
            if sidecar.stat().st_size > 256 * 1024:
                raise InputError(
                    f"{sidecar.name}: a model card is a few kB; this file is {mib(sidecar.stat().st_size)}"
                )
            return _parse_card_text(sidecar.read_text(errors="replace"), sidecar.name), f"sidecar {sidecar.name}"
    return None, "none"


def _read_pt2(data: bytes, name: str) -> tuple[nn.Module, tuple[int, ...], dict | None, str]:
    from explain.models.pt2 import PT2_LOCK, read_pt2

    program = read_pt2(data, name)
    card = _parse_card_text(program.card_text, f"{name} (card inside the file)") if program.card_text else None
    with PT2_LOCK:
        try:
            module = torch.export.unflatten(program.program)
        except Exception as e:  # noqa: BLE001 - unflatten raises many types on odd programs
            raise InputError(
                f"{name}: the program cannot be prepared for hooks ({type(e).__name__}: {str(e)[:160]})"
            ) from e
    return module, program.input_shape, card, "inside the file" if card else "none"


def _load_weights(data: bytes, name: str, arch: str, arch_kwargs: dict[str, Any], zip_names: list[str]) -> nn.Module:
    from explain.models.netargs import build_network

    state = _read_state_dict(data, name, zip_names)
    module = build_network(arch, arch_kwargs, name)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).splitlines()[:3])[:300]
        raise InputError(f"{name}: the weights do not fit {arch} with these arguments: {first}") from e
    return module.eval()


def _read_state_dict(data: bytes, name: str, zip_names: list[str]) -> dict[str, torch.Tensor]:
    head = data[:8]
    if not data.startswith(b"PK") and len(head) == 8 and int.from_bytes(head, "little") < 100_000_000:
        try:
            from safetensors.torch import load as load_safetensors

            return load_safetensors(data)
        except Exception:  # noqa: BLE001 - not safetensors after all; try torch.load below
            pass
    if zip_names:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            check_bytes(sum(i.file_size for i in z.infolist()), "unpacking the weights", name, max_bytes())
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError for modules, others for corrupt files
        if "Unsupported global" in str(e) or "Weights only load failed" in str(e):
            raise InputError(
                f"{name}: refused, this is a pickled Python object (probably a whole module); loading it "
                f"would run code from the file. {EXPORT_HINT}"
            ) from e
        raise InputError(f"{name}: cannot read the weights ({type(e).__name__}: {str(e)[:160]})") from e
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{name}: expected a state_dict (name -> tensor); got {type(obj).__name__}")
    return obj
