"""Read a `.pt2` program (`torch.export.save`) without running anything from the file.

`torch.export.load` must never see an upload: it unpickles weights marked
`use_pickle` (`torch.load(weights_only=False)`), opaque constants (`pickle.loads`),
sample inputs (falling back to `weights_only=False`), loads AOTInductor shared
libraries, turns `guards_code` strings into code, and parses symbolic shapes with
`sympy.sympify` (which evaluates strings). It also resolves any `torch.<attr>` path
named in the graph as a node to call, so a graph can call `torch.os.system`.

So we read the archive ourselves, with the zip module only, and refuse before
torch deserialises anything:
- members outside the known layout (AOTInductor, legacy `.pt` weights, custom or
  opaque objects, several models), and sizes over the memory budget;
- any weight or constant that needs pickle, or whose declared extent does not fit
  its bytes; tensors are built from raw bytes by us;
- any symbolic shape, guard code, custom object or higher-order subgraph;
- any node whose target is not a plain `torch.ops.aten` operator without file or
  free-text arguments.
Sample inputs are never read. Only then does torch's own deserialiser turn the
checked JSON into an `ExportedProgram`, behind one lock (it keeps global state).
"""

from __future__ import annotations

import io
import json
import re
import threading
import zipfile
from dataclasses import dataclass
from typing import Any

import torch

from explain.errors import InputError
from explain.limits import check_bytes, mib
from explain.models.pt2_graph import check_program, graph_peak_bytes

CARD_FILE = "model_card.json"
MAX_MEMBERS = 20_000
MAX_JSON_BYTES = 64 * 1024**2
MAX_JSON_DEPTH = 64
MAX_CARD_BYTES = 256 * 1024

# torch.export keeps a module-level "current deserializer": two loads at once fail. One lock for all.
PT2_LOCK = threading.Lock()

_FIXED = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_WEIGHT = re.compile(r"^data/weights/weight_\d+$")
_TENSOR_CONSTANT = re.compile(r"^data/constants/tensor_\d+$")
_EXTRA = re.compile(r"^extra/[A-Za-z0-9_.-]{1,100}$")
_ALLOWED_DTYPES = {
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float64,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
}


@dataclass
class Pt2Program:
    """A checked, deserialised program, its embedded card text (or None) and its input shape."""

    program: Any  # torch.export.ExportedProgram
    card_text: str | None
    input_shape: tuple[int, ...]


def read_pt2(data: bytes | str, name: str) -> Pt2Program:
    """Inspect and load a `.pt2` archive from bytes or a path; `InputError` for anything unsafe or broken."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise InputError(f"{name}: not a readable .pt2 archive ({e})") from e
    with archive:
        members = _members(archive, name)
        model_json = _read_json(archive, members, "models/model.json", name)
        weights = _payload(archive, members, "data/weights/model_weights_config.json", _WEIGHT, "weight", name)
        constants = _payload(
            archive, members, "data/constants/model_constants_config.json", _TENSOR_CONSTANT, "constant", name
        )
        card_text = _extra_card(archive, members, name)
    check_program(model_json, name)
    check_bytes(graph_peak_bytes(model_json), "one run of its graph (the sizes the graph itself declares)", name)
    shape = _input_shape(model_json, name)
    program = _deserialise(model_json, weights, constants, name)
    return Pt2Program(program, card_text, shape)


# ----------------------------------------------------------------------------- archive layout


def _members(archive: zipfile.ZipFile, name: str) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InputError(f"{name}: the archive holds {len(infos)} files; a .pt2 model holds far fewer")
    check_bytes(sum(i.file_size for i in infos), "unpacking the archive", name)
    roots = {i.filename.split("/", 1)[0] for i in infos}
    if len(roots) != 1:
        raise InputError(f"{name}: not a .pt2 archive (expected one top-level folder, found {len(roots)})")
    root = roots.pop() + "/"
    out = {}
    for info in infos:
        rel = info.filename[len(root) :]
        if info.is_dir() or not rel:
            continue
        if rel in _FIXED or rel in {"models/model.json", "data/weights/model_weights_config.json"}:
            pass
        elif rel in {"data/constants/model_constants_config.json", "data/sample_inputs/model.pt"}:
            pass
        elif _WEIGHT.match(rel) or _TENSOR_CONSTANT.match(rel) or _EXTRA.match(rel):
            pass
        else:
            raise InputError(f"{name}: refused, it contains {rel!r}, {_why_refused(rel)}")
        out[rel] = info
    for required in ("archive_version", "models/model.json", "data/weights/model_weights_config.json"):
        if required not in out:
            raise InputError(f"{name}: not a .pt2 program saved by torch.export.save (no {required})")
    version = archive.read(out["archive_version"]).decode("utf-8", "replace").strip()
    if version != "0":
        raise InputError(f"{name}: .pt2 archive version {version!r} is not supported (expected 0)")
    return out


def _why_refused(rel: str) -> str:
    if rel.startswith("data/aotinductor/"):
        return "compiled native code (AOTInductor), which would run on load"
    if "custom_obj_" in rel or "opaque_obj_" in rel:
        return "a custom or opaque object, which only pickle can load"
    if rel.endswith(".pt") or rel.endswith(".pkl"):
        return "a pickled file, which could run code on load"
    if rel.startswith("models/"):
        return "more than one program; save one model per .pt2"
    return "which is not part of a plain exported program"


def _read_json(archive: zipfile.ZipFile, members: dict, rel: str, name: str, limit: int = MAX_JSON_BYTES) -> Any:
    info = members.get(rel)
    if info is None:
        raise InputError(f"{name}: the archive has no {rel}")
    if info.file_size > limit:
        raise InputError(f"{name}: {rel} is {mib(info.file_size)}, over the {mib(limit)} limit")
    try:
        raw = archive.read(info)
        value = json.loads(raw.decode("utf-8"))
    except (RecursionError, UnicodeDecodeError, ValueError, zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{name}: {rel} is not valid JSON ({type(e).__name__})") from e
    _check_depth(value, name, rel)
    return value


def _check_depth(value: Any, name: str, rel: str) -> None:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InputError(f"{name}: {rel} is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _extra_card(archive: zipfile.ZipFile, members: dict, name: str) -> str | None:
    info = members.get(f"extra/{CARD_FILE}")
    if info is None:
        return None
    if info.file_size > MAX_CARD_BYTES:
        raise InputError(f"{name}: the embedded model card is {mib(info.file_size)}; a card is a few kB")
    try:
        return archive.read(info).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{name}: the embedded model card is not UTF-8 text") from e


# ----------------------------------------------------------------------------- tensors


def _payload(
    archive: zipfile.ZipFile, members: dict, config_rel: str, pattern: re.Pattern, kind: str, name: str
) -> dict[str, torch.Tensor]:
    """Weights or constants: checked metadata, then tensors built from raw little-endian bytes."""
    if config_rel not in members:
        return {}
    config = _read_json(archive, members, config_rel, name)
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise InputError(f"{name}: {config_rel} has no 'config' object")
    plans = []
    total = 0
    for fqn, entry in entries.items():
        if not isinstance(entry, dict):
            raise InputError(f"{name}: {kind} {fqn!r} has a malformed description")
        if entry.get("use_pickle"):
            raise InputError(f"{name}: refused, {kind} {fqn!r} is pickled, and loading it could run code")
        path = entry.get("path_name")
        rel = f"{config_rel.rsplit('/', 1)[0]}/{path}"
        if not isinstance(path, str) or not pattern.match(rel):
            raise InputError(f"{name}: refused, {kind} {fqn!r} is stored as {path!r}, not as a plain tensor")
        if rel not in members:
            raise InputError(f"{name}: {kind} {fqn!r} names {path!r}, which is not in the archive")
        dtype, sizes, strides, offset, requires_grad = _tensor_meta(entry.get("tensor_meta"), fqn, name)
        record = members[rel].file_size
        extent = _extent(sizes, strides, offset)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if record == 0:
            total += _count(sizes) * itemsize  # torch would allocate zeros of the declared size
        elif extent * itemsize > record or record % itemsize:
            raise InputError(f"{name}: {kind} {fqn!r} declares more data than its {record} bytes hold")
        total += record
        plans.append((fqn, rel, dtype, sizes, strides, offset, requires_grad, bool(entry.get("is_param"))))
    check_bytes(total, f"the model's {kind}s", name)
    out = {}
    cache: dict[str, torch.Tensor] = {}  # shared storage stays shared, as torch's own loader does
    for fqn, rel, dtype, sizes, strides, offset, requires_grad, is_param in plans:
        if rel not in cache:
            cache[rel] = _read_record(archive, members[rel], dtype, name)
        flat = cache[rel]
        if flat.numel() == 0:
            tensor = torch.zeros(sizes, dtype=dtype)
        else:
            tensor = torch.as_strided(flat, sizes, strides, offset)
        out[fqn] = torch.nn.Parameter(tensor, requires_grad=requires_grad) if is_param else tensor
    return out


def _read_record(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dtype: torch.dtype, name: str) -> torch.Tensor:
    """One tensor record read straight into its own buffer (one copy, of the declared size)."""
    if info.file_size == 0:
        return torch.zeros(0, dtype=dtype)
    buf = bytearray(info.file_size)
    view, filled = memoryview(buf), 0
    try:
        with archive.open(info) as f:
            while filled < len(buf) and (got := f.readinto(view[filled:])):
                filled += got
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise InputError(f"{name}: the archive is corrupt ({type(e).__name__})") from e
    if filled != len(buf):
        raise InputError(f"{name}: a tensor record is shorter than the archive declares")
    return torch.frombuffer(buf, dtype=dtype)


def _tensor_meta(meta: Any, fqn: str, name: str) -> tuple:
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE

    bad = InputError(f"{name}: tensor {fqn!r} has malformed or non-static metadata")
    if not isinstance(meta, dict):
        raise bad
    try:
        from torch._export.serde.schema import ScalarType

        dtype = _SERIALIZE_TO_TORCH_DTYPE[ScalarType(meta["dtype"])]
        sizes = [int(s["as_int"]) for s in meta["sizes"]]
        strides = [int(s["as_int"]) for s in meta["strides"]]
        offset = int(meta["storage_offset"]["as_int"])
    except (KeyError, TypeError, ValueError) as e:
        raise bad from e
    if dtype not in _ALLOWED_DTYPES:
        raise InputError(f"{name}: tensor {fqn!r} has dtype {dtype}, which is not supported")
    if len(sizes) != len(strides) or len(sizes) > 8 or min(sizes + strides + [offset], default=0) < 0:
        raise bad
    return dtype, sizes, strides, offset, bool(meta.get("requires_grad"))


def _count(sizes: list[int]) -> int:
    n = 1
    for s in sizes:
        n *= s
    return n


def _extent(sizes: list[int], strides: list[int], offset: int) -> int:
    """Elements of storage a strided view reaches (0 for an empty tensor)."""
    if _count(sizes) == 0:
        return 0
    return offset + sum((s - 1) * st for s, st in zip(sizes, strides)) + 1


def _input_shape(doc: dict, name: str) -> tuple[int, ...]:
    """(C, *spatial) of the one user input, from the graph's own tensor metadata."""
    gm = doc["graph_module"]
    try:
        specs = gm["signature"]["input_specs"]
        users = [s["user_input"]["arg"]["as_tensor"]["name"] for s in specs if "user_input" in s]
        values = gm["graph"]["tensor_values"]
        shapes = [[int(d["as_int"]) for d in values[u]["sizes"]] for u in users]
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{name}: cannot read the program's input from its signature") from e
    if len(shapes) != 1:
        raise InputError(f"{name}: the program takes {len(shapes)} inputs; exactly one image is needed")
    shape = tuple(shapes[0])
    if len(shape) not in (4, 5) or shape[0] != 1:
        raise InputError(
            f"{name}: the program's input must be (1, C, H, W) or (1, C, D, H, W); got {shape}. "
            "Export with a batch of one image."
        )
    return shape[1:]


def _deserialise(doc: dict, weights: dict, constants: dict, name: str) -> Any:
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass

    with PT2_LOCK:
        try:
            serialized = _dict_to_dataclass(schema.ExportedProgram, doc)
            return ExportedProgramDeserializer(None).deserialize(serialized, weights, constants, None)
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - torch raises many types on malformed programs
            raise InputError(f"{name}: the .pt2 program is malformed ({type(e).__name__}: {str(e)[:200]})") from e
