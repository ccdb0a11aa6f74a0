"""The real app (`streamlit run app.py`) in Chromium: what the screen shows, for the sequences users replay.

Pixels come from screenshots; positions from the display conventions (tests/viewer_page.py) and the
sample's lesions.json. Mandatory in CI (CAMVIEWER_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from bench.browser import chromium_page, streamlit_server
from tests.conftest import ROOT, SAMPLE
from tests.viewer_page import BRIGHT, STEP_JS, WebSocketBytes, centroid, expected_xy, percentile, stage_pixels, warm

pytestmark = pytest.mark.browser
ROOT_SEL = '[data-testid="cv-root"]'
DARK = next(x for x in __import__("tests.viewer_page", fromlist=["LESIONS"]).LESIONS if x["label"] == 2)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server({"CAMVIEWER_STATE_DIR": str(tmp_path_factory.mktemp("state"))}) as url:
        yield url


def _open(page, url: str) -> None:
    page.goto(url)
    _map_on_screen(page)


def _map_on_screen(page, timeout: int = 240_000) -> None:
    page.wait_for_selector(f'{ROOT_SEL}[data-ready="1"]', timeout=timeout)
    page.wait_for_function(
        "() => { const r = document.querySelector('[data-testid=\"cv-root\"]'); return r && r.getAttribute('data-map-url'); }",
        timeout=timeout,
    )
    page.wait_for_timeout(400)


def _title(page) -> str:
    return page.locator('[data-testid="stMainBlockContainer"] strong').first.inner_text()


def _sidebar_select(page, label: str, option: str) -> None:
    """Pick the option that starts with `option` (labels may carry a percentage) in a sidebar selectbox."""
    combo = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name=label)
    combo.click()
    combo.fill(option)  # the list filters as one types, as a user would
    page.get_by_role("listbox").get_by_role("option").filter(
        has_text=re.compile(rf"^{re.escape(option)}")
    ).first.wait_for()
    page.keyboard.press("Enter")


def _sidebar_value(page, label: str) -> str:
    return page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name=label).input_value()


def _title_is(page, expected: str) -> None:
    page.wait_for_function(
        "t => { const s = document.querySelector('[data-testid=\"stMainBlockContainer\"] strong'); "
        "return s && s.innerText === t; }",
        arg=expected,
        timeout=240_000,
    )
    _map_on_screen(page)


def test_sample_map_sits_on_the_lesion_and_display_costs_nothing(server):
    with chromium_page(1500, 1100) as page:
        sockets = WebSocketBytes(page)
        _open(page, server)
        assert _title(page) == "Grad-CAM · features.block3 · bright lesion"
        rgb = stage_pixels(page, "axial")
        hot = warm(rgb)
        x, y, scale = expected_xy("axial", BRIGHT["center_voxel"], (rgb.shape[1], rgb.shape[0]))
        assert hot.sum() > 100, "no map on the axial pane"
        assert np.hypot(*np.subtract(centroid(hot), (x, y))) <= (max(BRIGHT["radii_mm"]) + 4) * scale
        if os.environ.get("CAMVIEWER_UPDATE_SCREENSHOTS"):
            page.screenshot(path=str(ROOT / "docs" / "img" / "app.png"), full_page=True)
        # Display controls, crosshair moves and Streamlit's own hotkeys from inside the viewer: no traffic.
        page.wait_for_timeout(1500)
        sockets.reset()
        times = page.evaluate(STEP_JS, ["axial", 40])
        stage = page.locator('.cv-grid [data-plane="coronal"] canvas').first
        stage.click(position={"x": 120, "y": 120})
        page.locator(ROOT_SEL).focus()
        for key in ("c", "r", "o", "o", "+", "-"):
            page.keyboard.press(key)
        page.wait_for_timeout(1500)
        assert sockets.sent == 0 and sockets.received == 0, (sockets.sent, sockets.received)
        assert page.get_by_text("Clear caches").count() == 0  # Streamlit's `c` dialog never opened
        assert percentile(times["js"], 95) < 100  # loose here; docs/benchmarks.md has the real figures


def test_uploaded_model_and_method_changes_keep_what_the_user_asked_for(server):
    with chromium_page(1500, 1100) as page:
        _open(page, server)
        page.locator('[data-testid="stSidebar"]').get_by_text("Upload .pt2").click()
        page.locator('[data-testid="stSidebar"] [data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            str(SAMPLE / "models" / "cnn.pt2")
        )
        _title_is(page, "Grad-CAM · features.block3 · bright lesion")  # the card inside the file wins
        _sidebar_select(page, "Target class", "dark lesion")
        _title_is(page, "Grad-CAM · features.block3 · dark lesion")
        # Put the crosshair on the dark lesion by clicking it on the coronal pane (the view opened on the map's
        # maximum of the first map); the axial pane then shows the slice through it, with the map warm on it.
        coronal = page.locator('.cv-grid [data-plane="coronal"] .cv-stage, .cv-grid [data-plane="coronal"] canvas')
        box = coronal.first.bounding_box()
        cx, cy, _ = expected_xy("coronal", DARK["center_voxel"], (box["width"], box["height"]))
        coronal.first.click(position={"x": cx, "y": cy})
        page.wait_for_timeout(600)
        rgb = stage_pixels(page, "axial")
        x, y, scale = expected_xy("axial", DARK["center_voxel"], (rgb.shape[1], rgb.shape[0]))
        hot = warm(rgb)
        assert hot.sum() > 50, "no map on the axial slice through the dark lesion"
        assert np.hypot(*np.subtract(centroid(hot), (x, y))) <= (max(DARK["radii_mm"]) + 6) * scale, (
            centroid(hot),
            (x, y),
        )
        _sidebar_select(page, "Method", "LayerCAM")
        _title_is(page, "LayerCAM · features.block3 · dark lesion")
        assert _sidebar_value(page, "Target class").startswith("dark lesion")
        assert _sidebar_value(page, "Layer").startswith("features.block3")


def test_while_one_user_computes_the_other_keeps_a_responsive_view(server):
    """Two users (two browser contexts). One starts a long computation; the other's view stays and scrubs."""
    from playwright.sync_api import sync_playwright

    from bench.browser import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            busy = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
            other = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
            _open(busy, server)
            _open(other, server)
            map_before = other.get_attribute(ROOT_SEL, "data-map-url")
            busy.get_by_text("Run the sanity check").click()  # recomputes the map block by block, holding the device
            busy.get_by_text("Randomising blocks").wait_for(timeout=60_000)
            steps = other.evaluate(STEP_JS, ["axial", 30])  # meanwhile, the other user scrubs
            assert busy.get_by_text("Randomising blocks").count() == 1, "the computation ended before the check"
            assert other.get_attribute(ROOT_SEL, "data-ready") == "1"
            assert other.get_attribute(ROOT_SEL, "data-map-url") == map_before  # their view and map stay
            assert percentile(steps["frame"], 95) < 1000, steps["frame"]
            busy.get_by_text(re.compile("learned")).first.wait_for(timeout=300_000)  # either verdict
        finally:
            browser.close()


def test_chest_radiograph_sample_map_sits_on_the_nodule(server):
    """The 2D sample: one pane, the radiograph as stored (row 0 on top), the nodule's map warm over the nodule."""
    import json

    nodule = json.loads((SAMPLE / "case_chest" / "lesions.json").read_text())["lesions"][0]
    with chromium_page(1500, 1100) as page:
        _open(page, server)
        page.locator('[data-testid="stSidebar"]').get_by_text("Sample chest radiograph").click()
        page.wait_for_function(
            "() => { const s = document.querySelector('[data-testid=\"stMainBlockContainer\"] strong'); "
            "return s && s.innerText.endsWith('· nodule'); }",
            timeout=240_000,
        )
        _map_on_screen(page)
        page.wait_for_function(  # the 2D image replaced the brain: one pane
            "() => document.querySelectorAll('.cv-grid .cv-pane:not([hidden])').length === 1", timeout=60_000
        )
        page.wait_for_timeout(600)
        rgb = stage_pixels(page, "image")
        h, w = rgb.shape[:2]
        scale = min(w / 256, h / 256)  # 256 x 256 pixels of 1 mm
        x0, y0 = (w - 256 * scale) / 2, (h - 256 * scale) / 2
        column, row = nodule["center_ij"]
        hot = warm(rgb, border=4)
        assert hot.sum() > 50, "no map on the radiograph"
        distance = np.hypot(*np.subtract(centroid(hot), (x0 + (column + 0.5) * scale, y0 + (row + 0.5) * scale)))
        assert distance <= (nodule["radius_mm"] + 6) * scale, (centroid(hot), distance / scale)
