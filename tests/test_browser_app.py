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
from tests.viewer_page import (
    BRIGHT,
    DEADLINE_MS,
    ROOT_SEL,
    STEP_JS,
    WebSocketBytes,
    centroid,
    expected_xy,
    percentile,
    settled,
    stage_pixels,
    viewer_state,
    wait_cross_moved,
    warm,
)

pytestmark = pytest.mark.browser
DARK = next(x for x in __import__("tests.viewer_page", fromlist=["LESIONS"]).LESIONS if x["label"] == 2)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server({"CAMVIEWER_STATE_DIR": str(tmp_path_factory.mktemp("state"))}) as url:
        yield url


def _open(page, url: str) -> dict:
    page.goto(url)
    return _drawn(page)


def _drawn(page, title: str | None = None, previous: str | None = None) -> dict:
    """Wait until the viewer has drawn a map (titled `title`, other than `previous`) with nothing pending.

    The viewer sets these attributes after drawing, never before; the page's own title is not waited for,
    since it changes before the map does.
    """
    page.wait_for_function(
        """([sel, title, previous]) => { const r = document.querySelector(sel);
        return r && r.dataset.ready === '1' && r.dataset.mapKey && !r.dataset.pendingKey
               && (!title || r.dataset.mapTitle === title) && (!previous || r.dataset.mapKey !== previous); }""",
        arg=[ROOT_SEL, title or "", previous or ""],
        timeout=DEADLINE_MS,
    )
    settled(page)
    return viewer_state(page)


def _idle(page) -> None:
    """Wait until no script run of the app is in progress (Streamlit's own state attribute)."""
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stApp\"]')?.dataset.testScriptState === 'notRunning'",
        timeout=DEADLINE_MS,
    )


def _title(page) -> str:
    """The title the viewer writes above the map it has drawn."""
    return page.locator('[data-testid="cv-title"]').inner_text()


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


def _map_is(page, expected: str, previous: str | None = None) -> dict:
    """The viewer drew the map titled `expected`, and its visible title names that same map."""
    state = _drawn(page, expected, previous)
    _idle(page)
    assert _title(page) == expected
    return state


def test_sample_map_sits_on_the_lesion_and_display_costs_nothing(server):
    with chromium_page(1500, 1100) as page:
        sockets = WebSocketBytes(page)
        page.goto(server)
        _map_is(page, "Grad-CAM · features.block3 · bright lesion")
        rgb = stage_pixels(page, "axial")
        hot = warm(rgb)
        x, y, scale = expected_xy("axial", BRIGHT["center_voxel"], (rgb.shape[1], rgb.shape[0]))
        assert hot.sum() > 100, "no map on the axial pane"
        assert np.hypot(*np.subtract(centroid(hot), (x, y))) <= (max(BRIGHT["radii_mm"]) + 4) * scale
        if os.environ.get("CAMVIEWER_UPDATE_SCREENSHOTS"):
            page.screenshot(path=str(ROOT / "docs" / "img" / "app.png"), full_page=True)
        # Display controls, crosshair moves and Streamlit's own hotkeys from inside the viewer: no traffic.
        _idle(page)
        sockets.reset()
        times = page.evaluate(STEP_JS, ["axial", 40])
        stage = page.locator('.cv-grid [data-plane="coronal"] canvas').first
        stage.click(position={"x": 120, "y": 120})
        page.locator(ROOT_SEL).focus()
        for key in ("c", "r", "o", "o", "+", "-"):
            page.keyboard.press(key)
        settled(page)
        page.wait_for_timeout(1500)  # an observation window for traffic that must not come (cannot fail wrongly)
        assert sockets.sent == 0 and sockets.received == 0, (sockets.sent, sockets.received)
        assert page.get_by_text("Clear caches").count() == 0  # Streamlit's `c` dialog never opened
        assert percentile(times["js"], 95) < 100  # loose here; docs/benchmarks.md has the real figures


def test_uploaded_model_and_method_changes_keep_what_the_user_asked_for(server):
    with chromium_page(1500, 1100) as page:
        _open(page, server)
        page.locator('[data-testid="stSidebar"]').get_by_text("Upload a model (.pt2").click()
        page.locator('[data-testid="stSidebar"] [data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            str(SAMPLE / "models" / "cnn.pt2")
        )
        page.locator('[data-testid="stSidebar"]').get_by_text("cnn.pt2").wait_for(timeout=DEADLINE_MS)
        bright = _map_is(page, "Grad-CAM · features.block3 · bright lesion")  # the card inside the file wins
        _sidebar_select(page, "Target class", "dark lesion")
        dark = _map_is(page, "Grad-CAM · features.block3 · dark lesion", previous=bright["map"])
        # Put the crosshair on the dark lesion by clicking it on the coronal pane (the view opened on the map's
        # maximum of the first map); the axial pane then shows the slice through it, with the map warm on it.
        coronal = page.locator('.cv-grid [data-plane="coronal"] .cv-stage, .cv-grid [data-plane="coronal"] canvas')
        box = coronal.first.bounding_box()
        cx, cy, _ = expected_xy("coronal", DARK["center_voxel"], (box["width"], box["height"]))
        coronal.first.click(position={"x": cx, "y": cy})
        wait_cross_moved(page, dark["cross"])
        rgb = stage_pixels(page, "axial")
        x, y, scale = expected_xy("axial", DARK["center_voxel"], (rgb.shape[1], rgb.shape[0]))
        hot = warm(rgb)
        assert hot.sum() > 50, "no map on the axial slice through the dark lesion"
        assert np.hypot(*np.subtract(centroid(hot), (x, y))) <= (max(DARK["radii_mm"]) + 6) * scale, (
            centroid(hot),
            (x, y),
        )
        _sidebar_select(page, "Method", "LayerCAM")
        _map_is(page, "LayerCAM · features.block3 · dark lesion", previous=dark["map"])
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
            map_before = other.get_attribute(ROOT_SEL, "data-map-key")
            busy.get_by_text("Run the sanity check").click()  # recomputes the map block by block, holding the device
            busy.get_by_text("randomised 0 of").wait_for(timeout=DEADLINE_MS)
            steps = other.evaluate(STEP_JS, ["axial", 30])  # meanwhile, the other user scrubs
            assert busy.get_by_text(re.compile("Sanity check of .*: randomised")).count() == 1, "it ended too soon"
            assert other.get_attribute(ROOT_SEL, "data-ready") == "1"
            assert other.get_attribute(ROOT_SEL, "data-map-key") == map_before  # their view and map stay
            assert percentile(steps["frame"], 95) < 1000, steps["frame"]
            busy.get_by_text(re.compile("learned weights")).first.wait_for(timeout=DEADLINE_MS)  # either verdict
        finally:
            browser.close()


def test_chest_radiograph_sample_map_sits_on_the_nodule(server):
    """The 2D sample: one pane, the radiograph as stored (row 0 on top), the nodule's map warm over the nodule."""
    import json

    nodule = json.loads((SAMPLE / "case_chest" / "lesions.json").read_text())["lesions"][0]
    with chromium_page(1500, 1100) as page:
        brain = _open(page, server)
        page.locator('[data-testid="stSidebar"]').get_by_text("Sample chest radiograph").click()
        chest = _drawn(page, previous=brain["map"])
        assert chest["title"].endswith("· nodule"), chest
        page.wait_for_function(  # the 2D image replaced the brain: one pane
            "() => document.querySelectorAll('.cv-grid .cv-pane:not([hidden])').length === 1", timeout=DEADLINE_MS
        )
        settled(page)
        rgb = stage_pixels(page, "image")
        h, w = rgb.shape[:2]
        scale = min(w / 256, h / 256)  # 256 x 256 pixels of 1 mm
        x0, y0 = (w - 256 * scale) / 2, (h - 256 * scale) / 2
        column, row = nodule["center_ij"]
        hot = warm(rgb, border=4)
        assert hot.sum() > 50, "no map on the radiograph"
        distance = np.hypot(*np.subtract(centroid(hot), (x0 + (column + 0.5) * scale, y0 + (row + 0.5) * scale)))
        assert distance <= (nodule["radius_mm"] + 6) * scale, (centroid(hot), distance / scale)
