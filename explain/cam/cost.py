"""What a map will cost in memory, known before it is computed.

`peak_bytes` replays the engine's own steps on fake tensors (torch's `FakeTensorMode`: shapes, dtypes and
autograd, no data): the input, the forward pass with the layers hooked as the engine hooks them, the target's
score, `autograd.grad` back to the layers, the method and the upsampling to the input grid. Every tensor storage
created on the way is recorded as it appears and dropped when Python frees it (autograd's saved tensors included),
so the peak of live bytes is the peak the real run will have, less what the real kernels use inside themselves
(measured against the resident memory of real runs: tests/test_cost.py, docs/decisions.md).

Nothing is allocated: a 4 GiB tensor made inside a model's `forward` costs nothing here, and is seen.
A model whose `forward` cannot run on fake tensors (data-dependent shapes) gets `None`, and the caller falls back
to a bound from the layer listing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from explain.cam.device import frozen
from explain.cam.hooks import capture, expand
from explain.cam.methods import GRADIENT_METHODS
from explain.cam.targets import pick_logits
from explain.errors import InputError
from explain.limits import mib


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of every storage an operator creates, while it is alive; keeps the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[int, StorageWeakRef]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                ref = StorageWeakRef(storage)
                if ref.cdata not in self.live:
                    self.live[ref.cdata] = (storage.nbytes(), ref)
        self._measure(_workspace(func, args))
        return out

    def _measure(self, workspace: int = 0) -> None:
        gone = [k for k, (_n, ref) in self.live.items() if ref.expired()]
        for k in gone:
            del self.live[k]
        self.peak = max(self.peak, sum(n for n, _ref in self.live.values()) + workspace)


def _workspace(func, args) -> int:
    """Scratch memory a convolution kernel takes inside itself on the CPU, which no tensor shows.

    Measured on this CPU build per backend (docs/decisions.md): oneDNN (Mkldnn) reorders input and output into
    a blocked layout with channels padded to a multiple of 8 (forward: both once; backward to the input: twice);
    the slow paths unfold the input into columns (C_in x kernel x output voxels); transposed convolutions take
    about the input and twice the output. Bounds, not exact figures: the estimate errs high here.
    """
    name = getattr(func, "__name__", "")
    if not name.startswith(("convolution.", "convolution_backward.")) or len(args) < 9:
        return 0
    backward = name.startswith("convolution_backward")
    x, w = (args[1], args[2]) if backward else (args[0], args[1])
    stride, padding, dilation, transposed, out_pad, groups = args[4:10] if backward else args[3:9]
    out = args[0] if backward else None
    if not all(isinstance(t, torch.Tensor) for t in (x, w)) or x.device.type != "cpu":
        return 0
    try:
        backend = str(
            torch._C._select_conv_backend(x, w, None, stride, padding, dilation, transposed, out_pad, groups, None)
        )
    except (RuntimeError, TypeError):
        backend = "unknown"
    item = x.element_size()
    spatial_in = math.prod(x.shape[2:])
    c_out = w.shape[1] * groups if transposed else w.shape[0]
    out_shape = tuple(out.shape) if out is not None else None
    spatial_out = (
        math.prod(out_shape[2:]) if out_shape else _out_voxels(x, w, stride, padding, dilation, transposed, out_pad)
    )
    padded = lambda c: -(-int(c) // 8) * 8  # noqa: E731
    blocked = item * x.shape[0] * (padded(x.shape[1]) * spatial_in + padded(c_out) * spatial_out)
    if "Slow" in backend and not transposed:
        columns = item * x.shape[0] * (x.shape[1] // groups) * math.prod(w.shape[2:]) * spatial_out
        return columns + (item * x.numel() if backward else 0)
    if "Mkldnn" in backend and not transposed:
        return 2 * blocked if backward else blocked
    return item * x.numel() + 2 * item * x.shape[0] * padded(c_out) * spatial_out  # transposed, others


def _out_voxels(x, w, stride, padding, dilation, transposed, out_pad) -> int:
    sizes = []
    for i, n in enumerate(x.shape[2:]):
        k = (w.shape[2 + i] - 1) * dilation[i] + 1
        if transposed:
            sizes.append((n - 1) * stride[i] - 2 * padding[i] + k + out_pad[i])
        else:
            sizes.append((n + 2 * padding[i] - k) // stride[i] + 1)
    return math.prod(max(s, 1) for s in sizes)


@dataclass(frozen=True)
class Cost:
    """Peak bytes of one engine pass over a batch of `batch` inputs of one shape."""

    peak: int  # every tensor the pass creates, at its worst moment
    batch: int
    input_shape: tuple[int, ...]  # (C, *spatial) of one input
    classes: int | None = None  # output channels (classes) the model gave, when it gave a tensor

    def __str__(self) -> str:
        return mib(self.peak)


def peak_bytes(
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    task: str,
    method: str,
    layers: Sequence[str] = (),
    attention: Sequence[str] = (),
    batch: int = 1,
) -> Cost | None:
    """The peak memory of one engine pass (forward, hooks, score, gradients to `layers`, method, upsampling).

    `method` is a gradient method, an attention method, or "predict" (a forward pass without gradients).
    `input_shape` is (C, *spatial) of one input; `batch` inputs go through together (sliding windows).
    Returns None when the model cannot run on fake tensors.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    shape = (int(batch), *(int(s) for s in input_shape))
    counter = _LiveBytes()
    try:
        with frozen(module), FakeTensorMode(allow_non_fake_inputs=True), counter:
            x = torch.zeros(shape)
            if method in GRADIENT_METHODS:
                logits = _gradient_pass(module, x, task, method, list(layers))
            elif method == "predict":  # a prediction alone: no gradients, nothing hooked
                with torch.no_grad():
                    logits = pick_logits(module(x))
            else:  # attention methods: the weights of every block are kept
                with capture(module, attention=list(attention)), torch.no_grad():
                    logits = pick_logits(module(x))
            classes = int(logits.shape[1]) if logits.ndim >= 2 else None
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - a model that does not run on fake tensors: the caller falls back
        return None
    return Cost(int(counter.peak), int(batch), tuple(shape[1:]), classes)


def _gradient_pass(module: nn.Module, x: torch.Tensor, task: str, method: str, layers: list[str]) -> torch.Tensor:
    """The engine's gradient path for one target, as `explain.cam.engine` runs it; returns the logits."""
    layers = expand(module, layers)
    with capture(module, layers, track_grads=True) as cap, torch.enable_grad():
        logits = pick_logits(module(x))
        if task == "classification":
            score = logits[:, 0].sum()
        else:  # the class's logit over its own predicted region
            score = (logits[:, 0] * (logits.argmax(dim=1) == 0).to(logits.dtype)).sum()
        acts = [cap.acts[name] for name in layers if name in cap.acts]
        if not acts or not score.requires_grad:
            return logits
        grads = torch.autograd.grad(score, acts, allow_unused=True)
        for a, g in zip(acts, grads):
            if g is None or a.ndim != x.ndim:
                continue
            raw = F.relu(GRADIENT_METHODS[method](a, g))[:, None]
            mode = "trilinear" if raw.ndim == 5 else "bilinear"
            F.interpolate(raw, size=tuple(x.shape[2:]), mode=mode, align_corners=False)
    return logits


def stitch_bytes(model_shape: Sequence[int], n_classes: int, n_maps: int) -> int:
    """What sliding windows hold over the whole model grid while they run: the class logits, the weight sum, and
    per map a display and a signed accumulator (fp32)."""
    return 4 * math.prod(int(s) for s in model_shape) * (n_classes + 1 + 2 * n_maps)


def finish_bytes(model_shape: Sequence[int]) -> int:
    """What finishing a stitched result adds, after the windows: the prediction's labels (int64) and top logits,
    or one map's scaling to its peak (two fp32 copies), whichever is larger."""
    return 12 * math.prod(int(s) for s in model_shape)


def bound_from_layers(
    layer_shapes: Sequence[Sequence[int]], listed_for: Sequence[int], input_shape: Sequence[int]
) -> int:
    """A fallback bound when a model cannot run on fake tensors: every module's output at the listed shape,
    kept for the backward pass (x2) and scaled to this input's voxels; fp32."""
    listed = math.prod(int(s) for s in listed_for[1:]) or 1
    scale = math.prod(int(s) for s in input_shape[1:]) / listed
    return int(2 * 4 * sum(math.prod(int(s) for s in shape) for shape in layer_shapes) * scale)
