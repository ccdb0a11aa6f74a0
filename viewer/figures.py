"""Plotly figures beside the viewer. Planes, montages, 3D and PNG export belong to the browser viewer
(viewer/component/js), so plane geometry is stated once, there."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


def probability_bars(
    class_names: list[str], probabilities: np.ndarray, chosen: int | None = None, measure: str = "probability"
) -> go.Figure:
    """Horizontal bars of per-class values (a probability, or a segmentation's fraction of voxels); the target highlighted."""
    colours = ["#f28e2b" if i == chosen else "#4e79a7" for i in range(len(class_names))]
    fig = go.Figure(
        go.Bar(
            x=np.asarray(probabilities, float),
            y=class_names,
            orientation="h",
            marker_color=colours,
            text=[f"{p:.1%}" for p in probabilities],
            textposition="auto",
        )
    )
    fig.update_layout(
        height=60 + 28 * len(class_names),
        margin=dict(l=0, r=0, t=10, b=0),
        xaxis=dict(range=[0, 1], title=measure),
        yaxis=dict(autorange="reversed", automargin=True),  # long class names are shown whole
    )
    return fig
