"""Builders of hostile files, each reproducing one finding of the attack audit.

Code execution is detected with a sentinel: the payload creates a file when
unpickled (`open(path, "w")`), which is harmless and portable. Every builder
starts from a real file written by torch or pynrrd and changes only what the
attack needs, so a loader that refuses it refuses the attack, not a broken file.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import zipfile
import zlib
from pathlib import Path

import torch


class Sentinel:
    """Unpickling this creates `path`: proof that code from the file ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def torch_pickle(sentinel: Path) -> bytes:
    buf = io.BytesIO()
    torch.save(Sentinel(sentinel), buf)
    return buf.getvalue()


class TinyNet(torch.nn.Module):
    def __init__(self, in_channels: int = 1, features: int = 2):
        super().__init__()
        self.conv = torch.nn.Conv3d(in_channels, features, 3, padding=1)
        self.head = torch.nn.Linear(features, 2)

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3, 4)))


def tiny_pt2(card: dict | None = None) -> bytes:
    """A genuine .pt2 of a two-layer net, saved by torch.export.save."""
    torch.manual_seed(0)
    program = torch.export.export(TinyNet().eval(), (torch.zeros(1, 1, 8, 8, 8),))
    buf = io.BytesIO()
    extra = {"model_card.json": json.dumps(card)} if card else None
    torch.export.save(program, buf, extra_files=extra)
    return buf.getvalue()


def members(data: bytes) -> tuple[str, dict[str, bytes]]:
    """(root folder, {relative name: bytes}) of a .pt2 archive."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        root = names[0].split("/", 1)[0]
        return root, {n[len(root) + 1 :]: z.read(n) for n in names}


def repack(root: str, files: dict[str, bytes], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=mode) as z:
        for rel, data in files.items():
            z.writestr(f"{root}/{rel}", data)
    return buf.getvalue()


def edit_json(files: dict[str, bytes], rel: str, change) -> None:
    doc = json.loads(files[rel])
    change(doc)
    files[rel] = json.dumps(doc).encode()


def pt2_pickled_weight(sentinel: Path) -> bytes:
    """Finding 1a: a weight marked use_pickle; torch.export.load calls torch.load(weights_only=False) on it."""
    root, files = members(tiny_pt2())
    cfg = "data/weights/model_weights_config.json"
    first = sorted(json.loads(files[cfg])["config"])[0]

    def change(doc):
        entry = doc["config"][first]
        entry["use_pickle"] = True
        files[f"data/weights/{entry['path_name']}"] = torch_pickle(sentinel)

    edit_json(files, cfg, change)
    return repack(root, files)


def pt2_opaque_constant(sentinel: Path) -> bytes:
    """Finding 1b: an opaque constant; torch.export.load calls pickle.loads on it."""
    root, files = members(tiny_pt2())
    cfg = "data/constants/model_constants_config.json"
    files["data/constants/opaque_obj_0"] = pickle.dumps(Sentinel(sentinel))

    def change(doc):
        doc["config"]["evil"] = {
            "path_name": "opaque_obj_0",
            "is_param": False,
            "use_pickle": True,
            "tensor_meta": None,
        }

    edit_json(files, cfg, change)
    return repack(root, files)


def pt2_pickled_sample_inputs(sentinel: Path) -> bytes:
    """Finding 1c: sample inputs that fail weights_only loading; torch falls back to weights_only=False."""
    root, files = members(tiny_pt2())
    files["data/sample_inputs/model.pt"] = torch_pickle(sentinel)
    return repack(root, files)


def pt2_graph_calls(target: str, argument: str) -> bytes:
    """Finding 1d: a graph node whose target is any `torch.<path>` callable (here torch.os.system)."""
    root, files = members(tiny_pt2())

    def change(doc):
        nodes = doc["graph_module"]["graph"]["nodes"]
        nodes.insert(
            0,
            {
                "target": target,
                "inputs": [{"name": "command", "arg": {"as_string": argument}, "kind": 1}],
                "outputs": [{"as_none": True}],
                "metadata": {},
                "is_hop_single_tensor_return": None,
                "name": "evil",
            },
        )

    edit_json(files, "models/model.json", change)
    return repack(root, files)


def pt2_with(rel: str, data: bytes) -> bytes:
    """A genuine program plus one extra member (AOTInductor code, a legacy pickle, ...)."""
    root, files = members(tiny_pt2())
    files[rel] = data
    return repack(root, files)


def pt2_program_edit(change) -> bytes:
    root, files = members(tiny_pt2())
    edit_json(files, "models/model.json", change)
    return repack(root, files)


def pt2_inflated(declared_bytes: int) -> bytes:
    """Finding 4b: a weight whose record is empty but whose declared size is huge (torch allocates zeros)."""
    root, files = members(tiny_pt2())
    cfg = "data/weights/model_weights_config.json"
    n = declared_bytes // 4

    def change(doc):
        entry = doc["config"]["conv.weight"]
        entry["tensor_meta"]["sizes"] = [{"as_int": n}]
        entry["tensor_meta"]["strides"] = [{"as_int": 1}]
        files[f"data/weights/{entry['path_name']}"] = b""

    edit_json(files, cfg, change)
    return repack(root, files)


def pt2_compressed_zeros(declared_bytes: int) -> bytes:
    """Finding 4b, other form: a deflated record of zeros that expands far beyond the archive's size."""
    root, files = members(tiny_pt2())
    cfg = "data/weights/model_weights_config.json"

    def change(doc):
        entry = doc["config"]["conv.weight"]
        entry["tensor_meta"]["sizes"] = [{"as_int": declared_bytes // 4}]
        entry["tensor_meta"]["strides"] = [{"as_int": 1}]
        files[f"data/weights/{entry['path_name']}"] = bytes(declared_bytes)

    edit_json(files, cfg, change)
    return repack(root, files, compress=True)


# ----------------------------------------------------------------------------- NRRD


def nrrd_header(fields: dict[str, str]) -> bytes:
    lines = ["NRRD0004"] + [f"{k}: {v}" for k, v in fields.items()]
    return ("\n".join(lines) + "\n\n").encode()


def nrrd_detached(data_file: str, encoding: str = "raw", sizes: str = "4 4 4", extra: dict | None = None) -> bytes:
    fields = {"type": "uint8", "dimension": str(len(sizes.split())), "sizes": sizes, "encoding": encoding}
    fields.update(extra or {})
    fields["data file"] = data_file
    return nrrd_header(fields)[:-1]  # a detached header ends without the blank line


def nrrd_4d_bomb(voxels_per_axis: int = 512, volumes: int = 512) -> bytes:
    """Finding 4a: a tiny gzip NRRD whose fourth axis multiplies the voxels (all zeros)."""
    sizes = f"{voxels_per_axis} {voxels_per_axis} {volumes} 1"
    header = nrrd_header({"type": "uint8", "dimension": "4", "sizes": sizes, "encoding": "gzip"})
    return header + gzip.compress(bytes(1 << 20), 9) * 2


# ----------------------------------------------------------------------------- NIfTI


def nifti_gzip_bomb(path: Path, data_bytes: int) -> Path:
    """Finding 4c: a valid NIfTI header declaring `data_bytes` of uint8 zeros, as a multi-member gzip (~1000:1)."""
    import nibabel as nib
    import numpy as np

    side = round(data_bytes ** (1 / 3))
    header = nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)).header
    header.set_data_shape((side, side, data_bytes // (side * side)))
    header.set_data_dtype(np.uint8)
    head = header.binaryblock + b"\0" * 4
    chunk = 1 << 20
    member = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = member.compress(bytes(chunk)) + member.flush()
    with open(path, "wb") as f:
        f.write(gzip.compress(head))
        for _ in range(data_bytes // chunk + 1):
            f.write(block)
    return path
