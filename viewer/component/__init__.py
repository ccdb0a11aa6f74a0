"""The camviewer slice viewer as a Streamlit component (components v2, mounted in the page, no iframe).

Python sends a payload of a few kB per rerun: descriptors (URLs and geometry) of arrays published once by
`viewer.publish`, the maps' titles, and first settings. The viewer itself is a set of ES modules in `js/`,
published once per content hash to the app's static folder (assets.py) and imported by URL from a tiny inline
script, so the browser caches it like any static file. Nothing is sent back to Python: display controls, crosshair,
hover and PNG export all act in the browser.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from viewer.colormap import NAMES
from viewer.component.assets import publish_assets
from viewer.publish import Published

_HERE = Path(__file__).parent

# Imports the viewer (one bundled ES module, see assets.py) by URL once per page; `data.assets` says where it is,
# relative to the page. The image is announced at once (preload) so it downloads while the code loads.
_LOADER = """
let started = false;
export default function (component) {
  const data = component.data;
  if (!data || !data.assets) return;
  const url = (path) => new URL(path, document.baseURI).href;
  if (!started && data.anatomy) {
    started = true;
    const link = Object.assign(document.createElement("link"), { rel: "preload", as: "fetch", crossOrigin: "anonymous" });
    link.href = url(data.anatomy.url);
    document.head.appendChild(link);
  }
  import(url(`${data.assets}/camviewer.js`)).then((m) => m.mount(component));
}
"""

_COMPONENT = st.components.v2.component(
    "camviewer_view",
    html="",
    css=(_HERE / "viewer.css").read_text(),
    js=_LOADER,
    # Our CSS is prefixed (cv-*); without a shadow root, tests and the PNG export can reach the canvases.
    isolate_styles=False,
)


def _entry(title: str, published: Published, key: str = "") -> dict:
    """A ready map: its title, its descriptor, and the key it was computed under (the viewer exposes it)."""
    return {"title": title, "key": key or published.url, **published.to_dict()}


def camviewer_payload(
    static_root: Path,
    anatomy: Published,
    *,
    maps: list[tuple[str, Published] | tuple[str, Published, str] | dict] = (),
    mask: Published | None = None,
    mask_kind: str = "labels",
    mask_names: dict[int, str] | None = None,
    mask_colours: dict[int, tuple[int, int, int]] | None = None,
    mask_title: str = "mask",
    window: tuple[float, float] | None = None,
    colourmap: str = "inferno",
    opacity: float = 0.5,
    threshold: float = 0.2,
    radiological: bool = True,
    layout: str = "1x3",
    cache_mb: int | None = None,
) -> dict:
    """The component's data: descriptors and first settings, a few kB whatever the image size.

    maps: (title, Published[, key]) tuples, or entries from `viewer.status.pending_map` for maps still computing;
    the first is overlaid, all of them are compared side by side when there are two or more.
    mask: labels (`publish_labels`; names/colours per label) or, with mask_kind="map", a second map drawn
    as an outline at half its peak. window: (width, level) to start with; by default CT soft tissue for CT,
    else the image's 0.5-99.5 percentiles. Settings given here apply when the anatomy first appears; after
    that the user's choices in the browser persist across reruns.
    """
    if colourmap not in NAMES:
        raise ValueError(f"unknown colour map {colourmap!r}; choose one of {NAMES}")
    if layout not in ("1x3", "2x2"):
        raise ValueError(f"layout must be '1x3' or '2x2'; got {layout!r}")
    if mask_kind not in ("labels", "map"):
        raise ValueError(f"mask_kind must be 'labels' or 'map'; got {mask_kind!r}")
    payload = {
        "assets": publish_assets(static_root),
        "anatomy": anatomy.to_dict(),
        "maps": [m if isinstance(m, dict) else _entry(*m) for m in maps],
        "mask": None,
        "window": {"width": float(window[0]), "level": float(window[1])} if window else None,
        "options": {
            "colourmap": colourmap,
            "opacity": float(opacity),
            "threshold": float(threshold),
            "radiological": bool(radiological),
            "layout": layout,
        },
    }
    if cache_mb:
        payload["options"]["cache_mb"] = int(cache_mb)
    if mask is not None:
        payload["mask"] = {
            **mask.to_dict(),
            "kind": mask_kind,
            "title": mask_title,
            "names": {str(k): v for k, v in (mask_names or {}).items()},
            "colours": {str(k): list(map(int, v)) for k, v in (mask_colours or {}).items()},
        }
    return payload


def camviewer(payload: dict, key: str = "camviewer") -> None:
    """Mount (or update) the viewer. Returns nothing: the viewer never talks back to Python."""
    _COMPONENT(data=payload, key=key, height="content")
