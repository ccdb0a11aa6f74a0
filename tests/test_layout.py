"""The layout of `explain/`: imports only go down the levels below, and no module imports itself back.

Imports are read from the source (ast), at module level and inside functions alike: a lazy import is an
import too, and lazy imports formed most of the old reader circle. docs/decisions.md ("Layout") has the
diagram and the rule of each package.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

# Bottom to top. A module may import its own group (without a cycle) and any group on a lower level.
LEVELS: tuple[tuple[str, int], ...] = (
    ("explain", 0),  # the package itself: __version__ only
    ("explain.errors", 0),
    ("explain.quiet", 0),
    ("explain.share", 0),  # what a URL's parameters mean: text only
    ("explain.limits", 1),
    ("explain.io", 2),
    ("explain.models", 3),
    ("explain.cam", 4),
    ("explain.policy", 5),
    ("explain.cache", 5),
    ("explain.samples", 5),
    ("explain.domain", 5),  # does the image suit the model's card
    ("explain.request", 6),
    ("explain.predict", 6),
    ("explain.trust", 7),
    ("explain.cohort", 8),
    ("explain.report", 8),
    ("explain.__main__", 9),
)


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `package_dir` (its parent is the import root)."""
    root = package_dir.parent
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(path: Path, known: set[str], package: str) -> set[str]:
    """The modules of `package` that `path` imports anywhere in its body (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from a.b import c` imports a.b, and a.b.c as well when c is a module
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == package or name.startswith(package + "."):
                while name not in known and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in known:
                    found.add(name)
    return found


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    files = module_files(package_dir)
    known = set(files)
    return {name: imports_of(path, known, package_dir.name) - {name} for name, path in files.items()}


def group_of(module: str, levels: tuple[tuple[str, int], ...]) -> tuple[str, int] | None:
    matches = [(g, lv) for g, lv in levels if module == g or module.startswith(g + ".")]
    return max(matches, key=lambda m: len(m[0])) if matches else None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def violations(graph: dict[str, set[str]], levels: tuple[tuple[str, int], ...]) -> list[str]:
    """Every import that goes up a level or sideways into another group, and every module with no level."""
    problems = []
    for module, targets in sorted(graph.items()):
        mine = group_of(module, levels)
        if mine is None:
            problems.append(f"{module} has no level in the table")
            continue
        for target in sorted(targets):
            theirs = group_of(target, levels)
            if theirs is None or theirs[0] == mine[0]:
                continue
            if theirs[1] >= mine[1]:
                where = "up" if theirs[1] > mine[1] else "sideways"
                problems.append(f"{module} (level {mine[1]}) imports {target} (level {theirs[1]}): {where}")
    return problems


def test_explain_has_no_import_cycle():
    graph = import_graph(ROOT / "explain")
    assert len(graph) > 40 and "explain.io.volume" in graph["explain.io.load"]  # the reader found the modules
    assert cycles(graph) == []


def test_explain_imports_only_go_down_the_levels():
    assert violations(import_graph(ROOT / "explain"), LEVELS) == []


def test_every_package_says_what_it_holds_and_what_it_may_import():
    for init in sorted((ROOT / "explain").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc, init


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_checker_finds_a_lazy_cycle_and_an_upward_import(tmp_path):
    """A self-test: the rules must be able to fail, on a cycle closed only by an import inside a function."""
    pkg = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low/__init__.py": "",
            "pkg/low/a.py": "from pkg.low.b import helper\n",
            "pkg/low/b.py": "def helper():\n    from pkg.low import a\n    return a\n",
            "pkg/high.py": "import pkg.low.a\n",
            "pkg/sneaky.py": "def f():\n    from pkg.high import g\n",
        },
    )
    graph = import_graph(pkg)
    assert cycles(graph) == [["pkg.low.a", "pkg.low.b"]]
    levels = (("pkg", 0), ("pkg.low", 1), ("pkg.sneaky", 1), ("pkg.high", 2))
    assert violations(graph, levels) == ["pkg.sneaky (level 1) imports pkg.high (level 2): up"]
    # The fixed tree passes: the function-level import is gone, and the sneaky module moved up a level.
    (pkg / "low" / "b.py").write_text("def helper():\n    return 1\n")
    assert cycles(import_graph(pkg)) == []
    assert violations(import_graph(pkg), (("pkg", 0), ("pkg.low", 1), ("pkg.high", 2), ("pkg.sneaky", 3))) == []
