"""A MONAI bundle's config read as data: the safe subset of MONAI's config language, never run.

MONAI's `ConfigParser` evaluates every `$` string with Python's `eval`, imports whatever `_target_` names, runs
`scripts/` and `logging.conf`. Here a config is JSON (`json`) or YAML (`yaml.safe_load`), and a value is resolved
only when it is asked for:
- `@id` (ids nest with `#` or `::`) is another value of the same config;
- `%file#id` is a value of another config file of the same bundle (never a path outside it);
- `$expr` is parsed with `ast` and evaluated by a small walker that knows literals, lists, tuples and dicts,
  `@` references, conditionals (`a if c else b`), comparisons, `and`/`or`/`not`, `+ - * / // %`, constant
  subscripts and `len(...)`: what real zoo configs use to choose a spacing or a weight file. Anything else
  (a call, an attribute, an import, a lambda, a name) refuses the bundle in one sentence.
`_target_` is not resolved here: callers look every name up in their own fixed tables.
"""

from __future__ import annotations

import ast
import operator
import re
from typing import Any

from explain.errors import InputError
from explain.models.files import ModelFiles

MAX_DEPTH = 64
_REF = re.compile(r"@([A-Za-z0-9_#:.\-]+)")
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}  # fmt: skip
_CMPOPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
           ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
           ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not}  # fmt: skip


def read_config(files: ModelFiles, rel: str) -> Any:
    """A config file of the bundle as plain data: JSON with `json`, YAML with `yaml.safe_load` only."""
    if rel.endswith((".yaml", ".yml")):
        import yaml

        try:
            return yaml.safe_load(files.read(rel))
        except yaml.YAMLError as e:
            raise InputError(f"{files.name}: {rel} is not valid YAML ({type(e).__name__})") from e
    return files.json(rel)


class BundleConfig:
    """Lazy, read-only resolution of ids in one config (and, through `%`, in the bundle's other configs)."""

    def __init__(self, doc: Any, files: ModelFiles, rel: str, overrides: dict[str, Any] | None = None) -> None:
        if not isinstance(doc, dict):
            raise InputError(f"{files.name}: {rel} must be a JSON or YAML object")
        self.doc, self.files, self.rel, self.overrides = doc, files, rel, dict(overrides or {})
        self._others: dict[str, BundleConfig] = {}

    def has(self, id_: str) -> bool:
        try:
            self._raw(id_)
            return True
        except InputError:
            return False

    def get(self, id_: str, _depth: int = 0) -> Any:
        """The resolved value of `id_` (references, macros and safe expressions worked out)."""
        return self.resolve(self._raw(id_), _depth)

    def raw(self, id_: str) -> Any:
        """The value as written (nothing resolved): to look at `_target_` names before resolving arguments."""
        return self._raw(id_)

    def _raw(self, id_: str) -> Any:
        key = id_.replace("::", "#")
        if key in self.overrides:
            return self.overrides[key]
        node: Any = self.doc
        for part in key.split("#"):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise InputError(f"{self.files.name}: {self.rel} has no {id_[:80]!r}")
        return node

    def resolve(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise InputError(f"{self.files.name}: {self.rel} refers to itself in a loop")
        if isinstance(value, dict):
            return {k: self.resolve(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, depth + 1) for v in value]
        if not isinstance(value, str):
            return value
        if value.startswith("$"):
            return self._expression(value[1:], depth)
        if value.startswith("@") and _REF.fullmatch(value):
            return self.get(value[1:], depth + 1)
        if value.startswith("%"):
            return self._macro(value[1:], depth)
        return value

    def _macro(self, text: str, depth: int) -> Any:
        rel, _, id_ = text.partition("#")
        rel = rel.lstrip("./")
        if not rel or ".." in rel.split("/") or not self.files.has(rel):
            raise InputError(
                f"{self.files.name}: {self.rel} refers to {text[:80]!r}, which is not a file of the bundle"
            )
        if rel not in self._others:
            self._others[rel] = BundleConfig(read_config(self.files, rel), self.files, rel)
        return self._others[rel].get(id_, depth + 1) if id_ else self._others[rel].doc

    # -- `$` expressions ------------------------------------------------------------------------------------------
    def _expression(self, text: str, depth: int) -> Any:
        refs: dict[str, str] = {}

        def placeholder(m: re.Match) -> str:
            name = f"__ref{len(refs)}"
            refs[name] = m.group(1)
            return name

        source = _REF.sub(placeholder, text)
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as e:
            raise InputError(
                f"{self.files.name}: {self.rel} holds an expression that is not Python: {text[:80]!r}"
            ) from e
        return self._eval(tree.body, refs, text, depth)

    def _eval(self, node: ast.AST, refs: dict[str, str], text: str, depth: int) -> Any:
        ev = lambda n: self._eval(n, refs, text, depth)  # noqa: E731
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in refs:
            return self.get(refs[node.id], depth + 1)
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
            return {ev(k): ev(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.IfExp):
            return ev(node.body) if ev(node.test) else ev(node.orelse)
        if isinstance(node, ast.BoolOp):
            values = [ev(v) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
            value = ev(node.operand)
            return not value if isinstance(node.op, ast.Not) else -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            sizes = [len(v) for v in (left, right) if isinstance(v, (str, list, tuple))]
            if (
                isinstance(node.op, ast.Mult)
                and sizes
                and max((abs(v) for v in (left, right) if isinstance(v, int)), default=0) > 10_000
            ):
                raise InputError(
                    f"{self.files.name}: refused, {self.rel} repeats a value too many times: {text[:80]!r}"
                )
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.Compare) and all(type(op) in _CMPOPS for op in node.ops):
            left = ev(node.left)
            for op, right_node in zip(node.ops, node.comparators):
                right = ev(right_node)
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            return ev(node.value)[node.slice.value]
        if (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len"
            and len(node.args) == 1 and not node.keywords
        ):  # fmt: skip
            return len(ev(node.args[0]))
        raise InputError(
            f"{self.files.name}: refused, {self.rel} holds the expression {('$' + text)[:100]!r}; camviewer evaluates "
            "only literals, @ references, conditionals, comparisons, arithmetic and len(), never code"
        )
