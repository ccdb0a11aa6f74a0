"""Every viewer figure of docs/benchmarks.md, measured in real Chromium (headless, SwiftShader).

    python -m bench --viewer            # also rewrites the viewer section of docs/benchmarks.md
    python -m bench.viewer_speed        # prints the tables only

The viewer runs on its demo page (bench/viewer_demo.py), fed through the same Python API the app uses.
Timings are taken in the page (performance marks, DOM attributes watched by a MutationObserver installed from
outside), each load in a fresh browser context so nothing comes from the HTTP cache. The machine's load
average is printed with the figures: on a shared machine, read the ratios to the frame floor.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.browser import CHROMIUM_ARGS, chromium_path, streamlit_server
from bench.demo_data import write_ct
from tests.viewer_page import STEP_JS, WebSocketBytes

VIEWPORT = {"width": 1400, "height": 1000}
ROOT_SEL = '[data-testid="cv-root"]'
WATCH = """
window.__bench = {};
new MutationObserver(() => {
  const r = document.querySelector('[data-testid="cv-root"]');
  if (!r) return;
  if (r.getAttribute('data-ready') === '1' && !window.__bench.anatomy) window.__bench.anatomy = performance.now();
  if (r.getAttribute('data-map-url') && !window.__bench.map) window.__bench.map = performance.now();
}).observe(document, {subtree: true, childList: true, attributes: true});
"""
# The same loop as a slice step, but the only change is one line of text: what any frame costs on this page.
FLOOR_JS = STEP_JS.replace("key(n % 20 < 10 ? 'ArrowUp' : 'ArrowDown');", "document.title = 'camviewer ' + n;")


def load_once(browser, url: str, want_map: bool = True, returning: str | None = None) -> dict:
    """One page load in a fresh context: times (s) from navigation and from the server's data-ready moment.

    returning: a page of the same app opened first in that context, so that Streamlit's and the viewer's code
    come from the browser's cache while the image itself is new to it (a returning user opening an image).
    """
    context = browser.new_context(viewport=VIEWPORT)
    if returning:
        warm = context.new_page()
        warm.goto(returning)
        warm.wait_for_selector(f'{ROOT_SEL}[data-ready="1"]', timeout=120_000)
        warm.close()
    page = context.new_page()
    page.add_init_script(WATCH)
    page.goto(url)
    page.wait_for_selector(f'{ROOT_SEL}[data-ready="1"]', timeout=300_000)
    if want_map:
        page.wait_for_function("() => window.__bench.map", timeout=120_000)
    seen = page.evaluate(
        """() => ({bench: window.__bench, origin: performance.timeOrigin,
        bytes: performance.getEntriesByType('resource').filter(e => e.name.includes('/static/cv/') && e.name.endsWith('.gz'))
          .map(e => ({name: e.name, size: e.encodedBodySize}))})"""
    )
    server = float(re.search(r"server-data-ready-epoch=([0-9.]+)", page.content()).group(1)) * 1000 - seen["origin"]
    context.close()
    out = {
        "page_to_anatomy": seen["bench"]["anatomy"] / 1000,
        "server_to_anatomy": (seen["bench"]["anatomy"] - server) / 1000,
        "map_bytes": [b["size"] for b in seen["bytes"] if ".uint8.gz" in b["name"]],
        "anatomy_bytes": sum(b["size"] for b in seen["bytes"] if ".uint8.gz" not in b["name"]),
    }
    if want_map:
        out["server_to_map"] = (seen["bench"]["map"] - server) / 1000
    return out


def steps(page, planes=("axial", "coronal", "sagittal"), n: int = 60) -> dict:
    out = {}
    for plane in planes:
        t = page.evaluate(STEP_JS, [plane, n])
        out[plane] = {k: [float(np.percentile(t[k], 50)), float(np.percentile(t[k], 95))] for k in ("js", "frame")}
    floor = page.evaluate(FLOOR_JS, ["axial", n])["frame"]
    out["floor"] = [float(np.percentile(floor, 50)), float(np.percentile(floor, 95))]
    return out


def control_bytes(page) -> tuple[int, int]:
    """Websocket bytes during 20 display-control changes, crosshair moves and hovers included; and the count."""
    ws = WebSocketBytes(page)
    page.reload()
    page.wait_for_selector(f'{ROOT_SEL}[data-ready="1"]', timeout=120_000)
    page.wait_for_timeout(1500)
    ws.reset()
    box = page.locator('.cv-grid [data-plane="axial"] .cv-stage').bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(cx - 30, cy + 20)
    page.mouse.move(cx, cy, steps=5)
    page.mouse.down(button="right")
    page.mouse.move(cx + 50, cy + 30, steps=5)
    page.mouse.up(button="right")
    for testid, value in (("cv-opacity", "0.8"), ("cv-threshold", "0.4"), ("cv-opacity", "0.3")):
        page.locator(f'[data-testid="{testid}"]').fill(value)
    page.select_option('[data-testid="cv-colourmap"]', "hot")
    page.select_option('[data-testid="cv-preset"]', "CT bone")
    page.locator(ROOT_SEL).focus()
    for key in ("ArrowUp", "ArrowDown", "+", "-", "0", "r", "r", "o", "o", "m", "m"):
        page.keyboard.press(key)
    page.wait_for_timeout(1500)
    return ws.sent + ws.received, 20


def view_3d(page) -> dict:
    """Time from choosing the 2x2 layout to the first 3D frame, and frame times while rotating."""
    page.evaluate("() => { window.__t3d = performance.now(); }")
    page.select_option('[data-testid="cv-layout"]', "2x2")
    page.wait_for_selector('[data-plane="3d"][data-ready="1"]', timeout=60_000)
    first = page.evaluate("() => performance.now() - window.__t3d") / 1000
    frames = page.evaluate(
        """async (n) => {
      const c = document.querySelector('[data-testid="cv-canvas-3d"]');
      const r = c.getBoundingClientRect();
      const at = (x) => ({clientX: r.left + x, clientY: r.top + r.height / 2, bubbles: true, pointerId: 1, buttons: 1});
      c.dispatchEvent(new PointerEvent('pointerdown', at(100)));
      const out = [];
      for (let i = 1; i <= n; i++) {
        const t0 = performance.now();
        c.dispatchEvent(new PointerEvent('pointermove', at(100 + 4 * i)));
        await new Promise((res) => requestAnimationFrame(() => requestAnimationFrame(res)));
        out.push(performance.now() - t0);
      }
      c.dispatchEvent(new PointerEvent('pointerup', at(100 + 4 * n)));
      return out;
    }""",
        20,
    )
    return {"first_s": first, "rotate_ms": [float(np.percentile(frames, 50)), float(np.percentile(frames, 95))]}


def run(loads: int = 3) -> dict:
    from playwright.sync_api import sync_playwright

    results: dict = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        ct_path = write_ct(Path(tmp))
        env = {"CAMVIEWER_DEMO_CT": str(ct_path)}
        with streamlit_server(env, script="bench/viewer_demo.py") as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
            results["chromium"] = browser.version
            load_once(browser, f"{url}/?case=sample")  # a warm server: modules imported, files published
            results["sample"] = [load_once(browser, f"{url}/?case=sample&mask=0") for _ in range(loads)]
            results["sample_returning"] = [
                load_once(browser, f"{url}/?case=sample&mask=0", returning=f"{url}/?case=2d") for _ in range(loads)
            ]
            load_once(browser, f"{url}/?case=ct")  # publishes the CT file once (the upload's bytes, unchanged)
            results["ct"] = [load_once(browser, f"{url}/?case=ct", returning=f"{url}/?case=2d") for _ in range(loads)]
            results["ct_compact"] = [
                load_once(browser, f"{url}/?case=ct-array&run={time.time()}", returning=f"{url}/?case=2d")
            ]
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{url}/?case=sample&mask=1")
            page.wait_for_selector(f'{ROOT_SEL}[data-ready="1"]', timeout=120_000)
            page.wait_for_timeout(1000)
            results["sample_steps"] = steps(page)
            results["ws_bytes"], results["ws_changes"] = control_bytes(page)
            results["sample_3d"] = view_3d(page)
            page.goto(f"{url}/?case=ct")
            page.wait_for_selector(f'{ROOT_SEL}[data-ready="1"]', timeout=300_000)
            page.wait_for_timeout(4000)  # steady state: the reordered copy for sagittal slices is built by now
            results["ct_steps"] = steps(page)
            results["ct_3d"] = view_3d(page)
            browser.close()
    results["load_after"] = os.getloadavg()
    return results


def _med(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if key in r]
    return f"{statistics.median(values):.2f}" if values else "-"


def table(r: dict) -> str:
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} ({os.cpu_count()} cores), Chromium "
        f"{r['chromium']} headless with SwiftShader, viewport 1400 x 1000. Load average (1 min) "
        f"{r['load_before'][0]:.1f} before, {r['load_after'][0]:.1f} after.",
        "",
        "| case | bytes to the browser | page load → anatomy (s) | server data ready → anatomy (s) "
        "| server data ready → map (s) | map bytes |",
        "|---|---|---|---|---|---|",
    ]
    cases = (
        ("sample MRI 197x233x189 (its .nii.gz as is), first visit", r["sample"]),
        ("the same, returning visit (app code cached, image new)", r["sample_returning"]),
        ("CT 512x512x300 int16 (its .nii.gz as is), returning visit", r["ct"]),
        ("CT 512x512x300, compact copy written by the server", r["ct_compact"]),
    )
    for name, rows in cases:
        map_bytes = max((max(x["map_bytes"]) for x in rows if x["map_bytes"]), default=0)
        lines.append(
            f"| {name} | {rows[0]['anatomy_bytes'] / 2**20:.1f} MiB | {_med(rows, 'page_to_anatomy')} | "
            f"{_med(rows, 'server_to_anatomy')} | {_med(rows, 'server_to_map')} | {map_bytes / 1024:.0f} KiB |"
        )
    lines += [
        "",
        f"Medians of {len(r['sample'])} loads (the compact copy: one first load, which writes the file). First visit: an "
        "empty browser cache, so Streamlit's own code (about 60 files) downloads too; returning visit: the app was "
        "opened before with another image.",
        "",
        "| case | plane | JS per step p50 / p95 (ms) | step to painted frame p50 / p95 (ms) "
        "| frame floor p50 / p95 (ms) |",
        "|---|---|---|---|---|",
    ]
    for name, key in (("sample MRI", "sample_steps"), ("CT 512x512x300", "ct_steps")):
        s = r[key]
        floor = f"{s['floor'][0]:.1f} / {s['floor'][1]:.1f}"
        for plane in ("axial", "coronal", "sagittal"):
            js, frame = s[plane]["js"], s[plane]["frame"]
            lines.append(
                f"| {name} | {plane} | {js[0]:.1f} / {js[1]:.1f} | {frame[0]:.1f} / {frame[1]:.1f} | {floor} |"
            )
    lines += [
        "",
        f"Websocket bytes during {r['ws_changes']} display-control changes (window, presets, opacity, threshold, "
        f"colour map, zoom, radiological, overlay, maximise, slice steps, crosshair click and hover): "
        f"**{r['ws_bytes']}**.",
        "",
        f"3D pane (built when first shown): sample {r['sample_3d']['first_s']:.2f} s to its first frame, rotation "
        f"{r['sample_3d']['rotate_ms'][0]:.0f} / {r['sample_3d']['rotate_ms'][1]:.0f} ms per frame (p50 / p95); "
        f"CT {r['ct_3d']['first_s']:.2f} s, rotation {r['ct_3d']['rotate_ms'][0]:.0f} / "
        f"{r['ct_3d']['rotate_ms'][1]:.0f} ms.",
    ]
    return "\n".join(lines) + "\n"


def main() -> str:
    text = table(run())
    print(text)
    return text


if __name__ == "__main__":
    main()
