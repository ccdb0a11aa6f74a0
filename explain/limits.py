"""One memory budget, checked before anything is allocated.

Every reader of untrusted input (volumes of any dimensionality, decompressed
streams, `.pt2` tensors, network sizes, card and form shapes) asks this module
before it allocates, so a small hostile file cannot expand into a large one.

- `CAMVIEWER_MAX_BYTES` (default 2 GiB): the most memory one load may use.
- `CAMVIEWER_MAX_VOXELS` (default 200 M): the most voxels (or pixels) in one image,
  counting every axis (a 4D file counts all its volumes).

Both are read when a check runs, so a test or a server can set them per process.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

from explain.errors import InputError

DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_VOXELS = 200_000_000


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw.strip() else default
    except ValueError:
        value = default
    return value if value > 0 else default


def max_bytes() -> int:
    """The memory budget in bytes (`CAMVIEWER_MAX_BYTES`)."""
    return _env_int("CAMVIEWER_MAX_BYTES", DEFAULT_MAX_BYTES)


def max_voxels() -> int:
    """The voxel budget (`CAMVIEWER_MAX_VOXELS`)."""
    return _env_int("CAMVIEWER_MAX_VOXELS", DEFAULT_MAX_VOXELS)


def mib(n: float) -> str:
    """Bytes as a short human figure: '3 MiB', '1.9 GiB'."""
    if n >= 1024**3:
        return f"{n / 1024**3:.1f} GiB"
    return f"{max(n, 0) / 1024**2:.0f} MiB"


def check_bytes(n: int, what: str, name: str, limit: int | None = None) -> None:
    """Refuse `n` bytes of `what` for file `name` when over the budget."""
    limit = max_bytes() if limit is None else limit
    if n > limit:
        raise InputError(f"{name}: {what} would take {mib(n)}, over the {mib(limit)} memory limit")


def count(shape: Iterable[int]) -> int:
    """Elements in `shape`, exactly (Python ints never overflow); negative sizes count as 0."""
    return math.prod(max(int(s), 0) for s in shape)


def check_voxels(shape: Iterable[int], name: str, limit: int | None = None) -> int:
    """Refuse a shape whose voxels over ALL axes exceed the budget; returns the count."""
    shape = tuple(int(s) for s in shape)
    limit = max_voxels() if limit is None else limit
    n = count(shape)
    if n > limit:
        raise InputError(f"{name}: {n:,} voxels ({' x '.join(map(str, shape))}) is over the {limit:,} voxel limit")
    return n


def resident_bytes() -> int:
    """This process's resident memory now (VmRSS), or 0 where /proc is not there."""
    try:
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmRSS:")).split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        return 0


_ALLOCATOR_SET = False


def return_freed_memory() -> None:
    """Make glibc give large freed blocks back to the system at once (a fixed 128 KiB mmap threshold).

    By default glibc raises its mmap threshold after each large free (up to 32 MiB), so tensors of a few MiB
    then come from the heap and their memory stays resident after they are freed: measured on a MONAI UNet map,
    the peak resident memory was 1.3 times the live tensors; with the threshold fixed, 1.0 times, at the same
    speed. The memory budget is checked against live tensors (explain.cam.cost), so this is what keeps it true.
    Process-wide; idempotent; a no-op where glibc is not the allocator.
    """
    global _ALLOCATOR_SET
    if _ALLOCATOR_SET:
        return
    _ALLOCATOR_SET = True
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass
