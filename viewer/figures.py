"""Figures beside the viewer (the class probabilities). Planes, montages, 3D and PNG export belong to the browser viewer
(viewer/component/js), so plane geometry is stated once, there."""

from __future__ import annotations

import html

import numpy as np

BARS_CSS = (
    "<style>.cv-bars{font-size:0.9rem}.cv-bar-measure{opacity:.7;margin-bottom:4px}"
    ".cv-bar-row{display:grid;grid-template-columns:minmax(6em,auto) 1fr 4.5em;gap:8px;align-items:center;margin:3px 0}"
    ".cv-bar-name{overflow-wrap:anywhere}.cv-bar-track{background:rgba(128,128,128,.2);height:14px;border-radius:2px}"
    ".cv-bar{display:block;height:100%;background:#4e79a7;border-radius:2px}.cv-bar-value{text-align:right}</style>"
)


def probability_bars(class_names: list[str], probabilities: np.ndarray, measure: str = "probability") -> str:
    """Horizontal bars of per-class values (a probability, or a segmentation's fraction of voxels) as plain HTML.

    Not a Plotly figure: Plotly's browser bundle (megabytes of JavaScript) would load and parse on every first view
    just for these bars (bench/first_view.py). Names are escaped and wrap, so long class names are shown whole.
    """
    rows = []
    for name, value in zip(class_names, np.asarray(probabilities, float)):
        width = f"{min(max(value, 0.0), 1.0) * 100:.1f}%"
        rows.append(
            f'<div class="cv-bar-row"><span class="cv-bar-name">{html.escape(str(name))}</span>'
            f'<span class="cv-bar-track"><span class="cv-bar" style="width:{width}"></span></span>'
            f'<span class="cv-bar-value">{value:.1%}</span></div>'
        )
    return (
        f'<div class="cv-bars" data-testid="cv-bars" aria-label="{html.escape(measure)} per class">{BARS_CSS}'
        f'<div class="cv-bar-measure">{html.escape(measure)}</div>{"".join(rows)}</div>'
    )
