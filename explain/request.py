"""One request object: what to compute, fully resolved, and the key it is cached under.

The app, the command line, the disk cache and batch runs all go through here:

    request = make_request(model, volume, method="gradcam", target=1)
    explanation, cached = compute(request, model, volume, cache=cache)

A `CamRequest` holds identities and choices only: the volume's content hash, the
model's identity (file + effective card, see `explain.models.load`), the method, the
resolved layers (never "default"), the targets, block/head and a region's hash.
Two requests that would give the same maps have the same key; anything that
changes a map changes the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from explain import __version__
from explain.cam.engine import Cancel, MapSpec, Progress, run
from explain.cam.layers import default_layer_for, model_layers
from explain.cam.methods import ALL_METHODS
from explain.cam.results import CamResult, Explanation
from explain.errors import InputError
from explain.io.volume import Volume, as_volume
from explain.models.loaded import LoadedModel, check_fit
from explain.policy import attention_blocks, is_attention


@dataclass(frozen=True)
class CamRequest:
    """Everything that determines a map, as plain values."""

    volume: str
    model: str
    method: str
    layers: tuple[str, ...]
    targets: tuple[int, ...] | str | None  # class indices, "all", or None for the predicted class
    block: int | None = None
    head: int | None = None
    region: str | None = None  # content hash of a caller's region mask (segmentation), if any

    def key(self) -> str:
        """A stable hex key: equal for equal requests, different when anything that changes a map differs."""
        parts = {**asdict(self), "engine": __version__}
        text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def spec(self) -> MapSpec:
        """What the engine computes for this request."""
        return MapSpec(self.method, self.layers, self.targets, self.block, self.head)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["layers"] = list(self.layers)
        out["targets"] = list(self.targets) if isinstance(self.targets, tuple) else self.targets
        return out


def region_hash(region: np.ndarray | None) -> str | None:
    if region is None:
        return None
    mask = np.ascontiguousarray(np.asarray(region).astype(bool))
    h = hashlib.blake2b(str(mask.shape).encode(), digest_size=16)
    h.update(np.packbits(mask).tobytes())
    return h.hexdigest()


def _targets(target: int | str | Sequence[int] | None) -> tuple[int, ...] | str | None:
    if target is None or target == "all":
        return target
    if isinstance(target, str):
        if target.isdigit():
            return (int(target),)
        raise InputError(f"target must be a class index or 'all'; got {target[:30]!r}")
    if isinstance(target, (int, np.integer)):
        return (int(target),)
    out = tuple(int(t) for t in target)
    if not out:
        raise InputError("no target class was given")
    return out


def make_request(
    model: LoadedModel,
    volume: Volume,
    method: str = "gradcam",
    layers: Sequence[str] | str | None = None,
    target: int | str | Sequence[int] | None = None,
    *,
    block: int | None = None,
    head: int | None = None,
    region: np.ndarray | None = None,
    device: str = "auto",
) -> CamRequest:
    """Resolve defaults (layer, block) with the same policy everywhere, and build the request."""
    if method not in ALL_METHODS:
        raise InputError(f"unknown method {str(method)[:40]!r}; choose one of {', '.join(ALL_METHODS)}")
    check_fit(model, volume.ndim, volume.source, volume.n_channels)
    if is_attention(method):
        resolved: tuple[str, ...] = ()
        if method == "vit-attention":
            infos, _ = model_layers(model, device)
            block = attention_blocks(infos) - 1 if block is None else int(block)
        else:
            block = None  # rollout uses every block
    else:
        names = [layers] if isinstance(layers, str) else list(layers or [])
        if not names:
            infos, _ = model_layers(model, device)
            names = [default_layer_for(model, infos)]
        resolved = tuple(names)
        block = head = None  # gradient methods ignore them: they must not split the cache
    return CamRequest(
        volume.content_hash,
        model.identity,
        method,
        resolved,
        _targets(target),
        block,
        head if method == "vit-attention" else None,
        region_hash(region),
    )


def compute(
    request: CamRequest,
    model: LoadedModel,
    volume: Volume,
    *,
    cache=None,
    region: np.ndarray | None = None,
    device: str = "auto",
    progress: Progress = None,
    on_wait: Callable[[], None] | None = None,
    cancel: Cancel = None,
) -> tuple[Explanation, bool]:
    """The cached explanation for `request`, or a fresh one (stored in `cache`); returns (explanation, was_cached)."""
    if request.volume != volume.content_hash or request.model != model.identity:
        raise ValueError("the request was made for another volume or model")
    if request.region != region_hash(region):
        raise ValueError("the request was made for another region")
    key = request.key()
    if cache is not None:
        found = cache.get(key)
        if found is not None:
            return found, True
    explanation = run(
        request.spec(), model, volume, region=region, device=device, progress=progress, on_wait=on_wait, cancel=cancel
    )
    if cache is not None:
        cache.put(key, explanation)
    return explanation, False


def chosen(request: CamRequest, explanation: Explanation) -> CamResult:
    """The map a request asks for first: its first layer (attention maps have none) and its first target."""
    target = request.targets[0] if isinstance(request.targets, tuple) else explanation.predicted
    return explanation.get(request.layers[0] if request.layers else None, target)


def explain(
    model: LoadedModel,
    volume: Volume | np.ndarray,
    method: str = "gradcam",
    layers: Sequence[str] | str | None = None,
    target: int | str | Sequence[int] | None = None,
    device: str = "auto",
    region: np.ndarray | None = None,
    head: int | None = None,
    block: int | None = None,
    progress: Progress = None,
    on_wait: Callable[[], None] | None = None,
    cancel: Cancel = None,
) -> Explanation:
    """Maps for every (layer, target) pair in one forward pass, defaults resolved as everywhere (uncached).

    - method: one of `explain.cam.methods.ALL_METHODS`.
    - layers: dotted module names (default: the card's or the engine's choice).
      Attention methods use `block` (vit-attention; default the last) and `head`
      (default: mean over heads) instead.
    - target: a class index, a list, 'all', or None for the predicted class.
    - region: segmentation only; a mask on the image's (or the model's) grid.
    - progress, cancel: as `explain.cam.engine.run` takes them (stages, windows done; a cancel between them).
    """
    volume = as_volume(volume)
    request = make_request(model, volume, method, layers, target, block=block, head=head, region=region, device=device)
    explanation, _ = compute(
        request, model, volume, region=region, device=device, progress=progress, on_wait=on_wait, cancel=cancel
    )
    return explanation
