"""Build a MONAI network from a user's name and arguments, safely.

The name and arguments come from a form or a command line, so:
- only networks on an allow-list can be built (some MONAI classes download
  weights, or load other libraries' models);
- arguments are plain values (ints, floats, bools, short names, and short lists,
  tuples or dicts of those) with numeric bounds, and any argument that names a
  URL, a path or a download is refused;
- the network is first built on the `meta` device, which allocates nothing, so its
  size is checked against the memory budget before any real allocation;
- the real build runs inside `no_network()`, which makes any attempt to reach
  the network fail, should a MONAI constructor try anyway.
"""

from __future__ import annotations

import math
import re
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from explain.errors import InputError
from explain.limits import check_bytes

ALLOWED_NETWORKS = (
    "AttentionUnet",
    "BasicUNet",
    "BasicUNetPlusPlus",
    "Classifier",
    "DenseNet",
    "DenseNet121",
    "DenseNet169",
    "DenseNet201",
    "DenseNet264",
    "DynUNet",
    "EfficientNetBN",
    "HighResNet",
    "ResNet",
    "SENet154",
    "SEResNet50",
    "SEResNet101",
    "SEResNet152",
    "SEResNext50",
    "SEResNext101",
    "SegResNet",
    "SegResNetDS",
    "SwinUNETR",
    "UNETR",
    "UNet",
    "VNet",
    "ViT",
)
# Constructors whose defaults would download weights; we pass the safe value ourselves.
_FORCED = {"EfficientNetBN": {"pretrained": False}}
_REFUSED_NAME = re.compile(r"(^pretrain|url$|path$|^path|filename|download|repo|hub|cache_dir|^weights$)", re.I)
_PLAIN_TEXT = re.compile(r"^[A-Za-z0-9_.\-]{0,64}$")
MAX_INT = 100_000
MAX_FLOAT = 1e6
MAX_ITEMS = 32


def check_arch_kwargs(arch: str, kwargs: Any) -> dict[str, Any]:
    """The network name and its arguments, checked; `InputError` names the first bad argument."""
    if not isinstance(arch, str) or arch not in ALLOWED_NETWORKS:
        shown = str(arch)[:60]
        raise InputError(f"network {shown!r} is not one camviewer builds; choose one of {', '.join(ALLOWED_NETWORKS)}")
    if not isinstance(kwargs, dict):
        raise InputError(f"{arch}: the arguments must be a JSON object; got {type(kwargs).__name__}")
    if len(kwargs) > 64:
        raise InputError(f"{arch}: {len(kwargs)} arguments is more than any network takes")
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise InputError(f"{arch}: argument name {str(key)[:40]!r} is not a plain name")
        if _REFUSED_NAME.search(key):
            raise InputError(
                f"{arch}: argument {key!r} is refused; camviewer never downloads or reads files named "
                "in a form. Upload the weights file instead"
            )
        check_value(arch, key, value, depth=0)
    return dict(kwargs)


def check_value(arch: str, key: str, value: Any, depth: int) -> None:
    """A plain argument value: a bounded number, a bool, a short name, or a short list or dict of those."""
    bad = InputError(
        f"{arch}: argument {key!r} must be a number (at most {MAX_INT:,}), true/false, a short name, "
        f"or a short list of those; got {str(value)[:60]!r}"
    )
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise bad
        return
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_FLOAT:
            raise bad
        return
    if isinstance(value, str):
        if not _PLAIN_TEXT.match(value):
            raise bad
        return
    if depth >= 3:
        raise bad
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            raise bad
        for item in value:
            check_value(arch, key, item, depth + 1)
        return
    if isinstance(value, dict):
        if len(value) > MAX_ITEMS or not all(isinstance(k, str) and _PLAIN_TEXT.match(k) for k in value):
            raise bad
        for k, item in value.items():
            if _REFUSED_NAME.search(k):
                raise InputError(f"{arch}: argument {key!r} holds {k!r}, which is refused")
            check_value(arch, key, item, depth + 1)
        return
    raise bad


def _as_tuples(value: Any) -> Any:
    """JSON has no tuples; MONAI often wants them (norm=("instance", {...}))."""
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _as_tuples(v) for k, v in value.items()}
    return value


def build_network(arch: str, kwargs: dict[str, Any], name: str = "network") -> nn.Module:
    """Check, size on the meta device, then build for real with the network unreachable."""
    kwargs = check_arch_kwargs(arch, kwargs)
    from monai.networks import nets

    final = {k: _as_tuples(v) for k, v in kwargs.items()} | _FORCED.get(arch, {})
    return build_sized(getattr(nets, arch), final, arch, name, shown=kwargs)


def build_sized(cls: type, kwargs: dict[str, Any], label: str, name: str, shown: dict | None = None) -> nn.Module:
    """`cls(**kwargs)` from a fixed table, sized on the meta device against the budget first, network unreachable."""
    text = ", ".join(f"{k}={v!r}" for k, v in (shown if shown is not None else kwargs).items())[:200]
    try:
        with no_network(), torch.device("meta"):
            sizing = cls(**kwargs)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - bad arguments raise TypeError/ValueError/AssertionError/...
        raise InputError(f"{label}({text}) cannot be built: {type(e).__name__}: {str(e)[:200]}") from e
    nbytes = sum(t.numel() * t.element_size() for t in (*sizing.parameters(), *sizing.buffers()))
    del sizing
    check_bytes(nbytes, f"{label} with these arguments", name)
    try:
        with no_network():
            return cls(**kwargs)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - as above
        raise InputError(f"{label}({text}) cannot be built: {type(e).__name__}: {str(e)[:200]}") from e


_GUARD_LOCK = threading.RLock()


@contextmanager
def no_network() -> Iterator[None]:
    """Inside the block, any attempt to resolve a host, connect, or download fails with an `InputError`."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise InputError("building this network tried to reach the network, which camviewer never allows")

    import torch.hub
    import torch.utils.model_zoo

    patches = [
        (socket.socket, "connect"),
        (socket.socket, "connect_ex"),
        (socket, "create_connection"),
        (socket, "getaddrinfo"),
        (urllib.request, "urlopen"),
        (urllib.request, "urlretrieve"),
        (torch.hub, "load_state_dict_from_url"),
        (torch.hub, "download_url_to_file"),
        (torch.hub, "load"),
        (torch.utils.model_zoo, "load_url"),
    ]
    with _GUARD_LOCK:
        saved = [(owner, attr, getattr(owner, attr)) for owner, attr in patches]
        try:
            for owner, attr, _ in saved:
                setattr(owner, attr, refuse)
            yield
        finally:
            for owner, attr, original in saved:
                setattr(owner, attr, original)
