"""The viewer's browser code as static files: published once per content hash, eager modules in one bundle.

The modules in js/ are plain ES modules (run as they are by Node's tests and the benchmark harnesses). For the
page, the ones needed at start are joined into one file, `camviewer.js`, so a page load asks the server for one
file instead of a dozen (each is revalidated on every load, and Streamlit's static route sets no cache headers).
The join is mechanical and only accepts this code's own style, failing loudly otherwise: single-line
`import { a, b } from "./x.js";` and `export function|class|const|async function`. Each module becomes a
function scope, so top-level names cannot collide. Modules loaded on demand (the 3D pane, the PNG export)
stay separate files next to the bundle.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from viewer.colormap import NAMES, lut
from viewer.publish import STATIC_URL, digest, static_folder

JS_DIR = Path(__file__).parent / "js"
ENTRY = "main.js"
LAZY_MODULES = ("render3d.js", "camera3d.js", "shaders3d.js", "export.js")
BUNDLE = "camviewer.js"
_IMPORT = re.compile(r'^import \{([^}]*)\} from "\./([\w-]+\.js)";$', re.M)
_EXPORT = re.compile(r"^export (?:async )?(?:function\*?|class|const|let) (\w+)", re.M)
_published: dict[str, str] = {}


def _scope_name(module: str) -> str:
    return "__cv_" + module.removesuffix(".js").replace("-", "_")


def bundle(js_dir: Path = JS_DIR, entry: str = ENTRY) -> str:
    """The eager modules reachable from `entry` as one ES module exporting what `entry` exports."""
    sources: dict[str, str] = {}
    order: list[str] = []

    def visit(name: str, stack: tuple[str, ...] = ()) -> None:
        if name in order:
            return
        if name in stack:
            raise ValueError(f"import cycle: {' -> '.join((*stack, name))}")
        text = (js_dir / name).read_text()
        leftover = [
            line
            for line in text.splitlines()
            if line.startswith(("import ", "export ")) and not (_IMPORT.match(line) or _EXPORT.match(line))
        ]
        if leftover:
            raise ValueError(f"{name}: the bundler does not understand {leftover[0]!r}")
        for _, dep in _IMPORT.findall(text):
            if dep in LAZY_MODULES:
                raise ValueError(f"{name} imports {dep} statically; it must stay lazy (import())")
            visit(dep, (*stack, name))
        sources[name] = text
        order.append(name)

    visit(entry)
    parts = ["// camviewer viewer: generated from viewer/component/js/ by viewer/component/assets.py. Do not edit."]
    for name in order:
        text = sources[name]
        exports = _EXPORT.findall(text)
        body = _IMPORT.sub(lambda m: f"const {{{m.group(1).strip()}}} = {_scope_name(m.group(2))};", text)
        body = re.sub(r"^export (?=(?:async )?(?:function|class|const|let) )", "", body, flags=re.M)
        parts.append(f"const {_scope_name(name)} = (() => {{\n{body}\nreturn {{ {', '.join(exports)} }};\n}})();")
    entry_exports = ", ".join(_EXPORT.findall(sources[entry]))
    parts.append(f"export const {{ {entry_exports} }} = {_scope_name(entry)};")
    return "\n".join(parts) + "\n"


def asset_files() -> dict[str, bytes]:
    """File name -> content of everything the browser loads from the assets folder."""
    files = {name: (JS_DIR / name).read_bytes() for name in sorted(p.name for p in JS_DIR.glob("*.js"))}
    files[BUNDLE] = bundle().encode()
    tables = {name: lut(name).ravel().tolist() for name in NAMES}
    files["colourmaps.json"] = json.dumps(tables, separators=(",", ":")).encode()
    return files


def publish_assets(static_root: Path) -> str:
    """Copy the viewer's code and colour tables to static/cv/js-<hash>/ (once); return their URL."""
    # Keyed by the files' sizes and times too: an edited module gets a new folder (and URL) without a restart.
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(JS_DIR.glob("*.js")))
    key = f"{Path(static_root).resolve()}|{stamp}"
    if key not in _published:
        files = asset_files()
        name = f"js-{digest(*[n.encode() + b'=' + files[n] for n in sorted(files)])[:16]}"
        folder = static_folder(static_root) / name
        if not folder.exists():
            tmp = folder.with_name(f".{name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for file_name, content in files.items():
                (tmp / file_name).write_bytes(content)
            try:
                tmp.rename(folder)
            except OSError:  # another process published the same version first
                shutil.rmtree(tmp, ignore_errors=True)
        _published[key] = f"{STATIC_URL}/{name}"
    return _published[key]
