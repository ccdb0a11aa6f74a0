"""Load, validate and describe models without executing code from the file.

Two ways in:
- a `.pt2` program (`torch.export.save`), loaded with `torch.export.load` and
  `torch.export.unflatten` so that named submodules accept hooks;
- a weights file (`.pt`/`.pth` read with `weights_only=True`, or `.safetensors`)
  plus the name of a class in `monai.networks.nets` and its keyword arguments.

TorchScript (cannot be hooked) and pickled whole modules (loading them runs code)
are refused with a message saying how to export a `.pt2` instead.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from explain.errors import InputError

CARD_FILE = "model_card.json"
TASKS = ("classification", "segmentation")
INTENSITY_KINDS = ("none", "ct_window", "percentile", "zscore", "minmax")

EXPORT_HINT = (
    "Export the model instead: `ep = torch.export.export(model.eval(), (example_input,)); "
    "torch.export.save(ep, 'model.pt2')`, or save its state_dict and give the MONAI network name."
)


@dataclass
class ModelCard:
    """What the model expects and predicts; every field is optional except the task."""

    task: str = "classification"
    class_names: list[str] | None = None
    input_shape: tuple[int, ...] | None = None  # (C, D, H, W) without the batch axis
    intensity: dict[str, Any] = field(default_factory=lambda: {"kind": "none"})
    spacing: tuple[float, float, float] | None = None  # mm per model voxel, if fixed
    orientation: str | None = None  # "RAS" when the model was trained on RAS-ordered arrays
    default_layer: str | None = None
    name: str = ""
    description: str = ""

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str) -> ModelCard:
        if not isinstance(raw, dict):
            raise InputError(f"{source}: model card must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError(f"{source}: unknown model card field(s) {unknown}; known: {sorted(known)}")
        card = cls(**raw)
        if card.task not in TASKS:
            raise InputError(f"{source}: task must be one of {TASKS}; got {card.task!r}")
        if card.input_shape is not None:
            card.input_shape = tuple(int(s) for s in card.input_shape)
            if len(card.input_shape) != 4:
                raise InputError(f"{source}: input_shape must be (C, D, H, W); got {card.input_shape}")
        if card.spacing is not None:
            card.spacing = tuple(float(s) for s in card.spacing)  # type: ignore[assignment]
        kind = (card.intensity or {}).get("kind", "none")
        if kind not in INTENSITY_KINDS:
            raise InputError(f"{source}: intensity kind must be one of {INTENSITY_KINDS}; got {kind!r}")
        return card

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["input_shape"] = list(self.input_shape) if self.input_shape else None
        out["spacing"] = list(self.spacing) if self.spacing else None
        return out


@dataclass
class LoadedModel:
    """A hookable module in eval mode, its card, and a content hash of what was loaded."""

    module: nn.Module
    card: ModelCard
    content_hash: str
    source: str
    kind: str  # "pt2" | "weights"
    input_shape: tuple[int, ...] | None = None  # (C, D, H, W): from the program, else the card


def _hash_file(path: Path, extra: str = "") -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    h.update(extra.encode())
    return h.hexdigest()


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except zipfile.BadZipFile:
        return []


def load_model(
    path: str | Path,
    *,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    card: ModelCard | dict[str, Any] | None = None,
) -> LoadedModel:
    """Load a `.pt2` program, or weights plus a MONAI network name (`arch`) and kwargs.

    The card comes from, in order: the `card` argument, the program's extra file
    `model_card.json`, a sidecar `<stem>.json` or `MODEL.json` next to the file.
    Raises `InputError` for any format that would need running code to load.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    with open(path, "rb") as f:
        head = f.read(16)
    names = _zip_names(path) if head.startswith(b"PK") else []
    if any(n.endswith("/archive_format") for n in names) or any("/models/" in n for n in names):
        loaded = _load_pt2(path)
    elif any("/code/" in n for n in names) or any(n.endswith("constants.pkl") for n in names):
        raise InputError(
            f"{path.name}: TorchScript models cannot be hooked, so CAMs cannot be computed from them. {EXPORT_HINT}"
        )
    else:
        if arch is None:
            raise InputError(
                f"{path.name}: a weights file needs the MONAI network name (for example "
                "DenseNet121) and its arguments; or load a .pt2 program instead"
            )
        loaded = _load_weights(path, arch, arch_kwargs or {})
    loaded.card = _resolve_card(path, card, loaded.card)
    if loaded.input_shape is None and loaded.card.input_shape is not None:
        loaded.input_shape = loaded.card.input_shape
    if loaded.card.input_shape is None and loaded.input_shape is not None:
        loaded.card.input_shape = loaded.input_shape
    return loaded


def _resolve_card(path: Path, given: ModelCard | dict[str, Any] | None, embedded: ModelCard) -> ModelCard:
    if isinstance(given, ModelCard):
        return given
    if isinstance(given, dict):
        return ModelCard.from_dict(given, "model card")
    for sidecar in (path.with_name(path.name.split(".")[0] + ".json"), path.with_name("MODEL.json")):
        if sidecar.is_file():
            try:
                raw = json.loads(sidecar.read_text())
            except json.JSONDecodeError as e:
                raise InputError(f"{sidecar.name}: model card is not valid JSON ({e})") from e
            return ModelCard.from_dict(raw, sidecar.name)
    return embedded


def _load_pt2(path: Path) -> LoadedModel:
    extra = {CARD_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as e:  # noqa: BLE001 - deserialisation errors come in many types
        raise InputError(f"{path.name}: cannot load the .pt2 program ({type(e).__name__}: {e})") from e
    card = ModelCard()
    if extra.get(CARD_FILE):
        try:
            card = ModelCard.from_dict(json.loads(extra[CARD_FILE]), f"{path.name}:{CARD_FILE}")
        except json.JSONDecodeError as e:
            raise InputError(f"{path.name}: embedded model card is not valid JSON ({e})") from e
    user_inputs = set(program.graph_signature.user_inputs)
    shapes = [
        tuple(n.meta["val"].shape)
        for n in program.graph.nodes
        if n.op == "placeholder" and n.name in user_inputs and "val" in n.meta
    ]
    if len(shapes) != 1:
        raise InputError(f"{path.name}: the program takes {len(shapes)} inputs; exactly one image is needed")
    shape = tuple(int(s) for s in shapes[0])
    if len(shape) != 5 or shape[0] != 1:
        raise InputError(
            f"{path.name}: the program's input must be (1, C, D, H, W); got {shape}. "
            "Export with a batch of one 3D image."
        )
    module = torch.export.unflatten(program)
    return LoadedModel(module, card, _hash_file(path), path.name, "pt2", shape[1:])


def _load_weights(path: Path, arch: str, arch_kwargs: dict[str, Any]) -> LoadedModel:
    from monai.networks import nets

    if arch not in getattr(nets, "__all__", dir(nets)) or not (
        isinstance(getattr(nets, arch, None), type) and issubclass(getattr(nets, arch), nn.Module)
    ):
        raise InputError(f"{arch!r} is not a network in monai.networks.nets")
    try:
        module = getattr(nets, arch)(**arch_kwargs)
    except Exception as e:  # noqa: BLE001 - bad kwargs raise TypeError/ValueError/AssertionError
        raise InputError(f"{arch}({arch_kwargs}) cannot be built: {e}") from e
    state = _read_state_dict(path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[:3]
        raise InputError(f"{path.name}: weights do not fit {arch}({arch_kwargs}): {' '.join(first)}") from e
    module.eval()
    extra = json.dumps({"arch": arch, "kwargs": arch_kwargs}, sort_keys=True)
    return LoadedModel(module, ModelCard(), _hash_file(path, extra), path.name, "weights")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    with open(path, "rb") as f:
        head = f.read(8)
    if not head.startswith(b"PK") and len(head) == 8 and int.from_bytes(head, "little") < 100_000_000:
        try:
            from safetensors.torch import load_file

            return load_file(str(path))
        except Exception:  # noqa: BLE001 - not safetensors after all; try torch.load below
            pass
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError for modules, others for corrupt files
        if "Unsupported global" in str(e) or "Weights only load failed" in str(e):
            raise InputError(
                f"{path.name}: refused, this is a pickled Python object (probably a whole "
                f"module); loading it would run code from the file. {EXPORT_HINT}"
            ) from e
        raise InputError(f"{path.name}: cannot read weights ({type(e).__name__}: {e})") from e
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path.name}: expected a state_dict (name -> tensor); got {type(obj).__name__}")
    return obj
