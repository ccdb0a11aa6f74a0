"""First view in the real app: from opening the page to the first frame with the anatomy drawn.

    python -m bench --first-view-only     # also rewrites the first-view section of docs/benchmarks.md
    python -m bench.first_view            # prints the table only

A warm server (the sample's map computed once), and a returning visit: each measured page is new, in a browser
context that opened the app before, so Streamlit's code and the viewer's files come from its HTTP cache.
The first frame is seen from outside, in Chromium's screencast of the page (every frame it draws, stamped
when drawn): the first one whose axial pane holds the anatomy, timed from the page's navigation start. The
breakdown comes from inside the page: navigation to the websocket, the script run and the component's mount
(websocket open to the first request for the image), the fetch, the decode, and the draw (the viewer's marks).
"""

from __future__ import annotations

import base64
import io
import os
import statistics
import tempfile
import time

import numpy as np
from playwright.sync_api import Error as PlaywrightError

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
  const app = document.querySelector('[data-testid="stApp"]');
  if (app?.dataset.testScriptState === 'running') window.__fv.scriptRunning ??= performance.now();
  if (app?.dataset.testScriptState === 'notRunning' && window.__fv.scriptRunning) window.__fv.scriptDone ??= performance.now();
}).observe(document, {subtree: true, childList: true, attributes: true});
"""
BREAKDOWN_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const mark = (name) => performance.getEntriesByName(name)[0]?.startTime;
  const image = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/static/cv/') && e.name.endsWith('.gz') && !e.name.includes('.uint8.'))[0];
  return {origin: performance.timeOrigin, domContentLoaded: nav.domContentLoadedEventEnd,
          wsOpen: window.__fv.wsOpen, wsFirstMessage: window.__fv.wsFirstMessage, root: window.__fv.root,
          scriptRunning: window.__fv.scriptRunning, scriptDone: window.__fv.scriptDone,
          fetchStart: image?.startTime, fetchEnd: image?.responseEnd, transferred: image?.transferSize,
          decoded: mark('camviewer:anatomy-decoded'), shown: mark('camviewer:anatomy-shown')};
}"""
STAGES = [
    ("page and code (navigation to websocket open)", None, "wsOpen"),
    ("script run and component mount (websocket open to the image request)", "wsOpen", "fetchStart"),
    ("fetch of the image", "fetchStart", "fetchEnd"),
    ("decode (response to decoded volume)", "fetchEnd", "decoded"),
    ("draw (decoded to first full frame)", "decoded", "shown"),
]


def _drawn_fraction(png: bytes, box: tuple[float, float, float, float] | None = None) -> float:
    """Fraction of the pane's pixels that look like anatomy: grey (not coloured), neither near black nor near
    white. A blank page (white), the dark theme before the image (black) and the map's colours all score ~0."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    rgb = np.asarray(image.crop(tuple(round(v) for v in box)) if box else image, dtype=np.int16)
    grey = rgb.mean(axis=2)
    return float(((grey > 40) & (grey < 220) & (np.ptp(rgb, axis=2) < 25)).mean())


def visit(context, url: str, drawn_at: float) -> dict:
    """One returning visit: a new page, filmed by Chromium's screencast (each frame stamped when it was drawn)
    until the viewer is ready; the first frame whose pane holds the anatomy is the first view."""
    page = context.new_page()
    page.add_init_script(WATCH)
    cdp = context.new_cdp_session(page)
    frames: list[tuple[float, bytes]] = []

    def on_frame(event: dict) -> None:
        frames.append((event["metadata"]["timestamp"], base64.b64decode(event["data"])))
        try:
            cdp.send("Page.screencastFrameAck", {"sessionId": event["sessionId"]})
        except PlaywrightError:  # the page closed meanwhile
            pass

    cdp.on("Page.screencastFrame", on_frame)
    cdp.send("Page.startScreencast", {"format": "png", "maxWidth": VIEWPORT["width"], "maxHeight": VIEWPORT["height"]})
    page.goto(url, wait_until="commit")
    page.wait_for_selector(f'{ROOT_SEL}[data-ready="1"]', timeout=120_000)
    pane = page.locator('[data-testid="cv-canvas-axial"]').bounding_box()  # where the pane settled on this page
    box = (pane["x"], pane["y"], pane["x"] + pane["width"], pane["y"] + pane["height"])
    seen, checked, deadline = None, 0, time.time() + 30
    while seen is None and time.time() < deadline:  # frames arrive asynchronously: read them as they come
        page.wait_for_timeout(50)
        for stamp, png in frames[checked:]:
            if _drawn_fraction(png, box) >= drawn_at:
                seen = stamp
                break
        checked = len(frames)
    try:
        cdp.send("Page.stopScreencast")
    except PlaywrightError:
        pass
    inside = page.evaluate(BREAKDOWN_JS)
    page.close()
    if seen is None:
        raise RuntimeError(f"the anatomy never appeared in the pane ({len(frames)} frames)")
    inside["screencast"] = seen * 1000 - inside["origin"]
    inside["frames"] = len(frames)
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
        drawn_at = 0.9 * _drawn_fraction(first.screenshot(clip=clip))  # the whole image, not a partial load
        first.close()
        rows = [visit(context, url, drawn_at) for _ in range(visits)]
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
        f"| **first frame with the anatomy (screencast, from outside)** | **{median('screencast'):.2f}** | "
        + ", ".join(f"{r['screencast'] / 1000:.2f}" for r in rows)
        + " |",
        f"| the viewer's own mark (anatomy shown) | {median('shown'):.2f} | "
        + ", ".join(f"{r['shown'] / 1000:.2f}" for r in rows)
        + " |",
    ]
    for name, start, end in STAGES:
        spans = [(r[end] - (r[start] if start else 0)) / 1000 for r in rows]
        lines.append(f"| {name} | {statistics.median(spans):.2f} | " + ", ".join(f"{s:.2f}" for s in spans) + " |")
    script = [(r["scriptDone"] - r["scriptRunning"]) / 1000 for r in rows if r.get("scriptDone")]
    if script:
        lines.append(
            f"| of which the script run itself (Streamlit's running state) | {statistics.median(script):.2f} | "
            + ", ".join(f"{s:.2f}" for s in script)
            + " |"
        )
    sizes = sorted({r["transferred"] for r in rows})
    lines += ["", f"Bytes transferred for the image per visit: {', '.join(str(s) for s in sizes)} (0: from the cache)."]
    return "\n".join(lines)


def main() -> str:
    return table(run())


if __name__ == "__main__":
    print(main())
