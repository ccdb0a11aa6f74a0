"""The files of a model that is a folder (an nnU-Net results folder, a MONAI bundle): on the server, or a .zip.

Only names this code asks for are read, each against the memory budget; a .zip is read member by member with its
expansion bounded, and a member path that climbs out refuses the whole archive (`explain.io.archives.read_zip`).
A server folder is walked without following links, and its files are read only under their own names.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from explain.errors import InputError
from explain.io.archives import is_clutter, read_zip
from explain.limits import check_bytes, max_bytes, mib

MAX_JSON_BYTES = 16 * 1024**2
MAX_FILES = 5000


class ModelFiles:
    """Relative POSIX path -> bytes, from a folder or a .zip holding one top folder."""

    def __init__(self, name: str, folder: Path | None = None, members: dict[str, bytes] | None = None) -> None:
        self.name, self._folder, self._members = name, folder, members or {}
        if folder is not None:
            self._sizes = {}
            for root, dirs, names in os.walk(folder, followlinks=False):
                for n in names:
                    p = Path(root) / n
                    if p.is_symlink() or not p.is_file():
                        continue
                    self._sizes[p.relative_to(folder).as_posix()] = p.stat().st_size
                    if len(self._sizes) > MAX_FILES:
                        raise InputError(f"{name}: holds more than {MAX_FILES} files; not a model folder")
                dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
        else:
            self._sizes = {k: len(v) for k, v in self._members.items()}

    @classmethod
    def open(cls, source: str | os.PathLike | bytes, name: str | None = None) -> ModelFiles:
        """A folder path, a .zip path, or a .zip's bytes (an upload)."""
        if isinstance(source, bytes):
            with tempfile.TemporaryDirectory() as tmp:
                target = Path(tmp) / "upload.zip"
                target.write_bytes(source)
                return cls._from_zip(target, name or "upload.zip")
        path = Path(source)
        if path.is_dir():
            return cls(name or path.name, folder=path)
        if path.is_file():
            return cls._from_zip(path, name or path.name)
        raise InputError(f"{name or path.name}: no such model folder or .zip")

    @classmethod
    def _from_zip(cls, path: Path, name: str) -> ModelFiles:
        members = [m for m in read_zip(path, max_bytes()) if not is_clutter(m.path)]
        tops = {m.path.parts[0] for m in members if len(m.path.parts) > 1}
        strip = len(tops) == 1 and all(len(m.path.parts) > 1 for m in members)
        out = {}
        for m in members:
            rel = PurePosixPath(*m.path.parts[1:]) if strip else m.path
            out[rel.as_posix()] = m.data
        return cls(name, members=out)

    def names(self) -> list[str]:
        return sorted(self._sizes)

    def has(self, rel: str) -> bool:
        return rel in self._sizes

    def read(self, rel: str) -> bytes:
        if rel not in self._sizes:
            raise InputError(f"{self.name}: has no {rel}")
        check_bytes(self._sizes[rel], f"reading {rel}", self.name)
        if self._folder is None:
            return self._members[rel]
        return (self._folder / rel).read_bytes()

    def json(self, rel: str) -> Any:
        """A JSON file, size-bounded; one sentence if it does not parse."""
        if self._sizes.get(rel, 0) > MAX_JSON_BYTES:
            raise InputError(f"{self.name}: {rel} is {mib(self._sizes[rel])}; a configuration is far smaller")
        try:
            return json.loads(self.read(rel))
        except (ValueError, RecursionError) as e:
            raise InputError(f"{self.name}: {rel} is not valid JSON ({type(e).__name__})") from e

    def digest(self, rels: list[str]) -> str:
        """A content hash of these files (names and bytes): part of the model's identity."""
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        for rel in sorted(rels):
            h.update(rel.encode() + b"\0")
            h.update(self.read(rel))
        return h.hexdigest()


def list_models(root: str | os.PathLike) -> dict[str, Path]:
    """The models a server folder offers, by name: its subfolders and .zip/.pt2 files (one level, no links).

    The folder is chosen by whoever runs the server (CAMVIEWER_MODEL_DIR), never by a user; the page shows and
    passes names only, and a name that is not in this listing opens nothing.
    """
    root = Path(root)
    if not root.is_dir():
        return {}
    found = {}
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or p.is_symlink():
            continue
        if p.is_dir() or p.suffix.lower() in (".zip", ".pt2"):
            found[p.name] = p
    return found
