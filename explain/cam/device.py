"""The device: which one, one forward pass at a time on it, and a model frozen for the call.

Every forward pass in camviewer (listing layers, classifying, explaining) runs
under `on_device()`, one at a time: concurrent users queue instead of running the
device out of memory. The lock is re-entrant, so an engine call may list layers
inside its own turn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from explain.errors import InputError
from explain.limits import max_bytes, resident_bytes, return_freed_memory


class _DeviceLock:
    """A re-entrant lock that can tell whether someone else holds it."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owner: int | None = None
        self._depth = 0

    def busy(self) -> bool:
        """True when another thread is computing."""
        return self._owner is not None and self._owner != threading.get_ident()

    @contextmanager
    def hold(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        if not self._lock.acquire(blocking=False):
            if on_wait is not None:
                on_wait()
            self._lock.acquire()
        self._owner, self._depth = threading.get_ident(), self._depth + 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
            self._lock.release()


DEVICE = _DeviceLock()


def on_device(on_wait: Callable[[], None] | None = None):
    """Context manager: this thread's turn on the device; `on_wait` is called first if it must queue."""
    return DEVICE.hold(on_wait)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an input error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"unknown device {str(device)[:20]!r}; use auto, cpu or cuda") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but no GPU is available; use --device cpu or auto")
    return device


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """eval() and requires_grad=False for the call; the previous state is restored afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def budget(device: torch.device) -> int:
    """Bytes one computation may add: 95% of what `CAMVIEWER_MAX_BYTES` leaves beside what this process holds
    already (the 5% for kernels' scratch the estimate cannot see), and never below a quarter of the budget, so a
    server holding cached images still computes, in smaller windows; on a GPU, no more than 90% of its free
    memory either."""
    return_freed_memory()  # before anything is measured or allocated: resident memory then follows live tensors
    allowed = max(int(0.95 * (max_bytes() - resident_bytes())), max_bytes() // 4)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        allowed = min(allowed, int(0.9 * free))
    return allowed
