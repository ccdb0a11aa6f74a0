"""Explanations stored by request key (`explain.request.CamRequest.key`).

Two tiers, both bounded in bytes and evicting least-recently-used first:
memory (shared by the app's sessions) and a disk folder that survives restarts.
Disk entries are a JSON summary plus an `.npz` of the maps (layer grid and model
grid; the image-grid map is recomputed from them when needed), read with
`allow_pickle=False`: nothing in the cache can run code.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from explain.cam.preprocess import grid_from_dict
from explain.cam.results import CamResult, Explanation


def _nbytes(e: Explanation) -> int:
    return e.nbytes


class CamCache:
    """Memory + disk LRU cache of `Explanation`s; thread-safe."""

    def __init__(
        self, directory: str | Path | None = None, max_disk_bytes: int = 2 * 1024**3, max_memory_bytes: int = 1024**3
    ):
        self.directory = Path(directory) if directory else None
        self.max_disk_bytes = max_disk_bytes
        self.max_memory_bytes = max_memory_bytes
        self._memory: OrderedDict[str, Explanation] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        if self.directory:
            self.directory.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> Explanation | None:
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                self.hits += 1
                return self._memory[key]
        found = self._read_disk(key)
        with self._lock:
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._remember(key, found)
        return found

    def put(self, key: str, explanation: Explanation) -> None:
        with self._lock:
            self._remember(key, explanation)
        self._write_disk(key, explanation)

    def _remember(self, key: str, explanation: Explanation) -> None:
        self._memory[key] = explanation
        self._memory.move_to_end(key)
        while len(self._memory) > 1 and sum(_nbytes(e) for e in self._memory.values()) > self.max_memory_bytes:
            self._memory.popitem(last=False)

    # -- disk ----------------------------------------------------------------------------
    def _write_disk(self, key: str, e: Explanation) -> None:
        if not self.directory or not all(getattr(r.grid, "persistent", True) for r in e.results):
            return  # a grid that is not plain data (a bundle's transform trace) stays in memory only
        arrays = {}
        for i, r in enumerate(e.results):
            arrays[f"map_{i}"], arrays[f"raw_{i}"] = r.model_map, r.raw_map
        meta = e.summary()
        meta["geometry"] = [{"grid": r.grid.to_dict(), "affine": r.volume_affine.tolist()} for r in e.results]
        tmp = self.directory / f".{key}.{os.getpid()}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self.directory / f"{key}.npz")
        (self.directory / f"{key}.json").write_text(json.dumps(meta))
        self._evict_disk()

    def _read_disk(self, key: str) -> Explanation | None:
        if not self.directory:
            return None
        meta_path, data_path = self.directory / f"{key}.json", self.directory / f"{key}.npz"
        if not (meta_path.exists() and data_path.exists()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(data_path, allow_pickle=False) as data:
                results = [
                    CamResult(
                        m["method"],
                        m["layer"],
                        m["target"],
                        m["target_name"],
                        data[f"raw_{i}"],
                        data[f"map_{i}"],
                        m["raw_peak"],
                        grid_from_dict(g["grid"]),
                        np.asarray(g["affine"], dtype=float),
                        m["warnings"],
                        tuple(m["window"]) if m.get("window") else None,
                        int(m.get("windows", 1)),
                    )
                    for i, (m, g) in enumerate(zip(meta["maps"], meta["geometry"]))
                ]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged entry is a miss; it is overwritten on the next put
        os.utime(data_path)  # LRU on disk is by access time
        return Explanation(
            results,
            meta["task"],
            meta["class_names"],
            np.asarray(meta["scores"], np.float32),
            np.asarray(meta["probabilities"], np.float32),
            meta["predicted"],
            tuple(meta["model_grid"]),
            meta["device"],
            meta["timings_s"],
            meta["volume_hash"],
            meta["model_hash"],
            meta["engine_version"],
            meta["warnings"],
            meta.get("run", {}),
        )

    def _evict_disk(self) -> None:
        entries = sorted(self.directory.glob("*.npz"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in entries)
        while entries and total > self.max_disk_bytes:
            oldest = entries.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)
            oldest.with_suffix(".json").unlink(missing_ok=True)


def page_stores(state_dir: Path, cache_bytes: int, budget: int) -> dict:
    """The app's server-side stores, shared by every session: maps on disk and in memory, and bounded LRUs of
    volumes, models, requests, sanity reports, published descriptors and source bytes (by `budget` bytes)."""
    return {
        "cams": CamCache(Path(state_dir) / "cams", max_disk_bytes=cache_bytes),
        "volumes": ObjectStore(8, 2 * budget, lambda v: v.data.nbytes),
        "models": ObjectStore(16, budget, lambda m: sum(p.numel() * 4 for p in m.module.parameters())),
        "requests": ObjectStore(256, 1 << 20, lambda _r: 1),
        "sanity": ObjectStore(256, 1 << 20, lambda _r: 1),
        "published": ObjectStore(1024, 1 << 20, lambda _r: 1),
        "sources": ObjectStore(8, budget, lambda s: len(s) if isinstance(s, bytes) else 0),
        "stats": {"engine_calls": 0},
    }


class ObjectStore:
    """A thread-safe LRU of objects by key, bounded by count and by bytes (the app's volumes and model files).

    Sessions keep only keys; the objects live here, so a user's last good result can be
    shown again after an error without keeping arrays or models in session state.
    """

    def __init__(self, max_items: int, max_bytes: int, size_of) -> None:
        self.max_items, self.max_bytes, self._size_of = max_items, max_bytes, size_of
        self._items: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str | None) -> object | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: str, value: object) -> object:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > 1 and (
                len(self._items) > self.max_items
                or sum(self._size_of(v) for v in self._items.values()) > self.max_bytes
            ):
                self._items.popitem(last=False)
        return value
