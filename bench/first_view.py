"""First view in the real app: from opening the page to the first frame with the anatomy drawn.

    python -m bench --first-view-only     # also rewrites the first-view section of docs/benchmarks.md
    python -m bench.first_view            # prints the table only

A warm server (the sample's map computed once), and a returning visit: each measured page is new, in a browser
context that opened the app before, so Streamlit's code and the viewer's files come from its HTTP cache.
The first frame is seen from outside, by screenshots of the axial pane taken as fast as Chromium gives them,
and timed from the page's navigation start. The breakdown comes from inside the page: navigation to the
websocket, the script run (websocket open to the viewer's element), the component's mount (element to the
first request for the image), the fetch, the decode, and the draw (the viewer's own performance marks).
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time

import numpy as np

from bench.browser import CHROMIUM_ARGS, chromium_path, streamlit_server

VIEWPORT = {"width": 1400, "height": 900}
ROOT_SEL = '[data-testid="cv-root"]'
# Installed before the page's own scripts: when the websocket opens and the viewer's root appears.
WATCH = """
window.__fv = {};
const NativeSocket = window.WebSocket;
window.WebSocket = function (...args) {
  const socket = new NativeSocket(...args);
  socket.addEventListener('open', () => { window.__fv.wsOpen ??= performance.now(); });
  socket.addEventListener('message', () => { window.__fv.wsFirstMessage ??= performance.now(); });
  return socket;
};
window.WebSocket.prototype = NativeSocket.prototype;
Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
new MutationObserver(() => {
  if (!window.__fv.root && document.querySelector('[data-testid="cv-root"]')) window.__fv.root = performance.now();
}).observe(document, {subtree: true, childList: true});
"""
BREAKDOWN_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const mark = (name) => performance.getEntriesByName(name)[0]?.startTime;
  const image = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/static/cv/') && e.name.endsWith('.gz') && !e.name.includes('.uint8.'))[0];
  return {origin: performance.timeOrigin, domContentLoaded: nav.domContentLoadedEventEnd,
          wsOpen: window.__fv.wsOpen, wsFirstMessage: window.__fv.wsFirstMessage, root: window.__fv.root,
          fetchStart: image?.startTime, fetchEnd: image?.responseEnd, transferred: image?.transferSize,
          decoded: mark('camviewer:anatomy-decoded'), shown: mark('camviewer:anatomy-shown')};
}"""
STAGES = [
    ("page and code (navigation to websocket open)", None, "wsOpen"),
    ("script run (websocket open to the viewer's element)", "wsOpen", "root"),
    ("component mount (element to the image request)", "root", "fetchStart"),
    ("fetch of the image", "fetchStart", "fetchEnd"),
    ("decode (response to decoded volume)", "fetchEnd", "decoded"),
    ("draw (decoded to first full frame)", "decoded", "shown"),
]


def _drawn_fraction(png: bytes) -> float:
    """Fraction of the pane's pixels that are not near black: anatomy has arrived when it is large."""
    from PIL import Image

    gray = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    return float((gray > 30).mean())


def visit(context, url: str, clip: dict, drawn_at: float) -> dict:
    """One returning visit: a new page; screenshots of the pane until the anatomy is there."""
    page = context.new_page()
    page.add_init_script(WATCH)
    page.goto(url, wait_until="commit")
    seen_at = None
    deadline = time.time() + 120
    while time.time() < deadline:
        png = page.screenshot(clip=clip)
        if _drawn_fraction(png) >= drawn_at:
            seen_at = time.time()
            break
    page.wait_for_selector(f'{ROOT_SEL}[data-ready="1"]', timeout=120_000)
    inside = page.evaluate(BREAKDOWN_JS)
    page.close()
    if seen_at is None:
        raise RuntimeError("the anatomy never appeared in the pane")
    inside["screenshot"] = seen_at * 1000 - inside["origin"]
    return inside


def run(visits: int = 5) -> dict:
    from playwright.sync_api import sync_playwright

    state = tempfile.mkdtemp(prefix="camviewer-first-view-")
    with streamlit_server({"CAMVIEWER_STATE_DIR": state}) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport=VIEWPORT)
        first = context.new_page()  # the first visit: computes the sample's map and fills the HTTP cache
        first.goto(url)
        first.wait_for_selector(f'{ROOT_SEL}[data-ready="1"][data-map-key]', timeout=600_000)
        pane = first.locator('[data-testid="cv-canvas-axial"]').first.bounding_box()
        clip = {"x": pane["x"], "y": pane["y"], "width": pane["width"], "height": pane["height"]}
        drawn_at = 0.5 * _drawn_fraction(first.screenshot(clip=clip))
        first.close()
        rows = [visit(context, url, clip, drawn_at) for _ in range(visits)]
        browser.close()
    return {"rows": rows, "load": os.getloadavg()[0], "cpus": os.cpu_count()}


def table(result: dict) -> str:
    rows = result["rows"]
    median = lambda key: statistics.median(r[key] for r in rows) / 1000  # noqa: E731
    lines = [
        f"Returning visit, warm server, {VIEWPORT['width']}×{VIEWPORT['height']}, median of {len(rows)} "
        f"(load average {result['load']:.1f} on {result['cpus']} CPUs; headless Chromium, SwiftShader).",
        "",
        "| | median (s) | each visit (s) |",
        "|---|---:|---|",
        f"| **first frame with the anatomy (screenshots, from outside)** | **{median('screenshot'):.2f}** | "
        + ", ".join(f"{r['screenshot'] / 1000:.2f}" for r in rows)
        + " |",
        f"| the viewer's own mark (anatomy shown) | {median('shown'):.2f} | "
        + ", ".join(f"{r['shown'] / 1000:.2f}" for r in rows)
        + " |",
    ]
    for name, start, end in STAGES:
        spans = [(r[end] - (r[start] if start else 0)) / 1000 for r in rows]
        lines.append(f"| {name} | {statistics.median(spans):.2f} | " + ", ".join(f"{s:.2f}" for s in spans) + " |")
    sizes = sorted({r["transferred"] for r in rows})
    lines += ["", f"Bytes transferred for the image per visit: {', '.join(str(s) for s in sizes)} (0: from the cache)."]
    return "\n".join(lines)


def main() -> str:
    return table(run())


if __name__ == "__main__":
    print(main())
