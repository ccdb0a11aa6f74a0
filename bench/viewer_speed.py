"""Viewer responsiveness in real Chromium: slice-step latency, bytes per control change, upload-to-view.

    python -m bench.viewer_speed     # or: python -m bench --viewer

Two cases: the bundled sample (197 x 233 x 189 MRI), and a synthetic CT-sized volume
(512 x 512 x 300, int16 HU) uploaded through the page's own file uploader. Per case:
p50/p95 of 50 keyboard slice steps (handler + next animation frame, timed in the
page), the same after an opacity change, websocket bytes during display-control
changes, and the time from upload to a scrollable view.
"""

from __future__ import annotations

import gzip
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from bench.browser import SCRUB_JS, SET_RANGE_JS, chromium_page, percentile, streamlit_server, wait_ready


def synthetic_ct(shape: tuple[int, int, int] = (512, 512, 300), seed: int = 0) -> np.ndarray:
    """A CT-like int16 volume in HU: air, a body ellipse of soft tissue, lungs, and a bony ring."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 <= 1
    ring = body & ((x / 0.78) ** 2 + (y / 0.58) ** 2 > 1)
    lungs = (((x - 0.35) / 0.25) ** 2 + (y / 0.35) ** 2 <= 1) | (((x + 0.35) / 0.25) ** 2 + (y / 0.35) ** 2 <= 1)
    plane = np.full(shape[:2], -1000, np.int16)
    plane[body] = 40
    plane[lungs] = -820
    plane[ring] = 700
    volume = np.repeat(plane[:, :, None], shape[2], axis=2)
    volume += rng.integers(-20, 21, size=shape, dtype=np.int16)
    return volume


def _measure_case(page, frames: list[int]) -> dict:
    scrub = page.evaluate(SCRUB_JS, 50)
    frames.clear()
    for value in (0.2, 0.9, 0.3, 0.7, 0.5):
        page.evaluate(SET_RANGE_JS, ["cv-opacity", value])
    page.wait_for_timeout(800)
    opacity_bytes = sum(frames) / 5
    after = page.evaluate(SCRUB_JS, 50)
    return {
        "p50_ms": percentile(scrub, 50),
        "p95_ms": percentile(scrub, 95),
        "p50_after_opacity_ms": percentile(after, 50),
        "p95_after_opacity_ms": percentile(after, 95),
        "ws_bytes_per_opacity_change": opacity_bytes,
    }


def main() -> str:
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        streamlit_server({"CAMVIEWER_STATE_DIR": f"{tmp}/state"}) as url,
        chromium_page() as page,
    ):
        frames: list[int] = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(len(payload))))
        t0 = time.perf_counter()
        page.goto(url)
        wait_ready(page)
        first_view = time.perf_counter() - t0
        fetched = page.evaluate("() => window.__camviewer.fetches")
        sample = _measure_case(page, frames)
        sample.update(
            case="sample MRI 197x233x189", open_to_view_s=first_view, bytes_to_browser=sum(f["bytes"] for f in fetched)
        )
        rows.append(sample)

        ct = synthetic_ct()
        path = Path(tmp) / "synthetic_ct.nii.gz"
        raw = nib.Nifti1Image(ct, np.diag([0.7, 0.7, 1.0, 1.0])).to_bytes()
        path.write_bytes(gzip.compress(raw, compresslevel=1))
        from explain.volumes import load_volume

        version = load_volume(path).content_hash
        page.get_by_text("Upload a volume").click()
        page.wait_for_selector('[data-testid="stFileUploaderDropzoneInput"]', state="attached")
        t0 = time.perf_counter()
        page.set_input_files('[data-testid="stFileUploaderDropzoneInput"] >> nth=0', str(path))
        wait_ready(page, version, timeout_ms=300_000)
        upload_to_view = time.perf_counter() - t0
        fetched = page.evaluate("() => window.__camviewer.fetches")
        large = _measure_case(page, frames)
        large.update(
            case="synthetic CT 512x512x300",
            open_to_view_s=upload_to_view,
            bytes_to_browser=sum(f["bytes"] for f in fetched[-2:]),
            upload_bytes=path.stat().st_size,
        )
        rows.append(large)
    body = [
        "| case | slice step p50 / p95 (ms) | after opacity change p50 / p95 (ms) | websocket bytes per opacity change "
        "| open/upload to scrollable view (s) | compressed bytes to the browser |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        body.append(
            f"| {r['case']} | {r['p50_ms']:.1f} / {r['p95_ms']:.1f} | {r['p50_after_opacity_ms']:.1f} / "
            f"{r['p95_after_opacity_ms']:.1f} | {r['ws_bytes_per_opacity_change']:.0f} | "
            f"{r['open_to_view_s']:.1f} | {r['bytes_to_browser'] / 2**20:.1f} MiB |"
        )
    text = "\n".join(body) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    main()
