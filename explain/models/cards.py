"""The model card: what a model expects and predicts, validated field by field.

A card is untrusted input (it comes inside an uploaded file, beside it, or from a
form), so every field is checked for type, range and size, and every bad field
gets its own sentence. `canonical_json` is the card's identity: the same effective
card always gives the same text, so it can be part of a cache key.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from explain.errors import InputError

TASKS = ("classification", "segmentation")
INTENSITY_KINDS = ("none", "ct_window", "percentile", "zscore", "minmax")
ORIENTATIONS = ("RAS",)
MAX_SIDE = 4096
MAX_CHANNELS = 64
MAX_CLASSES = 1000
_LAYER_NAME = re.compile(r"^[A-Za-z0-9_.]{1,300}$")
_INTENSITY_FIELDS = {
    "none": set(),
    "zscore": set(),
    "minmax": set(),
    "ct_window": {"level", "width"},
    "percentile": {"lower", "upper"},
}


@dataclass
class ModelCard:
    """What the model expects and predicts; every field is optional except the task."""

    task: str = "classification"
    class_names: list[str] | None = None
    input_shape: tuple[int, ...] | None = None  # (C, D, H, W) or (C, H, W), without the batch axis
    intensity: dict[str, Any] = field(default_factory=lambda: {"kind": "none"})
    spacing: tuple[float, ...] | None = None  # mm per model voxel, if fixed
    orientation: str | None = None  # "RAS" when the model was trained on RAS-ordered arrays
    default_layer: str | None = None
    name: str = ""
    description: str = ""
    # Trained on patches: maps and predictions over the whole volume at `spacing`, window by window.
    patch_size: tuple[int, ...] | None = None  # (D, H, W) or (H, W)
    overlap: float = 0.5  # of one window with the next (nnU-Net: 1 - its step of 0.5; MONAI's default is 0.25)
    blend: str = "gaussian"  # how overlapping windows are weighted: "gaussian" or "constant"
    window_layout: str = "nnunet"  # where windows go: "nnunet" or "monai" (explain.cam.windows)
    channel_names: list[str] | None = None  # the input channels in the model's order (T1c, T1, T2, FLAIR)
    output: str = "softmax"  # "softmax" (one label per voxel) or "sigmoid" (one independent map per class)
    # Classes whose score is a constant of the model (a "no lesion" reference logit): they have no map.
    no_map_classes: list[str] | None = None
    # What the model was trained on: a DICOM modality code first ("MR T1", "CT", "CR"), checked against the image.
    modality: str | None = None

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> ModelCard:
        """Validate a card (dict) and build it; `InputError` lists one sentence per bad field."""
        return cls(**validate_card(raw, source))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["input_shape"] = list(self.input_shape) if self.input_shape else None
        out["spacing"] = list(self.spacing) if self.spacing else None
        out["patch_size"] = list(self.patch_size) if self.patch_size else None
        out["intensity"] = dict(self.intensity or {"kind": "none"})
        return out


CARD_FIELDS = tuple(f.name for f in fields(ModelCard))


def canonical_json(card: ModelCard) -> str:
    """The card as sorted, compact JSON: equal cards give equal text (part of a model's identity)."""
    return json.dumps(card.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def validate_card(raw: Any, source: str) -> dict[str, Any]:
    """Check a card dict; return only the fields it gives, normalised (tuples, floats, ints)."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: a model card must be a JSON object; got {type(raw).__name__}")
    problems: list[str] = []
    out: dict[str, Any] = {}
    unknown = sorted(str(k)[:40] for k in raw if k not in CARD_FIELDS)
    if unknown:
        problems.append(f"unknown field(s) {unknown}; known: {list(CARD_FIELDS)}")
    for key in CARD_FIELDS:
        if key not in raw:
            continue
        try:
            value = _CHECKS[key](raw[key])
        except _Bad as e:
            problems.append(f"`{key}` {e}")
            continue
        out[key] = value
    if not problems:
        problems.extend(_cross_checks(out))
    if problems:
        raise InputError(f"{source}: the model card is not valid: " + "; ".join(problems) + ".")
    return out


class _Bad(ValueError):
    pass


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise _Bad(f"must be text; got {type(value).__name__}")
    if len(value) > limit:
        raise _Bad(f"is {len(value)} characters; at most {limit}")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise _Bad("contains control characters")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Bad(f"{what} must be a finite number; got {str(value)[:30]!r}")
    return float(value)


def _task(value: Any) -> str:
    if value not in TASKS:
        raise _Bad(f"must be one of {TASKS}; got {str(value)[:40]!r}")
    return value


def _class_names(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CLASSES:
        raise _Bad(f"must be a list of 1 to {MAX_CLASSES} names")
    return [_text(v, 100) for v in value]


def _input_shape(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) not in (3, 4):
        raise _Bad("must be (C, H, W) or (C, D, H, W)")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise _Bad(f"must hold whole numbers; got {str(list(value))[:60]}")
    if not 1 <= value[0] <= MAX_CHANNELS or not all(1 <= v <= MAX_SIDE for v in value[1:]):
        raise _Bad(f"must have 1 to {MAX_CHANNELS} channels and sides of 1 to {MAX_SIDE}")
    return tuple(int(v) for v in value)


def _intensity(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"must be an object like {{'kind': 'zscore'}}; got {type(value).__name__}")
    kind = value.get("kind", "none")
    if kind not in INTENSITY_KINDS:
        raise _Bad(f"kind must be one of {INTENSITY_KINDS}; got {str(kind)[:40]!r}")
    extra = set(value) - {"kind"} - _INTENSITY_FIELDS[kind]
    if extra:
        raise _Bad(f"{kind!r} takes no field(s) {sorted(str(e)[:30] for e in extra)}")
    out: dict[str, Any] = {"kind": kind}
    if kind == "ct_window":
        level = _number(value.get("level", 40.0), "level")
        width = _number(value.get("width", 400.0), "width")
        if not -10_000 <= level <= 10_000 or not 0 < width <= 100_000:
            raise _Bad("needs a level in -10000..10000 and a width above 0 (HU)")
        out.update(level=level, width=width)
    elif kind == "percentile":
        lower = _number(value.get("lower", 0.5), "lower")
        upper = _number(value.get("upper", 99.5), "upper")
        if not 0 <= lower < upper <= 100:
            raise _Bad("needs 0 <= lower < upper <= 100")
        out.update(lower=lower, upper=upper)
    return out


def _spacing(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 3):
        raise _Bad("must be 2 or 3 numbers (mm per model voxel)")
    out = tuple(_number(v, "each value") for v in value)
    if not all(0 < v <= 100 for v in out):
        raise _Bad("must be above 0 and at most 100 mm")
    return out


def _orientation(value: Any) -> str | None:
    if value is None:
        return None
    if value not in ORIENTATIONS:
        raise _Bad(f"must be 'RAS' or null; got {str(value)[:20]!r}")
    return value


def _default_layer(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _LAYER_NAME.match(value):
        raise _Bad("must be a dotted module name like 'features.denseblock4'")
    return value


def _patch_size(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 3):
        raise _Bad("must be 2 or 3 whole numbers (voxels of one window)")
    if any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIDE for v in value):
        raise _Bad(f"must hold whole numbers from 1 to {MAX_SIDE}")
    return tuple(int(v) for v in value)


def _overlap(value: Any) -> float:
    value = _number(value, "overlap")
    if not 0 <= value < 1:
        raise _Bad("must be at least 0 and below 1")
    return value


def _choice(options: tuple[str, ...]):
    def check(value: Any) -> str:
        if value not in options:
            raise _Bad(f"must be one of {options}; got {str(value)[:30]!r}")
        return value

    return check


_CHECKS = {
    "task": _task,
    "class_names": _class_names,
    "input_shape": _input_shape,
    "intensity": _intensity,
    "spacing": _spacing,
    "orientation": _orientation,
    "default_layer": _default_layer,
    "name": lambda v: _text(v, 200),
    "description": lambda v: _text(v, 2000),
    "patch_size": _patch_size,
    "overlap": _overlap,
    "blend": _choice(("gaussian", "constant")),
    "window_layout": _choice(("nnunet", "monai")),
    "channel_names": _class_names,
    "output": _choice(("softmax", "sigmoid")),
    "no_map_classes": _class_names,
    "modality": lambda v: _modality(v),
}


# DICOM modality codes the domain check knows (explain.domain); the card's modality must start with one.
MODALITIES = ("CT", "MR", "PT", "NM", "US", "CR", "DX", "MG", "XA", "RF", "OT")


def _modality(value: Any) -> str | None:
    if value is None:
        return None
    text = _text(value, 60).strip()
    if text.split(" ")[0].upper() not in MODALITIES:
        raise _Bad(f"must start with a DICOM modality code {MODALITIES}, like 'MR T1' or 'CT'; got {text[:30]!r}")
    return text


def _cross_checks(card: dict[str, Any]) -> list[str]:
    problems = []
    shape, spacing = card.get("input_shape"), card.get("spacing")
    if shape and spacing and len(spacing) != len(shape) - 1:
        problems.append(f"`spacing` has {len(spacing)} values but the input has {len(shape) - 1} spatial axes")
    if shape and len(shape) == 3 and card.get("orientation"):
        problems.append("`orientation` applies to 3D models only")
    names = card.get("channel_names")
    if names and shape and len(names) != shape[0]:
        problems.append(f"`channel_names` has {len(names)} names but the input has {shape[0]} channels")
    no_map, classes = card.get("no_map_classes"), card.get("class_names")
    if no_map and classes and not set(no_map) <= set(classes):
        problems.append(
            f"`no_map_classes` names classes that are not in `class_names`: {sorted(set(no_map) - set(classes))[:5]}"
        )
    patch = card.get("patch_size")
    if patch and shape and len(patch) != len(shape) - 1:
        problems.append(f"`patch_size` has {len(patch)} values but the input has {len(shape) - 1} spatial axes")
    if patch and card.get("task") == "classification":
        problems.append("`patch_size` applies to segmentation models only (a classifier sees its whole input)")
    # Memory is not guessed here: every run, layer listing included, is measured before it allocates anything
    # (explain.cam.cost), at the size it will really run at.
    return problems


# The preprocessing form of the page: its choices and the card fields they mean.
FORM_INTENSITIES = {
    "MR percentile 0.5-99.5": {"kind": "percentile", "lower": 0.5, "upper": 99.5},
    "CT soft tissue": {"kind": "ct_window", "level": 40, "width": 400},
    "z-score": {"kind": "zscore"},
    "none": {"kind": "none"},
}


def form_card(intensity: str, shape_text: str, task: str, program_shape: tuple[int, ...] | None) -> dict[str, Any]:
    """The card a form describes. A program's own input shape is a fact the form does not restate."""
    if intensity not in FORM_INTENSITIES:
        raise InputError(f"unknown intensity choice {intensity[:40]!r}")
    card: dict[str, Any] = {"task": task, "intensity": dict(FORM_INTENSITIES[intensity])}
    if program_shape is not None:
        spatial = len(program_shape) - 1
    else:
        parts = [s.strip() for s in shape_text.replace("x", ",").split(",") if s.strip()]
        if not parts or not all(p.isdigit() and len(p) < 6 for p in parts):
            raise InputError(f"the input shape {shape_text[:40]!r} must be whole numbers, like 1, 96, 96, 96")
        card["input_shape"] = [int(p) for p in parts]
        spatial = len(parts) - 1
    if spatial == 3:
        card["orientation"] = "RAS"
    return card
