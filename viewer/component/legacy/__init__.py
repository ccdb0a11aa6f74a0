"""DEPRECATED: the first slice-view component, kept only until app.py moves to `viewer.component.camviewer`.

The three linked planes, client-side controls.

`slice_view(...)` sends only small metadata and URLs per rerun; the arrays themselves
were published once by `viewer.display` and are cached by the browser.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from viewer.colormap import NAMES, lut
from viewer.display import Published

_HERE = Path(__file__).parent
_COMPONENT = st.components.v2.component(
    "camviewer_slices",
    html="",
    css=(_HERE / "viewer.css").read_text(),
    js=(_HERE / "viewer.js").read_text(),
    # Our CSS is prefixed (cv-*); without a shadow root, tests and the page can reach the canvases.
    isolate_styles=False,
)


def view_payload(
    anatomy: Published,
    ras_affine: np.ndarray,
    file_affine: np.ndarray,
    spacing: tuple,
    *,
    window: dict,
    version: str,
    overlay: Published | None = None,
    raw_peak: float = 0.0,
    overlay_label: str = "",
    crosshair: list[int] | None = None,
    compare: list[tuple[str, Published]] | None = None,
    colourmap: str = "inferno",
    opacity: float = 0.5,
    threshold: float = 0.2,
    radiological: bool = True,
) -> dict:
    """Everything the component needs, as JSON: a few kB, whatever the volume size."""
    ras_to_file = np.linalg.inv(file_affine) @ ras_affine
    return {
        "version": version,
        "anatomy": anatomy.to_dict(),
        "overlay": overlay.to_dict() if overlay else None,
        "overlay_label": overlay_label,
        "raw_peak": float(raw_peak),
        "compare": [{"title": title, "map": p.to_dict()} for title, p in (compare or [])],
        "spacing": [float(s) for s in spacing],
        "ras_affine": np.asarray(ras_affine, float).round(6).tolist(),
        "ras_to_file": ras_to_file.round(6).tolist(),
        "crosshair": crosshair,
        "window": window,
        "colourmap": colourmap,
        "colourmaps": {name: lut(name).ravel().tolist() for name in NAMES},
        "opacity": opacity,
        "threshold": threshold,
        "radiological": radiological,
    }


def slice_view(payload: dict, key: str = "slices") -> object:
    """Mount the viewer; returns the component result (its `crosshair` state after a click)."""
    return _COMPONENT(data=payload, key=key, height="content", on_crosshair_change=lambda: None)
