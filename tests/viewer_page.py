"""Helpers for the viewer's browser tests: the demo page, pixels as shown on screen, and expected positions.

Expected positions are computed here by hand from the display conventions (axial: anterior up; coronal:
superior up; sagittal: anterior left; radiological: patient's right on screen left), for volumes stored
RAS-aligned with 1 mm voxels like the sample; nothing is taken from the viewer's own geometry module.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

from bench.browser import chromium_path
from tests.conftest import SAMPLE

if chromium_path() is None or os.environ.get("CAMVIEWER_SKIP_BROWSER"):
    if os.environ.get("CAMVIEWER_REQUIRE_BROWSER"):
        raise RuntimeError("browser tests are required here but Chromium is missing (apt-get install -y chromium)")
    pytest.skip("Chromium not installed (apt-get install -y chromium); browser tests skipped", allow_module_level=True)

SAMPLE_SHAPE = (197, 233, 189)
LESIONS = json.loads((SAMPLE / "case_brain" / "lesions.json").read_text())["lesions"]
BRIGHT = next(x for x in LESIONS if x["label"] == 1)
EDGE = 26  # px: orientation letters and the scale bar live near the stage edges


ROOT_SEL = '[data-testid="cv-root"]'
# Generous deadlines: conditions are waited for, never times, so a slow shared machine only takes longer.
DEADLINE_MS = 240_000


def settled(page) -> None:
    """Two animation frames: whatever the viewer drew synchronously (or queued for the next frame) is on screen."""
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() => done())))")


def viewer_state(page) -> dict:
    """The viewer's own account of what it has drawn (data-* attributes on its root)."""
    return page.evaluate(
        """(sel) => { const r = document.querySelector(sel); if (!r) return {};
        return {ready: r.dataset.ready, map: r.dataset.mapKey || '', title: r.dataset.mapTitle || '',
                pending: r.dataset.pendingKey || '', cross: r.dataset.cross || ''}; }""",
        ROOT_SEL,
    )


def wait_drawn(page, previous: str | None = None, timeout: int = DEADLINE_MS) -> dict:
    """Wait until the whole image is drawn with a map on it that is not `previous` and nothing else is pending."""
    page.wait_for_function(
        """([sel, previous]) => { const r = document.querySelector(sel);
        return r && r.dataset.ready === '1' && r.dataset.mapKey && r.dataset.mapKey !== previous
               && !r.dataset.pendingKey; }""",
        arg=[ROOT_SEL, previous or ""],
        timeout=timeout,
    )
    settled(page)
    return viewer_state(page)


def wait_cross_moved(page, previous: str, timeout: int = DEADLINE_MS) -> None:
    """Wait until the panes were drawn at a crosshair other than `previous` (data-cross is set after drawing)."""
    page.wait_for_function(
        "([sel, previous]) => { const r = document.querySelector(sel); return r && r.dataset.cross !== previous; }",
        arg=[ROOT_SEL, previous],
        timeout=timeout,
    )
    settled(page)


def wait_until(page, condition, timeout_s: float = DEADLINE_MS / 1000) -> None:
    """Poll a Python-side condition (one fed by page events) until it holds; fail at the deadline."""
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        page.wait_for_timeout(50)  # lets Playwright deliver the page's events; a poll step, not a wait for the app


def open_view(page, base: str, query: str, wait_map: bool = True) -> None:
    page.goto(f"{base}/?{query}")
    page.wait_for_selector(f'{ROOT_SEL}[data-ready="1"]', timeout=DEADLINE_MS)
    if wait_map:
        wait_drawn(page)
    else:
        settled(page)


def stage_pixels(page, plane: str) -> np.ndarray:
    """RGB of a pane's stage as composited on screen (H, W, 3)."""
    from PIL import Image

    png = page.locator(
        f'.cv-grid [data-plane="{plane}"] .cv-stage, .cv-grid [data-plane="{plane}"] canvas'
    ).first.screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def without_marks(page, hot: np.ndarray) -> np.ndarray:
    """Warm pixels of the 3D render, leaving out the marks drawn over it."""
    marks = marks_mask(page)
    h, w = min(hot.shape[0], marks.shape[0]), min(hot.shape[1], marks.shape[1])
    return hot[:h, :w] & ~marks[:h, :w]


def marks_mask(page) -> np.ndarray:
    """Where the 3D pane's 2D marks (crosshair arms, letters) are drawn: excluded from its pixel checks."""
    alpha = page.evaluate(
        """() => { const c = document.querySelector('[data-plane="3d"] canvas.cv-marks');
        return {w: c.width, h: c.height, a: Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((_, n) => n % 4 === 3))}; }"""
    )
    mask = np.asarray(alpha["a"], np.uint8).reshape(alpha["h"], alpha["w"]) > 0
    grown = mask.copy()  # antialiased edges of the marks
    for dy in (-2, -1, 0, 1, 2):
        for dx in (-2, -1, 0, 1, 2):
            grown |= np.roll(np.roll(mask, dy, 0), dx, 1)
    return grown


def warm(rgb: np.ndarray, border: int = EDGE) -> np.ndarray:
    """Overlay pixels: clearly coloured (anatomy is grey) and warm (red well above blue); edges ignored."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    out = (r - b > 40) & (np.maximum(np.abs(r - g), np.abs(g - b)) > 25)
    out[:border] = out[-border:] = False
    out[:, :border] = out[:, -border:] = False
    return out


def attr(page, selector: str, name: str) -> str:
    return page.locator(selector).first.get_attribute(name) or ""


def slice_index(page, plane: str) -> int:
    return int(attr(page, f'.cv-grid [data-plane="{plane}"]', "data-slice"))


def expected_xy(plane: str, voxel, stage: tuple[int, int], radiological: bool = True, zoom: float = 1.0):
    """Screen position (x, y) in the stage of a voxel centre of the 1 mm RAS sample, by the conventions."""
    nx, ny, nz = SAMPLE_SHAPE
    i, j, k = voxel
    width, height = {"axial": (nx, ny), "coronal": (nx, nz), "sagittal": (ny, nz)}[plane]
    if plane == "sagittal":
        col, row = ny - 1 - j, nz - 1 - k  # anterior left, superior up
    else:
        col = nx - 1 - i if radiological else i
        row = ny - 1 - j if plane == "axial" else nz - 1 - k
    scale = min(stage[0] / width, stage[1] / height) * zoom
    x0 = stage[0] / 2 - width * scale / 2
    y0 = stage[1] / 2 - height * scale / 2
    return x0 + (col + 0.5) * scale, y0 + (row + 0.5) * scale, scale


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


class WebSocketBytes:
    """Bytes over the page's websocket in each direction, from the moment of creation."""

    def __init__(self, page):
        self.sent = 0
        self.received = 0
        page.on("websocket", self._attach)

    def _attach(self, ws) -> None:
        ws.on("framesent", lambda payload: self._add("sent", payload))
        ws.on("framereceived", lambda payload: self._add("received", payload))

    def _add(self, direction: str, payload) -> None:
        setattr(self, direction, getattr(self, direction) + len(payload))

    def reset(self) -> None:
        self.sent = self.received = 0


# One keyboard step + the frame that shows it: JS time is the synchronous handler (dispatchEvent), frame time
# runs until a task after the next animation frame (so the frame's paint is included).
STEP_JS = """
async ([plane, steps]) => {
  const root = document.querySelector('[data-testid="cv-root"]');
  const key = (k) => root.dispatchEvent(new KeyboardEvent('keydown', {key: k, bubbles: true, cancelable: true}));
  const painted = () => new Promise((r) => requestAnimationFrame(() => {
    const ch = new MessageChannel(); ch.port1.onmessage = r; ch.port2.postMessage(0);
  }));
  key(plane[0]);
  await painted();
  const js = [], frame = [];
  for (let n = 0; n < steps; n++) {
    const t0 = performance.now();
    key(n % 20 < 10 ? 'ArrowUp' : 'ArrowDown');
    const t1 = performance.now();
    await painted();
    js.push(t1 - t0);
    frame.push(performance.now() - t0);
  }
  return {js, frame};
}
"""


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, float), q)) if len(values) else float("nan")
