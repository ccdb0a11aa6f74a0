"""The page tells the truth while it works (the real app in Chromium): one test per problem a radiologist and a
researcher met, numbered as they were reported, and a shared link that opens the same view.

Every wait is for a condition the viewer or Streamlit exposes (the drawn map's key, the script's state, a text
appearing); where a test must show that something never happens during a transition, it records the page on
every animation frame until the transition is over and checks every frame.
"""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pytest

from bench.browser import chromium_page, streamlit_server
from explain.cam.methods import LABELS
from tests.test_browser_app import _drawn, _idle, _open, _sidebar_select, _sidebar_value, _title
from tests.viewer_page import DEADLINE_MS, EDGE, ROOT_SEL, settled, stage_pixels, viewer_state

pytestmark = pytest.mark.browser
SHORT_MS = 90_000  # for things that appear within one script run, even on a busy machine
SIDEBAR = '[data-testid="stSidebar"]'
# Text naming a map: "<method> · <where> · <class>" (method labels as the page writes them).
TITLE_RE = rf"^({'|'.join(re.escape(v) for v in sorted(LABELS.values(), key=len, reverse=True))})\b[^·\n]*·[^·\n]+·"

# Every animation frame: the drawn map (the viewer's own account), and every visible text on the page that names
# a map or states a raw peak, outside the viewer's progress line, its legend and the compare picker.
RECORD_JS = """([titleRe]) => {
  window.cvFrames = [];
  const re = new RegExp(titleRe);
  const root = () => document.querySelector('[data-testid="cv-root"]');
  const skip = (el) => el.closest('.cv-progress, .cv-legend-text, [data-testid="stSidebar"], [data-baseweb="select"], [data-testid="stMultiSelect"], .cv-compare');
  const tick = () => {
    const r = root();
    const texts = [];
    for (const el of document.querySelectorAll('body *')) {
      if (el.children.length || !el.textContent || skip(el)) continue;
      if (!(el.offsetWidth || el.offsetHeight)) continue;
      const t = el.textContent.trim();
      if (re.test(t) || /raw peak/.test(t)) texts.push(t);
    }
    window.cvFrames.push({drawn: r ? r.dataset.mapTitle || '' : '', peak: r ? r.dataset.mapPeak || '' : '',
                          anatomy: r ? r.dataset.anatomy || '' : '', ready: r ? r.dataset.ready : '', texts,
                          body: document.body.innerText.includes('Tested:')});
    if (!window.cvStop) requestAnimationFrame(tick);
  };
  window.cvStop = false;
  requestAnimationFrame(tick);
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server({"CAMVIEWER_STATE_DIR": str(tmp_path_factory.mktemp("state"))}) as url:
        yield url


def _frames(page) -> list[dict]:
    page.evaluate("() => { window.cvStop = true; }")
    return page.evaluate("() => window.cvFrames")


def _radio(page, text: str) -> None:
    page.locator(SIDEBAR).get_by_text(text, exact=True).click()


def _upload(page, path, nth: int = 0) -> None:
    page.locator(f"{SIDEBAR} [data-testid='stFileUploaderDropzoneInput']").nth(nth).set_input_files(str(path))


def _visible_text(page, pattern: str, timeout: int = SHORT_MS) -> None:
    page.get_by_text(re.compile(pattern)).first.wait_for(timeout=timeout)


def _sanity(page) -> None:
    """Run the sanity check of the map on screen (or find its result: results are kept per map on the server)."""
    run = page.get_by_role("button", name=re.compile("Run the sanity check"))
    if run.count():
        run.click()
    _visible_text(page, "Tested: ", timeout=DEADLINE_MS)


def _ct_phantom(path) -> None:
    """A CT-like volume in Hounsfield units: air (-1000) around an ellipsoid body (40 HU) with a bone ring."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in (96, 96, 48)), indexing="ij")
    r = np.sqrt(x**2 / 0.8 + y**2 / 0.6 + z**2)
    data = np.where(r < 0.9, 40, -1000).astype(np.int16)
    data[(r > 0.8) & (r < 0.9)] = 700
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0])), str(path))


# ----------------------------------------------------------------------------- 1
def test_1_every_title_and_number_belongs_to_the_map_on_screen(server):
    """While a new map computes, nothing on the page names it as if it were shown, nor shows its numbers."""
    with chromium_page(1400, 900) as page:
        first = _open(page, server)
        page.evaluate(RECORD_JS, [TITLE_RE])
        _sidebar_select(page, "Method", "HiResCAM")
        state = _drawn(page, "HiResCAM · features.block3 · bright lesion", previous=first["map"])
        _idle(page)
        settled(page)
        frames = _frames(page)
        assert any(f["drawn"] == first["title"] for f in frames) and frames[-1]["drawn"] == state["title"]
        for f in frames:
            named = [t for t in f["texts"] if re.match(TITLE_RE, t)]
            assert all(t == f["drawn"] for t in named), (f["drawn"], named)  # no title ahead of its map
            peaks = [float(m) for t in f["texts"] for m in re.findall(r"raw peak ([-0-9.e+]+)", t)]
            assert all(f["peak"] and abs(p / float(f["peak"]) - 1) < 0.01 for p in peaks), (f["peak"], peaks)
        # while it computed, the viewer said what it was computing, by name
        progress = page.locator('[data-testid="cv-progress"]')
        assert progress.inner_text() == ""
        assert _title(page) == state["title"]


# ----------------------------------------------------------------------------- 2
def test_2_compare_offers_only_this_image_labelled_and_side_by_side(server):
    with chromium_page(1400, 900) as page:
        grad = _open(page, server)
        _sidebar_select(page, "Method", "HiResCAM")
        hires = _drawn(page, "HiResCAM · features.block3 · bright lesion", previous=grad["map"])
        _radio(page, "Sample chest radiograph")  # another image (and its own model)
        chest = _drawn(page, previous=hires["map"])
        assert chest["title"].endswith("· nodule")
        _radio(page, "Sample brain MRI")
        back = _drawn(page, previous=chest["map"])
        _idle(page)
        picker = page.get_by_role("combobox", name=re.compile("Compare side by side with earlier maps of this image"))
        picker.click()
        options = page.get_by_role("listbox").get_by_role("option")
        options.first.wait_for(timeout=SHORT_MS)
        labels = options.all_inner_texts()
        assert labels, "no earlier map offered"
        assert not any("nodule" in x for x in labels), labels  # nothing of the radiograph
        assert all(re.match(TITLE_RE, x) and "— Sample 3D CNN (lesion classifier)" in x for x in labels), labels
        assert back["title"] not in [x.split(" — ")[0] for x in labels]  # the map on screen is not offered again
        for _ in labels:  # pick every one offered: each becomes a pane
            page.get_by_role("listbox").get_by_role("option").first.click()
        page.keyboard.press("Escape")
        panes = page.locator(".cv-compare .cv-pane")
        page.wait_for_function(
            "(n) => [...document.querySelectorAll('.cv-compare .cv-pane')].filter(p => p.dataset.mapKey).length === n",
            arg=len(labels) + 1, timeout=DEADLINE_MS,
        )  # fmt: skip
        boxes = [panes.nth(i).locator(".cv-stage").bounding_box() for i in range(panes.count())]
        assert len({round(b["y"]) for b in boxes}) == 1, boxes  # side by side, one row
        assert min(b["width"] for b in boxes) >= 400, boxes  # usable: two panes share 1400 px
        titles = [panes.nth(i).locator(".cv-pane-title").inner_text() for i in range(panes.count())]
        assert all(" — Sample 3D CNN" in t for t in titles), titles  # model, method, layer and class on each
        page.select_option('[data-testid="cv-compare-plane"]', "coronal")  # the plane the user chooses
        page.wait_for_function("() => [...document.querySelectorAll('.cv-compare .cv-pane')]"
                               ".every(p => p.dataset.plane === 'coronal')", timeout=SHORT_MS)  # fmt: skip


# ----------------------------------------------------------------------------- 3
def test_3_the_layer_montage_appears_on_the_first_click(server):
    with chromium_page(1400, 900) as page:
        _open(page, server)
        _idle(page)
        page.get_by_role("button", name="Compare every layer at this depth").click()  # once
        page.wait_for_function(
            "() => [...document.querySelectorAll('.cv-compare .cv-pane')].filter(p => p.dataset.mapKey).length >= 2",
            timeout=SHORT_MS,
        )
        titles = page.locator(".cv-compare .cv-pane-title").all_inner_texts()
        assert any("features.block2" in t for t in titles) and any("features.block3" in t for t in titles), titles


# ----------------------------------------------------------------------------- 4
def test_4_long_work_shows_progress_and_stops(server):
    with chromium_page(1400, 900) as page:
        first = _open(page, server)
        _sidebar_select(page, "Method", "LayerCAM")  # a map whose check no other test runs to the end
        _drawn(page, "LayerCAM · features.block3 · bright lesion", previous=first["map"])
        _idle(page)
        page.get_by_role("button", name=re.compile("Run the sanity check")).click()
        _visible_text(page, r"Sanity check of LayerCAM · features\.block3 · bright lesion: randomised \d+ of \d+")
        page.get_by_role("button", name="Stop the sanity check").click()
        _visible_text(page, r"stopped after \d+ of \d+ blocks")
        page.get_by_role("button", name=re.compile("Run the sanity check")).wait_for(timeout=SHORT_MS)  # run again
        # A map: progress above the viewer with a Stop button; stopped, the viewer keeps the map it had.
        shown = viewer_state(page)
        _radio(page, "Sample nnU-Net (lesion segmentation)")
        page.get_by_role("button", name="Stop", exact=True).click(timeout=SHORT_MS)
        _visible_text(page, r"Stopped: .* was not computed")
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"cv-progress\"]').innerText.includes('stopped')",
            timeout=SHORT_MS,
        )
        assert viewer_state(page)["map"] == shown["map"]  # the last good map stays, with its own title
        assert _title(page) == shown["title"]


# ----------------------------------------------------------------------------- 5
def test_5_a_method_that_does_not_suit_the_new_model_falls_back_with_a_note(server):
    with chromium_page(1400, 900) as page:
        first = _open(page, server)
        _sidebar_select(page, "Method", "Grad-CAM++")
        plus = _drawn(page, "Grad-CAM++ · features.block3 · bright lesion", previous=first["map"])
        _radio(page, "Sample 3D UNet (lesion segmentation)")
        _drawn(page, previous=plus["map"])
        _idle(page)
        assert _sidebar_value(page, "Method") == "HiResCAM"
        _visible_text(page, r"Grad-CAM\+\+ pools its weights .* showing HiResCAM, this model's default")
        assert _title(page).startswith("HiResCAM ·")


# ----------------------------------------------------------------------------- 6
@pytest.fixture(scope="module")
def untrained_densenet(tmp_path_factory):
    import torch
    from monai.networks.nets import DenseNet121

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "densenet_fresh.pt"
    torch.save(DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).state_dict(), path)
    return path


def test_6_the_sanity_panel_speaks_plainly_and_flags_untrained_weights(server, untrained_densenet):
    with chromium_page(1400, 900) as page:
        _open(page, server)
        _idle(page)
        _sanity(page)
        _visible_text(page, "learned weights", timeout=DEADLINE_MS)
        _visible_text(page, "SSIM compares the maps as pictures")  # the panel's last line: all of it is written
        _idle(page)
        panel = page.locator('[data-testid="stMain"]').inner_text()
        assert "Tested: Grad-CAM · features.block3 · bright lesion" in panel  # names the map it tested
        assert "SSIM compares the maps as pictures" in panel and "rank correlation compares the order" in panel
        verdict = re.search(r"The map (depends on|barely depends on) the learned weights\.[^\n]*", panel)
        assert verdict and "it does not:" not in panel, panel[-1500:]
        assert "look untrained" not in panel  # a bundled sample is trained
        # A freshly initialised MONAI DenseNet121 is flagged as soon as it is loaded.
        _radio(page, "Upload weights + MONAI network")
        _upload(page, untrained_densenet)
        _visible_text(page, r"This model's weights look untrained: its \d+ normalisation layers", timeout=DEADLINE_MS)


# ----------------------------------------------------------------------------- 7
def test_7_switching_images_leaves_nothing_of_the_old_image(server):
    with chromium_page(1400, 900) as page:
        brain = _open(page, server)
        _idle(page)
        _sanity(page)
        _idle(page)
        page.evaluate(RECORD_JS, [TITLE_RE])
        _radio(page, "Sample chest radiograph")
        _drawn(page, previous=brain["map"])
        _idle(page)
        frames = _frames(page)
        old = frames[0]["anatomy"]
        switched = [f for f in frames if f["anatomy"] and f["anatomy"] != old]
        assert switched, "the radiograph never replaced the brain"
        assert not any(f["body"] for f in switched), "the brain's sanity check stayed on screen with the radiograph"


# ----------------------------------------------------------------------------- 8
def test_8_panes_use_the_space_and_2d_fits_the_window(server):
    with chromium_page(1400, 900) as page:
        _open(page, server)
        stages = page.locator(".cv-grid .cv-pane:not([hidden]) .cv-stage")
        sides = [min(b["width"], b["height"]) for b in (stages.nth(i).bounding_box() for i in range(3))]
        assert min(sides) >= 300, sides
        page.select_option('[data-testid="cv-layout"]', "2x2")
        page.wait_for_function("() => document.querySelector('[data-testid=\"cv-root\"]').dataset.layout === '2x2'")
        settled(page)
        boxes = [page.locator(f'.cv-grid [data-plane="{p}"] .cv-stage').bounding_box() for p in ("axial", "coronal")]
        assert min(min(b["width"], b["height"]) for b in boxes) >= 400, boxes
        readout = page.locator('[data-testid="cv-readout"]')
        assert readout.evaluate("el => el.scrollWidth <= el.clientWidth && el.scrollHeight <= el.clientHeight + 1")
        # The radiograph: the whole image in the window, and the wheel zooms about the cursor.
        brain = viewer_state(page)
        _radio(page, "Sample chest radiograph")
        _drawn(page, previous=brain["map"])
        page.locator(ROOT_SEL).scroll_into_view_if_needed()
        page.evaluate("(sel) => document.querySelector(sel).scrollIntoView()", ROOT_SEL)
        settled(page)
        stage = page.locator('.cv-grid [data-plane="image"] .cv-stage').bounding_box()
        assert stage["y"] >= 0 and stage["y"] + stage["height"] <= 900, stage
        x, y = stage["x"] + stage["width"] * 0.3, stage["y"] + stage["height"] * 0.4
        page.mouse.move(x, y)
        page.wait_for_function("el => el.innerText.startsWith('cursor')", arg=readout.element_handle())
        before = re.search(r"voxel (\d+, \d+)", readout.inner_text()).group(1)
        page.mouse.wheel(0, -300)
        page.wait_for_function(
            "() => parseFloat(document.querySelector('.cv-grid [data-plane=\"image\"]').dataset.zoom || '1') > 1.2"
        )
        page.mouse.move(x + 1, y)
        page.mouse.move(x, y)
        settled(page)
        after = re.search(r"voxel (\d+, \d+)", readout.inner_text()).group(1)
        (bi, bj), (ai, aj) = (map(int, before.split(", ")), map(int, after.split(", ")))
        assert abs(bi - ai) <= 1 and abs(bj - aj) <= 1, (before, after)  # the point under the cursor stayed


# ----------------------------------------------------------------------------- 9
def test_9_a_class_without_a_map_is_labelled_and_not_computed(server):
    with chromium_page(1400, 900) as page:
        first = _open(page, server)
        combo = page.locator(SIDEBAR).get_by_role("combobox", name="Target class")
        combo.click()
        combo.fill("no lesion")
        no_lesion = page.get_by_role("listbox").get_by_role("option").filter(has_text=re.compile("^no lesion"))
        assert "no map" in no_lesion.first.inner_text(timeout=SHORT_MS)
        no_lesion.first.click()
        _visible_text(page, "has no map: its score is a constant of the model")
        _idle(page)
        page.wait_for_function("(sel) => !document.querySelector(sel).dataset.mapKey", arg=ROOT_SEL, timeout=SHORT_MS)
        assert _title(page) == "no lesion: no map"
        text = page.locator("body").inner_text()
        assert "all zero" not in text and text.count("has no map") == 1
        assert first["map"]


# ----------------------------------------------------------------------------- 10
def test_10_an_image_that_does_not_suit_the_model_is_flagged(server, tmp_path):
    path = tmp_path / "ct_phantom.nii.gz"
    _ct_phantom(path)
    with chromium_page(1400, 900) as page:
        brain = _open(page, server)
        _radio(page, "Upload an image")
        _upload(page, path)
        _drawn(page, previous=brain["map"])
        _visible_text(page, r"This model was trained on T1 MRI; this looks like CT: \d+% of its voxels are below -500")


# ----------------------------------------------------------------------------- 11
def _two_dots(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An oblique, anisotropic volume with two bright 3x3 dots in its middle slice; their centres and affine."""
    from scipy.spatial.transform import Rotation

    spacing = np.array([0.8, 1.5, 3.0])
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("zx", [30, 10], degrees=True).as_matrix() @ np.diag(spacing)
    affine[:3, 3] = [-30, -40, -20]
    data = np.full((80, 60, 30), 100, np.int16)
    p, q = np.array([20, 15, 15]), np.array([60, 45, 15])
    for c in (p, q):
        data[c[0] - 1 : c[0] + 2, c[1] - 1 : c[1] + 2, c[2]] = 1000
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return p, q, affine


def test_11_measure_help_report_and_conventions(server, tmp_path):
    from scipy import ndimage

    p, q, affine = _two_dots(tmp_path / "oblique.nii.gz")
    truth = float(np.linalg.norm(affine[:3, :3] @ (q - p)))
    with chromium_page(1400, 900) as page:
        brain = _open(page, server)
        # 0-based slice counters, as the readout's voxel index
        axial = page.locator('.cv-grid [data-plane="axial"]')
        k = int(axial.get_attribute("data-slice"))
        assert axial.locator(".cv-pane-slice").inner_text() == f"slice {k} (0–188)"
        assert re.search(rf"voxel \d+, \d+, {k}\b", page.locator('[data-testid="cv-readout"]').inner_text())
        # keyboard help opens on click and closes
        page.locator('[data-testid="cv-help"]').click()
        help_panel = page.locator('[data-testid="cv-help-panel"]')
        help_panel.wait_for(state="visible", timeout=SHORT_MS)
        assert "measure a distance" in help_panel.inner_text()
        page.locator('[data-testid="cv-help-close"]').click()
        help_panel.wait_for(state="hidden", timeout=SHORT_MS)
        # the JSON report states the settings, and the sanity result once there is one
        _idle(page)
        _sanity(page)
        _idle(page)
        with page.expect_download(timeout=SHORT_MS) as download:
            page.get_by_role("button", name=re.compile("JSON report")).click()
        report = json.loads(open(download.value.path()).read())
        assert report["settings"]["method"] == "gradcam" and report["settings"]["layers"] == ["features.block3"]
        assert report["settings"]["target"] == "bright lesion" and report["sanity"]["steps"]
        assert report["title"] == brain["title"] and any(f.startswith("raw peak") for f in report["facts"])
        # a distance in mm on an oblique, anisotropic grid: click the two dots' centres on the axial pane
        _radio(page, "Upload an image")
        _upload(page, tmp_path / "oblique.nii.gz")
        _drawn(page, previous=brain["map"])
        for key in ("o", "x"):  # overlay and crosshair off: the dots are the only bright pixels
            page.locator(ROOT_SEL).focus()
            page.keyboard.press(key)
        settled(page)
        rgb = stage_pixels(page, "axial")
        bright = rgb.mean(axis=2) > 200
        bright[:EDGE], bright[-EDGE:], bright[:, :EDGE], bright[:, -EDGE:] = False, False, False, False  # letters, bar
        labels, n = ndimage.label(bright)
        sizes = ndimage.sum(np.ones(labels.shape), labels, range(1, n + 1))
        dots = [i + 1 for i, size in enumerate(sizes) if size >= 40]  # the scale bar's text leaves small bits
        assert len(dots) == 2, sizes
        centres = ndimage.center_of_mass(np.ones(labels.shape), labels, dots)
        box = page.locator('.cv-grid [data-plane="axial"] .cv-stage').bounding_box()
        page.locator('[data-testid="cv-measure"]').click()
        for row, col in centres:
            page.mouse.click(box["x"] + col + 0.5, box["y"] + row + 0.5)
        page.wait_for_function("(sel) => document.querySelector(sel).dataset.measureMm", arg=ROOT_SEL)
        measured = float(page.locator(ROOT_SEL).get_attribute("data-measure-mm"))
        assert abs(measured - truth) < 1.5, (measured, truth)
        shown = page.locator('[data-testid="cv-measure-axial"]').inner_text()
        assert shown == f"{measured:.1f} mm"
        # the radiograph: no 'MR auto', no Hounsfield presets; its mask counts pixels
        state = viewer_state(page)
        _radio(page, "Sample chest radiograph")
        chest = _drawn(page, previous=state["map"])
        presets = page.locator('[data-testid="cv-preset"] option').all_inner_texts()
        assert "Auto (percentiles)" in presets and not any(x.startswith(("MR", "CT")) for x in presets), presets
        # Reloaded, the map comes ready-made; adding the mask then changes its facts, not the map itself.
        page.reload()
        assert _drawn(page)["map"] == chest["map"]
        page.locator(SIDEBAR).get_by_text("The sample's lesion mask").click()
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"cv-facts\"]').innerText.includes('pixels on the image')",
            timeout=SHORT_MS,
        )
        assert "voxels" not in page.locator('[data-testid="cv-facts"]').inner_text()


# ----------------------------------------------------------------------------- the link
def test_a_shared_link_opens_the_same_map_slice_and_window(server):
    from playwright.sync_api import sync_playwright

    from bench.browser import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            first = _open(page, server)
            _sidebar_select(page, "Method", "LayerCAM")
            layer = _drawn(page, "LayerCAM · features.block3 · bright lesion", previous=first["map"])
            _sidebar_select(page, "Target class", "dark lesion")
            shown = _drawn(page, "LayerCAM · features.block3 · dark lesion", previous=layer["map"])
            _idle(page)
            page.locator(ROOT_SEL).focus()
            for _ in range(5):
                page.keyboard.press("ArrowUp")
            page.fill('[data-testid="cv-width"]', "300")
            page.fill('[data-testid="cv-level"]', "120")
            page.locator('[data-testid="cv-opacity"]').evaluate(
                "el => { el.value = '0.7'; el.dispatchEvent(new Event('input', {bubbles: true})); }"
            )
            cross = page.locator(ROOT_SEL).get_attribute("data-cross")
            assert cross != shown["cross"]
            page.wait_for_function(
                "(c) => { const q = new URLSearchParams(location.search); return q.get('cross') === c"
                " && q.get('window') === '300,120' && q.get('opacity') === '0.7' && q.get('method') === 'layercam'; }",
                arg=cross, timeout=SHORT_MS,
            )  # fmt: skip
            link = page.url
            assert "target=dark+lesion" in link or "target=dark%20lesion" in link, link
            for where in ("a new browser", "a reload"):
                if where == "a reload":
                    other = page
                    other.reload()
                else:
                    other = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
                    other.goto(link)
                state = _drawn(other, "LayerCAM · features.block3 · dark lesion")
                assert state["cross"] == cross, where
                assert other.locator('[data-testid="cv-width"]').input_value() == "300", where
                assert other.locator('[data-testid="cv-level"]').input_value() == "120", where
                assert other.locator('[data-testid="cv-opacity"]').input_value() == "0.7", where
        finally:
            browser.close()
