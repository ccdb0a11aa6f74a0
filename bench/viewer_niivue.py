"""NiiVue against our viewer, same data, same static server, same browser, same pane sizes.

    python -m bench.viewer_niivue        # needs `make setup` (NiiVue from npm into viewer/component/node_modules)

Both are fed by URL from a plain static server (no Streamlit in the way): the sample MRI and the 512 x 512 x 300
CT, each with its 64^3 map. NiiVue gets the map as a NIfTI with its own affine (it reslices overlays onto the
anatomy's grid itself); ours gets the same files through viewer.publish. Measured: page open to the anatomy and
map on screen; slice steps (JS and painted frame) per plane; the 3D view (NiiVue's render mode on the same
volumes, reduced to at most 128 voxels a side as ours does) to its first frame and while rotating.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from bench.browser import CHROMIUM_ARGS, ROOT, chromium_path, static_server
from bench.demo_data import MODEL_GRID, blob_map, ct_map, model_grid_affine, write_ct
from tests.viewer_page import BRIGHT, STEP_JS
from viewer.component import camviewer_payload
from viewer.publish import map_uint8, publish_map, publish_nifti

NIIVUE = ROOT / "viewer" / "component" / "node_modules" / "@niivue" / "niivue" / "dist" / "index.js"
SAMPLE = ROOT / "sample_data" / "case_brain" / "t1_lesions.nii.gz"
PANES = "1384x460"  # three 460 px panes in a row, as ours at 1400 px
PANE_3D = "600x386"  # our 3D pane in the 2x2 layout
NIIVUE_STEPS = """
async ([delta, steps]) => {
  const painted = () => new Promise((r) => requestAnimationFrame(() => {
    const ch = new MessageChannel(); ch.port1.onmessage = r; ch.port2.postMessage(0); }));
  await painted();
  const js = [], frame = [];
  for (let n = 0; n < steps; n++) {
    const s = n % 20 < 10 ? 1 : -1;
    const t0 = performance.now();
    window.nv.moveCrosshairInVox(delta[0] * s, delta[1] * s, delta[2] * s);
    const t1 = performance.now();
    await painted();
    js.push(t1 - t0);
    frame.push(performance.now() - t0);
  }
  return {js, frame};
}
"""
ROTATE = """
async ([kind, n]) => {
  const painted = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const out = [];
  if (kind === "niivue") {
    for (let i = 1; i <= n; i++) {
      const t0 = performance.now();
      window.nv.setRenderAzimuthElevation(110 + 4 * i, 15);
      await painted();
      out.push(performance.now() - t0);
    }
    return out;
  }
  const c = document.querySelector('[data-testid="cv-canvas-3d"]');
  const r = c.getBoundingClientRect();
  const at = (x) => ({clientX: r.left + x, clientY: r.top + r.height / 2, bubbles: true, pointerId: 1, buttons: 1});
  c.dispatchEvent(new PointerEvent('pointerdown', at(100)));
  for (let i = 1; i <= n; i++) {
    const t0 = performance.now();
    c.dispatchEvent(new PointerEvent('pointermove', at(100 + 4 * i)));
    await painted();
    out.push(performance.now() - t0);
  }
  c.dispatchEvent(new PointerEvent('pointerup', at(100 + 4 * n)));
  return out;
}
"""


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path.name


def _reduced(data: np.ndarray, affine: np.ndarray, side: int = 128) -> tuple[np.ndarray, np.ndarray]:
    step = int(np.ceil(max(data.shape) / side))
    out = np.eye(4)
    out[:3, :3] = np.diag([step] * 3)
    return np.ascontiguousarray(data[::step, ::step, ::step]), affine @ out


def prepare(folder: Path) -> dict:
    """Files for both viewers under `folder` (served as the site root); returns the cases."""
    static = folder / "app" / "static"
    for name in ("ours.html", "niivue.html"):
        shutil.copy(ROOT / "bench" / "harness" / name, folder / name)
    shutil.copy(ROOT / "viewer" / "component" / "viewer.css", folder / "viewer.css")
    shutil.copy(NIIVUE, folder / "niivue.js")
    sample = nib.load(SAMPLE)
    sample_grid = model_grid_affine(sample.affine, sample.shape, MODEL_GRID)
    sample_values = blob_map(sample_grid, MODEL_GRID, [(1.0, BRIGHT["center_world_mm"])], 7.0)
    ct_path = write_ct(folder)
    ct_values, ct_grid = ct_map()
    cases = {}
    for name, anatomy_path, values, grid in (
        ("sample", SAMPLE, sample_values, sample_grid),
        ("ct", ct_path, ct_values, ct_grid),
    ):
        anatomy = publish_nifti(anatomy_path.read_bytes(), static, name)
        overlay = publish_map(values, grid, static, name)
        payload = camviewer_payload(static, anatomy, maps=[("map", overlay)])
        (folder / f"{name}.json").write_text(json.dumps(payload))
        map_file = _nifti(folder / f"{name}_map.nii.gz", map_uint8(values)[0], grid)
        shutil.copy(anatomy_path, folder / f"{name}.nii.gz")
        image = nib.load(anatomy_path)
        small, small_affine = _reduced(np.asarray(image.dataobj), image.affine)
        overlay_spec = {"colormap": "inferno", "opacity": 0.5, "cal_min": 51, "cal_max": 255}
        cases[name] = {
            "ours": f"ours.html?payload={name}.json",
            "niivue": [{"url": f"{name}.nii.gz"}, {"url": map_file, **overlay_spec}],
            "niivue_3d": [
                {"url": _nifti(folder / f"{name}_small.nii.gz", small, small_affine)},
                {"url": map_file, **overlay_spec},
            ],
        }
    return cases


def _pcts(values) -> list[float]:
    return [float(np.percentile(values, 50)), float(np.percentile(values, 95))]


def measure(browser, url: str, case: dict) -> dict:
    out = {}
    for kind in ("ours", "niivue"):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        if kind == "ours":
            page.goto(f"{url}/{case['ours']}")
            page.wait_for_selector('[data-testid="cv-root"][data-ready="1"][data-map-url^="app"]', timeout=300_000)
            page.wait_for_timeout(500)
            shown = page.evaluate(
                """() => Math.max(...['camviewer:anatomy-shown', 'camviewer:map-shown']
                  .map((n) => performance.getEntriesByName(n)[0].startTime))"""
            )
            steps = {p: page.evaluate(STEP_JS, [p, 40]) for p in ("axial", "coronal", "sagittal")}
        else:
            volumes = json.dumps(case["niivue"])
            page.goto(f"{url}/niivue.html?size={PANES}&volumes={volumes}")
            page.wait_for_function("() => window.ready", timeout=300_000)
            page.wait_for_timeout(500)
            shown = page.evaluate("() => performance.getEntriesByName('niivue:shown')[0].startTime")
            deltas = {"axial": [0, 0, 1], "coronal": [0, 1, 0], "sagittal": [1, 0, 0]}
            steps = {p: page.evaluate(NIIVUE_STEPS, [d, 40]) for p, d in deltas.items()}
        out[kind] = {
            "shown_s": shown / 1000,
            "steps": {p: {k: _pcts(v[k]) for k in ("js", "frame")} for p, v in steps.items()},
        }
        # The 3D view: ours in its 2x2 pane; NiiVue's render mode in a canvas of the same size.
        if kind == "ours":
            page.evaluate("() => { window.__t3d = performance.now(); }")
            page.select_option('[data-testid="cv-layout"]', "2x2")
            page.wait_for_selector('[data-plane="3d"][data-ready="1"]', timeout=60_000)
            first = page.evaluate("() => performance.now() - window.__t3d") / 1000
        else:
            page.goto(f"{url}/niivue.html?size={PANE_3D}&render=1&volumes={json.dumps(case['niivue_3d'])}")
            page.wait_for_function("() => window.ready", timeout=300_000)
            first = page.evaluate("() => performance.getEntriesByName('niivue:shown')[0].startTime") / 1000
        page.wait_for_timeout(500)
        out[kind]["3d_first_s"] = first
        out[kind]["3d_rotate_ms"] = _pcts(page.evaluate(ROTATE, [kind, 20]))
        context.close()
    return out


def run() -> dict:
    from playwright.sync_api import sync_playwright

    results = {"load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        cases = prepare(Path(tmp))
        with static_server(Path(tmp)) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
            for name, case in cases.items():
                results[name] = measure(browser, url, case)
            browser.close()
    results["load_after"] = os.getloadavg()[0]
    return results


def _row(x: dict, key: str) -> str:
    return " · ".join(
        f"{x['steps'][p][key][0]:.1f} / {x['steps'][p][key][1]:.1f}" for p in ("axial", "coronal", "sagittal")
    )


def table(r: dict) -> str:
    lines = [
        f"Load average (1 min) {r['load_before']:.1f} before, {r['load_after']:.1f} after. Static server, fresh "
        "browser context per viewer; 40 steps per plane.",
        "",
        "| case | viewer | page open → anatomy + map (s) | JS per step p50 / p95, axial · coronal · sagittal (ms) "
        "| step to painted frame p50 / p95, axial · coronal · sagittal (ms) | 3D: first frame (s) | 3D: rotation p50 / "
        "p95 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, label in (("sample", "sample MRI"), ("ct", "CT 512x512x300")):
        for kind, name in (("ours", "ours"), ("niivue", "NiiVue 0.69")):
            x = r[case][kind]
            lines.append(
                f"| {label} | {name} | {x['shown_s']:.2f} | {_row(x, 'js')} | {_row(x, 'frame')} | {x['3d_first_s']:.2f} | "
                f"{x['3d_rotate_ms'][0]:.0f} / {x['3d_rotate_ms'][1]:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> str | None:
    if not NIIVUE.exists():
        print("NiiVue is not installed: run `make setup` (npm ci in viewer/component). Skipped.")
        return None
    text = table(run())
    print(text)
    return text


if __name__ == "__main__":
    main()
