"""Slice renderers side by side, same page size, same data, same run: why the viewer draws the way it does.

    python -m bench.viewer_renderers

bench/harness/renderers.html shows a 512 x 512 x 300 int16 CT with a 64^3 map in three 440 px panes, drawn
three ways (see the page for details): `ours` (slice-resolution canvas scaled by the compositor), `scaled`
(the first viewer: drawImage into a stage-sized canvas, crosshair redrawn on a canvas), `webgl2` (textures
and a fragment shader). The modes alternate, twice each, in one browser.
"""

from __future__ import annotations

import os

import numpy as np

from bench.browser import chromium_page, static_server

MODES = ("ours", "scaled", "webgl2")
PLANES = ("axial", "coronal", "sagittal")


def run(rounds: int = 2, steps: int = 60) -> dict:
    results = {mode: {plane: {"js": [], "frame": []} for plane in (*PLANES, "floor")} for mode in MODES}
    with static_server() as url, chromium_page(1500, 700) as page:
        for _ in range(rounds):
            for mode in MODES:
                page.goto(f"{url}/bench/harness/renderers.html?mode={mode}&side=440")
                page.wait_for_function("() => window.ready", timeout=120_000)
                page.wait_for_timeout(300)
                for plane in (*PLANES, "floor"):
                    t = page.evaluate("([p, n]) => window.measure(p, n)", [plane, steps])
                    for key in ("js", "frame"):
                        results[mode][plane][key] += t[key]
    return results


def table(results: dict) -> str:
    load = os.getloadavg()[0]
    lines = [
        f"Load average (1 min) at the end: {load:.1f}. Per plane: p50 / p95 over {len(results['ours']['axial']['js'])}"
        " steps.",
        "",
        "| renderer | JS per step, axial / coronal / sagittal (ms) | step to painted frame, axial / coronal / sagittal "
        "(ms) | frame floor (ms) |",
        "|---|---|---|---|",
    ]
    fmt = lambda v: f"{np.percentile(v, 50):.1f} / {np.percentile(v, 95):.1f}"  # noqa: E731
    for mode in MODES:
        r = results[mode]
        js = " · ".join(fmt(r[p]["js"]) for p in PLANES)
        frame = " · ".join(fmt(r[p]["frame"]) for p in PLANES)
        lines.append(f"| {mode} | {js} | {frame} | {fmt(r['floor']['frame'])} |")
    return "\n".join(lines) + "\n"


def main() -> str:
    text = table(run())
    print(text)
    return text


if __name__ == "__main__":
    main()
