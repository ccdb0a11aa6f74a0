"""MONAI Model Zoo bundles (configs/inference.json|yaml, configs/metadata.json, models/model.pt), read as data.

Nothing of the bundle runs: its config is resolved by `explain.models.bundle_config` (no `eval`, no imports), its
network is an allow-listed `monai.networks.nets` class with plain arguments (`explain.models.netargs`), its
weights a state dict read with `weights_only=True` from the bundle's own files, and its preprocessing a fixed map
from the dictionary transforms zoo configs use onto MONAI's own array transforms, each argument checked against
the class's signature. The inferer gives the windows (SlidingWindowInferer: roi, overlap, mode) or one pass.
A bundle that needs its own code (`scripts/`, a `_target_` outside the tables, a `$` expression beyond the safe
subset) or ships only TorchScript is refused in one sentence that says why.
"""

from __future__ import annotations

import inspect
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from explain.errors import InputError
from explain.models.bundle_config import BundleConfig, read_config
from explain.models.files import ModelFiles
from explain.models.netargs import ALLOWED_NETWORKS, build_network

CONFIGS = ("configs/inference.json", "configs/inference.yaml", "configs/inference.yml")
# Dictionary transform -> MONAI array transform; None: nothing to do on an image camviewer has already loaded.
TRANSFORMS: dict[str, str | None] = {
    "LoadImaged": None,
    "LoadImage": None,
    "EnsureChannelFirstd": None,
    "EnsureChannelFirst": None,
    "EnsureTyped": None,
    "EnsureType": None,
    "ToTensord": None,
    "CastToTyped": "CastToType",
    "Orientationd": "Orientation",
    "Spacingd": "Spacing",
    "ScaleIntensityRanged": "ScaleIntensityRange",
    "ScaleIntensityRangePercentilesd": "ScaleIntensityRangePercentiles",
    "NormalizeIntensityd": "NormalizeIntensity",
    "ScaleIntensityd": "ScaleIntensity",
    "CropForegroundd": "CropForeground",
    "Resized": "Resize",
}
_DICT_ONLY = {"keys", "allow_missing_keys", "meta_keys", "meta_key_postfix", "source_key", "image_only", "reader",
              "ensure_channel_first", "simple_keys", "prune_meta_pattern", "prune_meta_sep", "channel_dim",
              "start_coord_key", "end_coord_key", "allow_smaller", "track_meta", "data_type", "device"}  # fmt: skip
_DTYPES = {v: torch.float32 for v in ("float32", "$torch.float32", "$np.float32", "$numpy.float32", "torch.float32")}
_INFERERS = ("SlidingWindowInferer", "SimpleInferer")


@dataclass(frozen=True)
class BundleSpec:
    """The checked preprocessing of a bundle: (MONAI array transform, arguments) in order, and its output."""

    transforms: tuple[tuple[str, dict], ...]
    output: str  # "softmax" | "sigmoid" | "none" (classifiers: softmax)
    argmax_before_invert: bool  # the bundle takes the argmax before inverting (nearest), as wholeBody does


def is_bundle(files: ModelFiles) -> bool:
    return any(files.has(c) for c in CONFIGS)


def read_bundle(files: ModelFiles) -> tuple[torch.nn.Module, dict, BundleSpec, str]:
    """(network with its weights, card fields, spec, content hash) of a MONAI bundle."""
    name = files.name
    rel = next(c for c in CONFIGS if files.has(c))
    config = BundleConfig(read_config(files, rel), files, rel)
    meta = read_config(files, "configs/metadata.json") if files.has("configs/metadata.json") else {}
    if any(n.startswith("scripts/") for n in files.names()) and _needs_scripts(config):
        raise InputError(f"{name}: refused, the bundle needs its own code (scripts/), which camviewer never runs")
    network, arch, kwargs = _network(config, name)
    weights_rel = _weights_file(config, files)
    state = _state_dict(files, weights_rel)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).splitlines()[:2])[:240]
        raise InputError(f"{name}: {weights_rel} does not fit {arch} with the bundle's arguments: {first}") from e
    transforms = _transforms(config, name)
    output, argmax_first = _output(config, name)
    task = "classification" if _is_classifier(config, meta) else "segmentation"
    dims = int(kwargs.get("spatial_dims", 3))
    channels = int(kwargs.get("in_channels", 1))
    classes = int(kwargs.get("out_channels", kwargs.get("num_classes", 2)))
    card: dict[str, Any] = {
        "task": task,
        "class_names": _class_names(meta, config, classes),
        "channel_names": _channel_names(meta, channels),
        "output": "sigmoid" if output == "sigmoid" else "softmax",
        "name": str(meta.get("name") or name)[:200],
        "description": str(meta.get("description") or "")[:1800] + f" (MONAI bundle {meta.get('version', '')})",
    }
    patch, window = _inferer(config, name, dims)
    card["input_shape"] = (channels, *(patch or _fixed_size(transforms) or (96,) * dims))
    if task == "segmentation" and patch:
        card.update(patch_size=patch, **window)
    digest = files.digest([rel, weights_rel, *(["configs/metadata.json"] if meta else [])])
    return network.eval(), card, BundleSpec(tuple(transforms), output, argmax_first), digest


def _needs_scripts(config: BundleConfig) -> bool:
    text = repr(config.doc)
    return "scripts." in text or "scripts/" in text


def _network(config: BundleConfig, name: str):
    if not config.has("network_def"):
        raise InputError(f"{name}: the bundle's config has no network_def")
    raw = config.raw("network_def")
    target = raw.get("_target_", "") if isinstance(raw, dict) else ""
    arch = str(target).removeprefix("monai.networks.nets.")
    if arch not in ALLOWED_NETWORKS:
        raise InputError(
            f"{name}: refused, the bundle's network is {str(target)[:80]!r}; camviewer builds allow-listed MONAI "
            "networks only (a network from the bundle's own code would have to run)"
        )
    kwargs = {k: v for k, v in config.get("network_def").items() if k != "_target_"}
    if arch == "SwinUNETR":
        kwargs.pop("img_size", None)  # removed from MONAI's class; the bundle's value changes nothing
    return build_network(arch, kwargs, name), arch, kwargs


def _weights_file(config: BundleConfig, files: ModelFiles) -> str:
    """The state dict the bundle's CheckpointLoader names, looked up among the bundle's own files only."""
    wanted = []
    for key in ("checkpointloader", "handlers"):
        if not config.has(key):
            continue
        raw = config.raw(key)
        for item in raw if isinstance(raw, list) else [raw]:
            if isinstance(item, dict) and str(item.get("_target_", "")).endswith("CheckpointLoader"):
                wanted.append(config.resolve(item.get("load_path")))
    for path in [*wanted, "./models/model.pt"]:
        rel = str(path).replace("\\", "/")
        while rel.startswith("./") or rel.startswith("/"):
            rel = rel[2:] if rel.startswith("./") else rel[1:]
        if ".." not in rel.split("/") and files.has(rel):
            return rel
    if files.has("models/model.ts"):
        raise InputError(
            f"{files.name}: the bundle ships only TorchScript (models/model.ts), which cannot be hooked; add the state "
            "dict (models/model.pt)"
        )
    raise InputError(f"{files.name}: the bundle has no weights (models/model.pt)")


def _state_dict(files: ModelFiles, rel: str) -> dict:
    try:
        obj = torch.load(io.BytesIO(files.read(rel)), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError for objects, others for corrupt files
        raise InputError(f"{files.name}: refused, {rel} is not a plain state dict ({type(e).__name__})") from e
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{files.name}: {rel} is not a state dict")
    return obj


def _transforms(config: BundleConfig, name: str) -> list[tuple[str, dict]]:
    if not config.has("preprocessing"):
        return []
    raw = config.raw("preprocessing")
    items = raw.get("transforms", []) if isinstance(raw, dict) else raw
    if isinstance(items, str):
        items = config.resolve(items)
    out = []
    import monai.transforms as mt

    for item in items if isinstance(items, list) else []:
        target = str(item.get("_target_", "") if isinstance(item, dict) else item).removeprefix("monai.transforms.")
        if target not in TRANSFORMS:
            raise InputError(
                f"{name}: refused, the bundle's preprocessing uses {target[:80]!r}, which camviewer does not map onto "
                f"MONAI's array transforms ({', '.join(sorted(TRANSFORMS))})"
            )
        array_name = TRANSFORMS[target]
        if array_name is None:
            continue
        args = {}
        for key, value in item.items():
            if key == "_target_" or key in _DICT_ONLY:
                continue
            args[key] = _DTYPES.get(value, value) if key == "dtype" else config.resolve(value)
        allowed = _parameters(getattr(mt, array_name))
        unknown = sorted(set(args) - allowed)
        if unknown:
            raise InputError(f"{name}: {target} has argument(s) {unknown[:3]} that {array_name} does not take")
        out.append((array_name, args))
    return out


def _parameters(cls) -> set[str]:
    """A transform's argument names, following **kwargs up its classes (as MONAI passes them on)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        names |= {n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return names


def _output(config: BundleConfig, name: str) -> tuple[str, bool]:
    """The output nonlinearity, and whether the argmax comes before the inversion, as the bundle post-processes."""
    if not config.has("postprocessing"):
        return "softmax", False
    raw = config.raw("postprocessing")
    items = raw.get("transforms", []) if isinstance(raw, dict) else raw
    output, seen_argmax, argmax_first = "softmax", False, False
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        target = str(item.get("_target_", "")).removeprefix("monai.transforms.")
        if target in ("Activationsd", "Activations"):
            output = "sigmoid" if config.resolve(item.get("sigmoid", False)) is True else output
        elif target in ("AsDiscreted", "AsDiscrete") and config.resolve(item.get("argmax", False)) is True:
            seen_argmax = True
        elif target in ("Invertd", "Invert") and seen_argmax:
            argmax_first = True
    return output, argmax_first


def _inferer(config: BundleConfig, name: str, dims: int) -> tuple[tuple[int, ...] | None, dict]:
    if not config.has("inferer"):
        return None, {}
    raw = config.raw("inferer")
    target = str(raw.get("_target_", "") if isinstance(raw, dict) else "").removeprefix("monai.inferers.")
    if target not in _INFERERS:
        raise InputError(f"{name}: refused, the bundle's inferer {target[:60]!r} is not one camviewer reproduces")
    if target == "SimpleInferer":
        return None, {}
    roi = config.resolve(raw.get("roi_size"))
    roi = [int(roi)] * dims if isinstance(roi, int) else [int(r) for r in roi]
    overlap = config.resolve(raw.get("overlap", 0.25))
    mode = config.resolve(raw.get("mode", "constant"))
    if isinstance(overlap, (list, tuple)) or mode not in ("constant", "gaussian"):
        raise InputError(f"{name}: the inferer's overlap {overlap!r} or mode {mode!r} is not one camviewer reproduces")
    return tuple(roi), {"overlap": float(overlap), "blend": mode, "window_layout": "monai"}


def _fixed_size(transforms: list[tuple[str, dict]]) -> tuple[int, ...] | None:
    for name, args in transforms:
        if name == "Resize" and isinstance(args.get("spatial_size"), (list, tuple)):
            return tuple(int(s) for s in args["spatial_size"])
    return None


def _is_classifier(config: BundleConfig, meta: dict) -> bool:
    outputs = ((meta.get("network_data_format") or {}).get("outputs") or {}).get("pred") or {}
    kind = str(outputs.get("type", "")).lower()
    return kind in ("probabilities", "probability", "class", "classification")


def _class_names(meta: dict, config: BundleConfig, classes: int) -> list[str] | None:
    """`channel_def` of the metadata when it names one channel per output; else a `labels` entry of the config."""
    pred = ((meta.get("network_data_format") or {}).get("outputs") or {}).get("pred") or {}
    channel_def = pred.get("channel_def")
    if isinstance(channel_def, dict) and len(channel_def) == classes:
        try:
            return [str(channel_def[k])[:100] for k in sorted(channel_def, key=lambda k: int(k))]
        except ValueError:
            pass
    if config.has("labels"):
        labels = config.get("labels")
        if isinstance(labels, dict) and len(labels) == classes:
            return [str(k)[:100] for k, _ in sorted(labels.items(), key=lambda kv: kv[1])]
    return None


def _channel_names(meta: dict, channels: int) -> list[str] | None:
    image = ((meta.get("network_data_format") or {}).get("inputs") or {}).get("image") or {}
    channel_def = image.get("channel_def")
    if isinstance(channel_def, dict) and len(channel_def) == channels:
        try:
            return [str(channel_def[k])[:100] for k in sorted(channel_def, key=lambda k: int(k))]
        except ValueError:
            return None
    return None


def numpy_affine(value: Any) -> np.ndarray:
    return np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
