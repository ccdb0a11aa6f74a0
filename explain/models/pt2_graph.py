"""The graph of a `.pt2` program, checked before torch deserialises it (see `explain.models.pt2`).

Refused: guard code (turned into Python by torch), dynamic shapes and any symbolic value
(parsed with `sympy.sympify`, which evaluates strings), custom objects, higher-order
subgraphs, and any node whose target is not a plain `torch.ops.aten` operator, or is one
that reads files or takes free text. Node metadata is cut to what `unflatten` needs,
because torch resolves some of it by name on load.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from explain.errors import InputError

_ATEN_TARGET = re.compile(r"^torch\.ops\.aten\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)$")
_SYMBOLIC_KEYS = {
    "as_expr",
    "as_sym_int",
    "as_sym_ints",
    "as_sym_bool",
    "as_sym_bools",
    "as_sym_float",
    "as_sym_floats",
    "as_custom_obj",
    "as_graph",
    "as_optional_sym_ints",
}
# String arguments that select a mode; any other string argument (a file name, free text) refuses the op.
_BENIGN_STRING_ARGS = {
    "approximate",
    "rounding_mode",
    "mode",
    "pad_mode",
    "padding",
    "padding_side",
    "indexing",
    "reduce",
    "side",
    "norm",
    "UPLO",
    "driver",
    "equation",
}
_DENIED_OPS = {"from_file", "_print", "save", "load"}


def check_program(doc: Any, name: str) -> None:
    """Refuse anything in models/model.json that could run code or needs symbolic shapes; trim node metadata."""
    if not isinstance(doc, dict) or not isinstance(doc.get("graph_module"), dict):
        raise InputError(f"{name}: models/model.json is not an exported program")
    if doc.get("guards_code"):
        raise InputError(f"{name}: refused, the program carries guard code, which would be run as Python")
    if doc.get("range_constraints"):
        raise InputError(f"{name}: refused, the program has dynamic shapes; export it with static shapes")
    graph = doc["graph_module"].get("graph")
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        raise InputError(f"{name}: models/model.json has no graph")
    for key in ("sym_int_values", "sym_bool_values", "sym_float_values", "custom_obj_values"):
        if graph.get(key):
            raise InputError(f"{name}: refused, the program uses symbolic values or custom objects")
    _refuse_symbolic(graph, name)
    for node in graph["nodes"]:
        target = node.get("target") if isinstance(node, dict) else None
        _check_target(target, name)
        # Metadata is for debugging; some of it is resolved by name on load. Keep only what unflatten needs.
        meta = node.get("metadata")
        node["metadata"] = {k: v for k, v in meta.items() if k == "nn_module_stack"} if isinstance(meta, dict) else {}


def _refuse_symbolic(value: Any, name: str) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            hit = _SYMBOLIC_KEYS.intersection(item)
            if hit:
                raise InputError(
                    f"{name}: refused, the program holds {sorted(hit)[0]} (symbolic shapes or subgraphs); "
                    "export it with static shapes and plain operators"
                )
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def graph_peak_bytes(doc: Any) -> int:
    """The most memory one run of the graph holds at once, from the sizes its own JSON declares for every value.

    Nodes run in order; each output is allocated when its node runs and freed after its last use; a view costs
    nothing and keeps the tensor it views alive as long as itself; graph inputs (weights and the input) stay for
    the whole run. A graph that builds a huge tensor from nothing (`torch.ones(1024, 1024, 1024)` in `forward`)
    shows it here, before anything runs. Call after `check_program` (static shapes only).
    """
    graph = doc["graph_module"]["graph"]
    sizes = {name: _nbytes(meta) for name, meta in graph.get("tensor_values", {}).items()}
    nodes = graph["nodes"]
    root: dict[str, str] = {}  # a view -> the tensor that owns its memory
    last_use: dict[str, int] = {}
    for i, node in enumerate(nodes):
        inputs = _tensor_names(node.get("inputs"))
        for name in inputs:
            owner = root.get(name, name)
            last_use[owner] = i
        if _is_view(node.get("target", "")) and inputs:
            for name in _tensor_names(node.get("outputs")):
                root[name] = root.get(inputs[0], inputs[0])
    persistent = set(_tensor_names(graph.get("inputs"))) | {root.get(n, n) for n in _tensor_names(graph.get("outputs"))}
    live = {name: sizes.get(name, 0) for name in persistent}
    peak = sum(live.values())
    for i, node in enumerate(nodes):
        for name in _tensor_names(node.get("outputs")):
            if name not in root:
                live[name] = sizes.get(name, 0)
        peak = max(peak, sum(live.values()))
        for name in [n for n in live if n not in persistent and last_use.get(n, -1) <= i]:
            del live[name]
    return int(peak)


def _tensor_names(value: Any) -> list[str]:
    """Every tensor name referenced in a node's inputs or outputs (as_tensor, as_tensors, nested)."""
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("as_tensor")
            if isinstance(ref, dict) and isinstance(ref.get("name"), str):
                found.append(ref["name"])
            stack.extend(v for k, v in item.items() if k != "as_tensor")
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _nbytes(meta: Any) -> int:
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE

    try:
        from torch._export.serde.schema import ScalarType

        dtype = _SERIALIZE_TO_TORCH_DTYPE[ScalarType(meta["dtype"])]
        count = 1
        for size in meta["sizes"]:
            count *= max(int(size["as_int"]), 0)
        return count * dtype.itemsize
    except (KeyError, TypeError, ValueError):
        return 0


_VIEWS: dict[str, bool] = {}


def _is_view(target: str) -> bool:
    """Does the operator return a view of its input (its schema's return carries an alias annotation)?"""
    if target not in _VIEWS:
        match = _ATEN_TARGET.match(target)
        try:
            schema = getattr(getattr(torch.ops.aten, match.group(1)), match.group(2))._schema if match else None
            _VIEWS[target] = bool(schema and schema.returns and schema.returns[0].alias_info is not None)
        except (AttributeError, RuntimeError):
            _VIEWS[target] = False
    return _VIEWS[target]


_OP_VERDICTS: dict[str, str | None] = {}


def _check_target(target: Any, name: str) -> None:
    if not isinstance(target, str):
        raise InputError(f"{name}: a graph node has no operator name")
    if target not in _OP_VERDICTS:
        _OP_VERDICTS[target] = _op_problem(target)
    problem = _OP_VERDICTS[target]
    if problem:
        raise InputError(f"{name}: refused, the graph calls {target[:120]!r}, {problem}")


def _op_problem(target: str) -> str | None:
    match = _ATEN_TARGET.match(target)
    if not match:
        return "which is not a plain torch.ops.aten operator"
    op, overload = match.groups()
    if op in _DENIED_OPS:
        return "which reads or writes files"
    try:
        schema = getattr(getattr(torch.ops.aten, op), overload)._schema
    except (AttributeError, RuntimeError):
        return "which this version of torch does not have"
    for arg in schema.arguments:
        kind = str(arg.type)
        if "__torch__" in kind:
            return "which takes a custom object"
        if "str" in kind and arg.name not in _BENIGN_STRING_ARGS:
            return f"which takes a free-text argument ({arg.name})"
    return None
