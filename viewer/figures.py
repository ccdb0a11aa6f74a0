"""Plotly figures and PNG snapshots from numpy arrays (RAS voxel order, i fastest growing to the right).

DEPRECATED here: `plane_slice`, `montage`, `views_png` and `cam_3d` restate plane geometry (or draw a 3D view)
that the browser viewer now owns (viewer/component/js/geometry.js, its compare grid, its PNG export and its 3D
pane). They stay until app.py stops importing them; `probability_bars` stays.
"""

from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from viewer.colormap import blend, plotly_scale
from viewer.windowing import apply_window

PLANE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}


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
        yaxis=dict(autorange="reversed"),
    )
    return fig


def plane_slice(volume: np.ndarray, plane: str, index: int, radiological: bool = True) -> np.ndarray:
    """A 2D slice oriented for display: rows top->bottom = anterior/superior first, as the viewer shows it.

    DEPRECATED: the browser's panes (geometry.js).
    """
    axis = PLANE_AXIS[plane]
    index = int(np.clip(index, 0, volume.shape[axis] - 1))
    s = np.take(volume, index, axis=axis)  # axial (i, j), coronal (i, k), sagittal (j, k)
    s = s.T[::-1]  # rows: j or k descending (anterior / superior on top); columns: first remaining axis
    if plane == "sagittal":
        s = s[:, ::-1]  # anterior on the left
    elif radiological:
        s = s[:, ::-1]  # patient's right on screen left
    return s


def montage(
    anatomy: np.ndarray,
    maps: list[tuple[str, np.ndarray]],
    plane: str,
    index: int,
    window: tuple[float, float],
    colourmap: str = "inferno",
    threshold: float = 0.2,
    radiological: bool = True,
) -> go.Figure:
    """The same slice across several maps (e.g. every candidate layer), one shared colour scale 0..1.

    DEPRECATED: the viewer's compare grid (one pane per map).
    """
    n = len(maps)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[title for title, _ in maps],
        horizontal_spacing=0.02,
        vertical_spacing=0.08,
    )
    grey = apply_window(plane_slice(anatomy, plane, index, radiological), *window)
    for n_map, (_, cam) in enumerate(maps):
        rgb = blend(grey, plane_slice(cam, plane, index, radiological), colourmap, 0.6, threshold)
        fig.add_trace(go.Image(z=rgb, hoverinfo="skip"), row=n_map // cols + 1, col=n_map % cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    fig.update_layout(height=260 * rows + 40, margin=dict(l=0, r=0, t=40, b=0))
    return fig


def _downsample(volume: np.ndarray, target: int) -> tuple[np.ndarray, int]:
    step = max(1, int(np.ceil(max(volume.shape) / target)))
    return volume[::step, ::step, ::step], step


def cam_3d(
    anatomy: np.ndarray,
    cam: np.ndarray,
    spacing: tuple[float, float, float],
    threshold: float = 0.5,
    outline_level: float | None = None,
    colourmap: str = "inferno",
    target: int = 48,
) -> go.Figure:
    """The CAM above `threshold` as an isosurface inside a translucent head/body outline (downsampled).

    DEPRECATED: the viewer's 3D pane.
    """
    small_anat, step = _downsample(anatomy, target)
    small_cam = cam[::step, ::step, ::step]
    grids = np.meshgrid(*[np.arange(n) * step * sp for n, sp in zip(small_anat.shape, spacing)], indexing="ij")
    x, y, z = (g.ravel() for g in grids)
    if outline_level is None:
        outline_level = (
            float(np.percentile(small_anat[small_anat > small_anat.min()], 20))
            if np.any(small_anat > small_anat.min())
            else float(small_anat.mean())
        )
    fig = go.Figure()
    fig.add_trace(
        go.Isosurface(
            x=x,
            y=y,
            z=z,
            value=small_anat.ravel(),
            isomin=outline_level,
            isomax=outline_level,
            surface_count=1,
            opacity=0.12,
            colorscale=[[0, "#9aa"], [1, "#9aa"]],
            showscale=False,
            caps=dict(x_show=False, y_show=False, z_show=False),
            name="outline",
            hoverinfo="skip",
        )
    )
    if float(small_cam.max()) >= threshold:
        fig.add_trace(
            go.Isosurface(
                x=x,
                y=y,
                z=z,
                value=small_cam.ravel(),
                isomin=threshold,
                isomax=1.0,
                surface_count=3,
                opacity=0.6,
                colorscale=plotly_scale(colourmap),
                cmin=0,
                cmax=1,
                caps=dict(x_show=False, y_show=False, z_show=False),
                name="CAM",
                colorbar=dict(title="CAM", len=0.6),
            )
        )
    fig.update_layout(
        height=420,
        margin=dict(l=0, r=0, t=0, b=0),
        scene=dict(aspectmode="data", xaxis_title="R (mm)", yaxis_title="A (mm)", zaxis_title="S (mm)"),
    )
    return fig


def views_png(
    anatomy: np.ndarray,
    cam: np.ndarray | None,
    crosshair: list[int],
    spacing: tuple[float, float, float],
    window: tuple[float, float],
    colourmap: str = "inferno",
    opacity: float = 0.5,
    threshold: float = 0.2,
    radiological: bool = True,
    title: str = "",
) -> bytes:
    """A PNG of the three planes through `crosshair`, at physical aspect, with orientation letters.

    DEPRECATED: the viewer's PNG export (what the user sees).
    """
    from PIL import Image, ImageDraw

    tiles = []
    for plane in ("axial", "coronal", "sagittal"):
        axis = PLANE_AXIS[plane]
        grey = apply_window(plane_slice(anatomy, plane, crosshair[axis], radiological), *window)
        overlay = plane_slice(cam, plane, crosshair[axis], radiological) if cam is not None else np.zeros(grey.shape)
        rgb = blend(grey, overlay, colourmap, opacity if cam is not None else 0.0, threshold)
        col_sp, row_sp = [s for a, s in enumerate(spacing) if a != axis]
        h, w = rgb.shape[:2]
        size = 320
        k = size / max(w * col_sp, h * row_sp)
        tile = Image.fromarray(rgb).resize((max(1, round(w * col_sp * k)), max(1, round(h * row_sp * k))))
        canvas = Image.new("RGB", (size, size + 18), "black")
        canvas.paste(tile, ((size - tile.width) // 2, 18 + (size - tile.height) // 2))
        draw = ImageDraw.Draw(canvas)
        left, right = ("A", "P") if plane == "sagittal" else (("R", "L") if radiological else ("L", "R"))
        top, bottom = ("A", "P") if plane == "axial" else ("S", "I")
        draw.text((3, 18 + size // 2), left, fill="yellow")
        draw.text((size - 10, 18 + size // 2), right, fill="yellow")
        draw.text((size // 2, 20), top, fill="yellow")
        draw.text((size // 2, size + 4), bottom, fill="yellow")
        draw.text((3, 2), f"{plane} {crosshair[axis] + 1}", fill="white")
        tiles.append(canvas)
    sheet = Image.new("RGB", (sum(t.width for t in tiles), tiles[0].height + 16), "black")
    for n, tile in enumerate(tiles):
        sheet.paste(tile, (n * tile.width, 16))
    ImageDraw.Draw(sheet).text((3, 2), title, fill="white")
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
