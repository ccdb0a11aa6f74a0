"""nnU-Net v2 model folders (plans.json, dataset.json, fold_K/checkpoint_final.pth), read without running anything.

nnU-Net itself builds its network with `pydoc.locate` on strings from the plans and loads checkpoints with
`weights_only=False`; a hostile folder could import and run what it likes. Here:
- plans.json and dataset.json are read as JSON; every class a plan names is looked up in a fixed table (two UNets
  under both module paths, the convolution, normalisation, dropout and nonlinearity classes nnU-Net plans use),
  every argument is a plain value, and the network is sized on the meta device first;
- checkpoints are read with `torch.load(weights_only=True)` and the smallest set of extra safe globals real ones
  need (numpy scalars and dtypes of their training logs, under numpy 2 and numpy 1 names); anything else a
  checkpoint would unpickle is named and refused before loading;
- trainers, normalisation schemes, resampling functions and image readers are names in fixed tables too; a
  region-based (sigmoid) training is refused.
Preprocessing and the way back use nnU-Net's own functions (`explain.models.nnunet_prep`).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from explain.errors import InputError
from explain.models.files import ModelFiles
from explain.models.netargs import build_sized, check_value

_NETWORKS = {
    "dynamic_network_architectures.architectures.unet.PlainConvUNet": "PlainConvUNet",
    "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet": "ResidualEncoderUNet",
    # The path nnU-Net < 2.4 wrote (TotalSegmentator's plans); gone from dynamic-network-architectures 0.4.4.
    "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet": "ResidualEncoderUNet",
}
_CLASSES: dict[str, type | None] = {
    **{f"torch.nn.modules.conv.Conv{d}d": getattr(nn, f"Conv{d}d") for d in (2, 3)},
    **{f"torch.nn.Conv{d}d": getattr(nn, f"Conv{d}d") for d in (2, 3)},
    **{f"torch.nn.modules.instancenorm.InstanceNorm{d}d": getattr(nn, f"InstanceNorm{d}d") for d in (2, 3)},
    **{f"torch.nn.InstanceNorm{d}d": getattr(nn, f"InstanceNorm{d}d") for d in (2, 3)},
    **{f"torch.nn.modules.batchnorm.BatchNorm{d}d": getattr(nn, f"BatchNorm{d}d") for d in (2, 3)},
    **{f"torch.nn.BatchNorm{d}d": getattr(nn, f"BatchNorm{d}d") for d in (2, 3)},
    "torch.nn.LeakyReLU": nn.LeakyReLU,
    "torch.nn.modules.activation.LeakyReLU": nn.LeakyReLU,
    "torch.nn.ReLU": nn.ReLU,
    "torch.nn.modules.activation.ReLU": nn.ReLU,
    **{f"torch.nn.{n}": getattr(nn, n) for n in ("Dropout", "Dropout2d", "Dropout3d")},
    **{f"torch.nn.modules.dropout.{n}": getattr(nn, n) for n in ("Dropout", "Dropout2d", "Dropout3d")},
}
# The trainer only matters for how it builds the network and mirrors: these build nnU-Net's default network.
_TRAINER = re.compile(
    r"^nnUNetTrainer(?:NoMirroring|NoDeepSupervision|_onlyMirror01|_\d+epochs(?:_NoMirroring)?|"
    r"_\d+epochs_NoMirroring|NoMirroring_\d+epochs|_NoMirroring)?$"
)
NORMALISATIONS = ("ZScoreNormalization", "CTNormalization", "NoNormalization", "RescaleTo01Normalization")
RESAMPLING = ("resample_data_or_seg_to_shape",)
READERS = ("SimpleITKIO", "NibabelIO", "NibabelIOWithReorient")
_CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_best.pth")
_FOLD = re.compile(r"^fold_(\d+|all)/(checkpoint_final|checkpoint_best)\.pth$")


@dataclass(frozen=True)
class NnunetSpec:
    """What nnU-Net's preprocessing and window plan need, every value checked (no names left to resolve)."""

    configuration: str
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    spacing: tuple[float, ...]  # target spacing, transposed order
    patch_size: tuple[int, ...]
    normalisation: tuple[str, ...]  # one per channel, from NORMALISATIONS
    use_mask_for_norm: tuple[bool, ...]
    intensity: tuple[dict, ...]  # per channel: mean, std, percentile_00_5, percentile_99_5
    resample_data: dict  # kwargs of resample_data_or_seg_to_shape for images
    resample_probabilities: dict  # ... for probabilities and maps on the way back
    reader: str  # from READERS: how nnU-Net read images in training
    mirror_axes: tuple[int, ...] | None  # None: the trainer allows no mirroring
    labels: tuple[int, ...]  # label values in output channel order
    folds: tuple[str, ...]


def is_nnunet(files: ModelFiles) -> bool:
    return files.has("plans.json") and files.has("dataset.json") and any(_FOLD.match(n) for n in files.names())


class FoldEnsemble(nn.Module):
    """The networks of several folds as one: logits averaged, as nnU-Net averages folds.

    A layer of the ensemble is the same layer in every fold (`layer_members`); the engine sums its maps, which is
    the map of the averaged score since each fold contributes its share of the gradient.
    """

    def __init__(self, networks: list[nn.Module]) -> None:
        super().__init__()
        self.folds = nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([net(x) for net in self.folds]).mean(0)

    def layer_members(self, name: str) -> list[str]:
        return [f"folds.{k}.{name}" for k in range(len(self.folds))]

    def representative(self) -> nn.Module:
        return self.folds[0]


def read_nnunet(files: ModelFiles, fold: str = "all") -> tuple[nn.Module, dict, NnunetSpec, str]:
    """(network or fold ensemble, card fields, spec, content hash) of an nnU-Net folder; `fold` is K or "all"."""
    name = files.name
    plans, dataset = files.json("plans.json"), files.json("dataset.json")
    if not isinstance(plans, dict) or not isinstance(dataset, dict):
        raise InputError(f"{name}: plans.json and dataset.json must be JSON objects")
    chosen = _choose_folds(files, fold)
    checkpoints = [_load_checkpoint(files, rel) for rel in chosen]
    first = checkpoints[0]
    trainer = str(first.get("trainer_name", ""))
    if not _TRAINER.match(trainer):
        raise InputError(
            f"{name}: trainer {trainer[:60]!r} is not one camviewer reads; nnU-Net's own nnUNetTrainer family "
            "(NoMirroring, N epochs) builds the network from the plans alone"
        )
    configuration = str((first.get("init_args") or {}).get("configuration", ""))
    config = _configuration(plans, configuration, name)
    labels, class_names = _labels(dataset, name)
    channels = _channel_names(dataset, name)
    network_fn = _network_builder(config, len(channels), len(labels), name)
    networks = []
    for rel, ck in zip(chosen, checkpoints):
        net = network_fn()
        weights = ck.get("network_weights")
        if not isinstance(weights, dict):
            raise InputError(f"{name}: {rel} holds no network_weights")
        try:
            net.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            first_lines = " ".join(str(e).splitlines()[:2])[:240]
            raise InputError(f"{name}: {rel} does not fit the network its plans describe: {first_lines}") from e
        networks.append(net.eval())
    module = networks[0] if len(networks) == 1 else FoldEnsemble(networks).eval()
    spec = _spec(plans, config, configuration, labels, first, chosen, len(channels), name)
    spatial = tuple(config["patch_size"])
    card = {
        "task": "segmentation",
        "class_names": class_names,
        "channel_names": channels,
        "input_shape": (len(channels), *spatial),
        "patch_size": spatial,
        "overlap": 0.5,  # nnU-Net's step of 0.5
        "blend": "gaussian",
        "window_layout": "nnunet",
        "output": "softmax",
        # The last decoder stage: full-resolution features just before the segmentation head. Measured on the
        # trained test model, HiResCAM there peaks inside the right class in every case; at the bottleneck the
        # smaller class's peak landed outside it (docs/decisions.md).
        "default_layer": f"decoder.stages.{network_fn.stages - 2}",
        "name": str(dataset.get("name") or plans.get("dataset_name") or "nnU-Net model")[:200],
        "description": _description(dataset, plans, configuration, trainer, spec),
    }
    digest = files.digest(["plans.json", "dataset.json", *chosen])
    return module, card, spec, digest


def _choose_folds(files: ModelFiles, fold: str) -> list[str]:
    found: dict[str, str] = {}
    for rel in files.names():
        m = _FOLD.match(rel)
        if m and (m.group(1) not in found or m.group(2) == "checkpoint_final"):
            found[m.group(1)] = rel  # checkpoint_final over checkpoint_best
    folds = sorted((f for f in found if f != "all"), key=int) or sorted(found)
    if fold == "all":
        chosen = folds
    elif str(fold) in found:
        chosen = [str(fold)]
    else:
        raise InputError(f"{files.name}: has no fold {str(fold)[:10]}; folds present: {', '.join(sorted(found))}")
    if not chosen:
        raise InputError(f"{files.name}: no fold_K/checkpoint_final.pth (or checkpoint_best.pth) in the folder")
    return [found[f] for f in chosen]


def _safe_globals() -> list:
    """The globals a real nnU-Net checkpoint needs besides tensors: numpy scalars and dtypes in its logs."""
    import numpy as np

    scalar = np._core.multiarray.scalar
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType") and not n.startswith("_")]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


_ALLOWED_NAMES = re.compile(r"^numpy(\._core|\.core)\.multiarray\.scalar$|^numpy\.dtype$|^numpy\.dtypes\.\w+DType$")


def _load_checkpoint(files: ModelFiles, rel: str) -> dict:
    data = files.read(rel)
    try:
        wanted = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - not a torch zip archive at all
        raise InputError(f"{files.name}: {rel} is not a readable checkpoint ({type(e).__name__})") from e
    unexpected = [g for g in wanted if not _ALLOWED_NAMES.match(g)]
    if unexpected:
        raise InputError(
            f"{files.name}: refused, {rel} would unpickle {unexpected[0]!r}, which could run code; a checkpoint "
            "holds tensors, numbers and text"
        )
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            ck = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError and friends
        raise InputError(f"{files.name}: cannot read {rel} safely ({type(e).__name__}: {str(e)[:160]})") from e
    if not isinstance(ck, dict):
        raise InputError(f"{files.name}: {rel} is not an nnU-Net checkpoint")
    return ck


def _configuration(plans: dict, name: str, source: str) -> dict:
    """The configuration with its inheritance resolved, old (< 2.4) plans converted; nothing is imported."""
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

    configs = plans.get("configurations")
    if not isinstance(configs, dict) or name not in configs:
        raise InputError(f"{source}: the checkpoint's configuration {name[:40]!r} is not in plans.json")
    try:
        resolved = PlansManager(plans)._internal_resolve_configuration_inheritance(name)
        if resolved.get("previous_stage"):
            raise InputError(f"{source}: {name} is a cascade stage, which needs the previous stage's prediction")
        config = ConfigurationManager(resolved).configuration
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - malformed plans raise anything
        raise InputError(f"{source}: plans.json cannot be read ({type(e).__name__}: {str(e)[:160]})") from e
    patch = config.get("patch_size")
    if not isinstance(patch, list) or len(patch) != 3 or not all(isinstance(p, int) and 1 <= p <= 1024 for p in patch):
        raise InputError(f"{source}: only 3D configurations are read; {name} has patch size {str(patch)[:40]}")
    return config


def _network_builder(config: dict, channels: int, classes: int, source: str):
    arch = config.get("architecture") or {}
    cls_name = arch.get("network_class_name")
    if cls_name not in _NETWORKS:
        raise InputError(
            f"{source}: refused, the plans name network {str(cls_name)[:80]!r}; camviewer builds "
            f"{', '.join(sorted(set(_NETWORKS.values())))} only, from a fixed table"
        )
    from dynamic_network_architectures.architectures import unet

    cls = getattr(unet, _NETWORKS[cls_name])
    kwargs = dict(arch.get("arch_kwargs") or {})
    for key in arch.get("_kw_requires_import") or []:
        value = kwargs.get(key)
        if value is not None and value not in _CLASSES:
            raise InputError(
                f"{source}: refused, the plans name {str(value)[:80]!r} for {key}; not in camviewer's table"
            )
        kwargs[key] = _CLASSES.get(value) if value is not None else None
    for key, value in kwargs.items():
        if not isinstance(value, type):
            check_value("nnU-Net network", key, value, depth=0)
    final = {**kwargs, "input_channels": channels, "num_classes": classes, "deep_supervision": False}
    build = lambda: build_sized(cls, final, _NETWORKS[cls_name], source, shown=arch.get("arch_kwargs") or {})  # noqa: E731
    build.stages = int(kwargs.get("n_stages", 2))
    return build


def _labels(dataset: dict, source: str) -> tuple[tuple[int, ...], list[str]]:
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or "background" not in labels:
        raise InputError(f"{source}: dataset.json has no labels with a background")
    if any(isinstance(v, (list, tuple)) for v in labels.values()):
        raise InputError(
            f"{source}: refused, a region-based (sigmoid) training; camviewer reads nnU-Net's label trainings"
        )
    pairs = sorted((int(v), str(k)[:100]) for k, v in labels.items() if str(k) != "ignore")
    values = tuple(v for v, _ in pairs)
    if values != tuple(range(len(values))):
        raise InputError(f"{source}: the labels of dataset.json must be 0..K-1; got {list(values)[:20]}")
    return values, [n for _, n in pairs]


def _channel_names(dataset: dict, source: str) -> list[str]:
    names = dataset.get("channel_names") or dataset.get("modality")
    if not isinstance(names, dict) or not names:
        raise InputError(f"{source}: dataset.json has no channel_names")
    return [str(names[k])[:100] for k in sorted(names, key=lambda k: int(k))]


def _spec(plans, config, configuration, labels, checkpoint, chosen, channels, source) -> NnunetSpec:
    schemes = tuple(config.get("normalization_schemes") or ())
    unknown = [s for s in schemes if s not in NORMALISATIONS]
    if len(schemes) != channels or unknown:
        raise InputError(
            f"{source}: refused, normalisation {str(unknown[:1] or schemes)[:60]}; camviewer applies "
            f"{', '.join(NORMALISATIONS)}, one per channel"
        )
    for key in ("resampling_fn_data", "resampling_fn_probabilities"):
        if config.get(key) not in RESAMPLING:
            raise InputError(f"{source}: refused, {key} {str(config.get(key))[:60]!r} is not in camviewer's table")
    reader = plans.get("image_reader_writer", "SimpleITKIO")
    if reader not in READERS:
        raise InputError(f"{source}: images read with {str(reader)[:40]!r} are not supported; {', '.join(READERS)} are")
    props = plans.get("foreground_intensity_properties_per_channel") or {}
    intensity = tuple(
        {k: float(v) for k, v in (props.get(str(c)) or {}).items() if isinstance(v, (int, float))}
        for c in range(channels)
    )
    mirror = checkpoint.get("inference_allowed_mirroring_axes")
    transpose = tuple(int(t) for t in plans.get("transpose_forward", (0, 1, 2)))
    if sorted(transpose) != [0, 1, 2]:
        raise InputError(f"{source}: transpose_forward {list(transpose)} is not a permutation of the three axes")
    return NnunetSpec(
        configuration=configuration,
        transpose_forward=transpose,
        transpose_backward=tuple(int(t) for t in plans.get("transpose_backward", (0, 1, 2))),
        spacing=tuple(float(s) for s in config["spacing"]),
        patch_size=tuple(config["patch_size"]),
        normalisation=schemes,
        use_mask_for_norm=tuple(bool(u) for u in config.get("use_mask_for_norm") or [False] * channels),
        intensity=intensity,
        resample_data=_plain_kwargs(config.get("resampling_fn_data_kwargs"), source),
        resample_probabilities=_plain_kwargs(config.get("resampling_fn_probabilities_kwargs"), source),
        reader=reader,
        mirror_axes=tuple(int(a) for a in mirror) if mirror is not None else None,
        labels=labels,
        folds=tuple(c.split("/")[0] for c in chosen),
    )


def _plain_kwargs(value: Any, source: str) -> dict:
    allowed = {"is_seg", "order", "order_z", "force_separate_z", "separate_z_anisotropy_threshold"}
    if not isinstance(value, dict) or set(value) - allowed:
        raise InputError(f"{source}: resampling arguments {str(value)[:80]} are not nnU-Net's")
    for key, v in value.items():
        check_value("nnU-Net resampling", key, v, depth=1)
    return dict(value)


def _description(dataset: dict, plans: dict, configuration: str, trainer: str, spec: NnunetSpec) -> str:
    text = str(dataset.get("description") or "").strip()
    facts = (
        f"nnU-Net v2 {configuration}, {trainer}, fold(s) {', '.join(spec.folds)}; target spacing "
        f"{' x '.join(f'{s:g}' for s in spec.spacing)} mm, patch {' x '.join(map(str, spec.patch_size))}; "
        f"mirroring {'allowed' if spec.mirror_axes is not None else 'off'}."
    )
    return f"{text[:1500]} {facts}".strip()
