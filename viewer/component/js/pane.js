// One slice pane: its canvas (one pixel per voxel), the zoom/pan transform, crosshair lines, orientation
// letters, a millimetre scale bar, and pointer gestures turned into plain callbacks for the viewer.
//
// The canvas keeps the slice's own resolution and is placed with a CSS transform, so zooming and panning
// are done by the browser's compositor (no JavaScript per frame) and a slice step uploads only the slice.
// Crosshair lines and labels are DOM elements moved by transforms for the same reason.

import { niceLength } from "./geometry.js";

export function el(tag, attrs = {}, parent = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  if (parent) parent.appendChild(node);
  return node;
}

export class Pane {
  /** handlers: {pick(pane, x, y, first), hover(pane, x|null, y), scroll(pane, delta), window(dx, dy, first),
   *  zoom(pane, factor, stageX, stageY), pan(pane, dx, dy), maximise(pane), focus(pane)} */
  constructor(parent, plane, handlers, { title = "", slider = true } = {}) {
    this.plane = plane;
    this.handlers = handlers;
    this.root = el("div", { class: "cv-pane", "data-plane": plane }, parent);
    const head = el("div", { class: "cv-pane-head" }, this.root);
    this.titleEl = el("span", { class: "cv-pane-title", text: title || plane }, head);
    this.sliceEl = el("span", { class: "cv-pane-slice" }, head);
    this.maxButton = el("button", { class: "cv-icon", title: "Maximise / restore (m, or double-click)", text: "⤢", type: "button" }, head);
    this.maxButton.addEventListener("click", () => handlers.maximise(this));
    this.stage = el("div", { class: "cv-stage" }, this.root);
    this.canvas = el("canvas", { class: "cv-image", "data-testid": `cv-canvas-${plane}` }, this.stage);
    this.ctx = this.canvas.getContext("2d");
    this.vline = el("div", { class: "cv-line cv-vline" }, this.stage);
    this.hline = el("div", { class: "cv-line cv-hline" }, this.stage);
    this.labelEls = {};
    for (const side of ["left", "right", "top", "bottom"]) this.labelEls[side] = el("div", { class: `cv-lab cv-${side}`, "data-side": side }, this.stage);
    this.measureSvg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    this.measureSvg.setAttribute("class", "cv-measure");
    this.measureLine = document.createElementNS("http://www.w3.org/2000/svg", "line");
    this.measureSvg.appendChild(this.measureLine);
    this.stage.appendChild(this.measureSvg);
    this.measureText = el("div", { class: "cv-measure-text", "data-testid": `cv-measure-${plane}` }, this.stage);
    this.setMeasure(null);
    this.bar = el("div", { class: "cv-scalebar" }, this.stage);
    this.barText = el("div", { class: "cv-scalebar-text" }, this.stage);
    if (slider) {
      this.slider = el("input", { type: "range", min: "0", max: "0", step: "1", class: "cv-slider", "data-testid": `cv-slider-${plane}` }, this.root);
      this.slider.addEventListener("input", () => handlers.slice(this, parseInt(this.slider.value, 10)));
    }
    this.view = { zoom: 1, panX: 0, panY: 0 };
    this.stageW = 0;
    this.stageH = 0;
    this.layout = null;
    this.bindPointer();
  }

  // ------------------------------------------------------------------ geometry on screen
  /** Set the plane layout (from geometry.planeLayout); resizes the backing store if the slice size changed. */
  setLayout(layout) {
    this.layout = layout;
    if (this.canvas.width !== layout.width || this.canvas.height !== layout.height || !this.pixels) {
      this.canvas.width = layout.width;
      this.canvas.height = layout.height;
      this.canvas.style.width = `${layout.width}px`;
      this.canvas.style.height = `${layout.height}px`;
      this.imageData = this.ctx.createImageData(layout.width, layout.height);
      this.pixels = new Uint32Array(this.imageData.data.buffer);
      this.labels = new Uint8Array(layout.width * layout.height);
    }
    for (const [side, node] of Object.entries(this.labelEls)) node.textContent = layout.labels[side];
    this.place();
  }

  setStageSize(width, height) {
    if (width === this.stageW && height === this.stageH) return;
    this.stageW = width;
    this.stageH = height;
    this.stage.style.width = `${width}px`;
    this.stage.style.height = `${height}px`;
    this.place();
  }

  /** CSS pixels per mm at zoom 1 (the slice fitted into the stage at its physical aspect). */
  fitScale() {
    const { width, height, mmX, mmY } = this.layout;
    return Math.min(this.stageW / (width * mmX), this.stageH / (height * mmY));
  }

  /** Screen transform of the image: stage = t + pixel * s (per axis). */
  transform() {
    const { width, height, mmX, mmY } = this.layout;
    const k = this.fitScale() * this.view.zoom;
    const sx = k * mmX;
    const sy = k * mmY;
    return { sx, sy, tx: (this.stageW - width * sx) / 2 + this.view.panX, ty: (this.stageH - height * sy) / 2 + this.view.panY, mmPerPx: 1 / k };
  }

  setView(view) {
    this.view = { ...view };
    this.place();
  }

  place() {
    if (!this.layout || !this.stageW) return;
    const t = this.transform();
    this.canvas.style.transform = `translate(${t.tx}px, ${t.ty}px) scale(${t.sx}, ${t.sy})`;
    const mm = niceLength(this.stageW * 0.22 * t.mmPerPx);
    this.bar.style.width = `${Math.round(mm / t.mmPerPx)}px`;
    this.barText.textContent = `${mm >= 1 ? mm : mm.toFixed(1)} mm`;
    if (this.cross) this.setCrosshair(...this.cross);
    this.placeMeasure();
  }

  /** A measured segment: its ends in slice pixel coordinates and its length text; null hides it. */
  setMeasure(ends, text = "") {
    this.measure = ends;
    this.measureSvg.style.display = ends ? "" : "none";
    this.measureText.hidden = !ends;
    this.measureText.textContent = text;
    this.placeMeasure();
  }

  placeMeasure() {
    if (!this.measure || !this.layout || !this.stageW) return;
    const [a, b = a] = this.measure.map(([x, y]) => this.toStage(x, y));
    for (const [name, value] of [["x1", a[0]], ["y1", a[1]], ["x2", b[0]], ["y2", b[1]]]) this.measureLine.setAttribute(name, String(value));
    this.measureText.style.transform = `translate(${Math.round(b[0] + 6)}px, ${Math.round(b[1] - 18)}px)`;
  }

  /** Stage (CSS px from the stage's top-left) -> pixel coordinates of the slice image. */
  toPixel(stageX, stageY) {
    const t = this.transform();
    return [(stageX - t.tx) / t.sx, (stageY - t.ty) / t.sy];
  }

  toStage(x, y) {
    const t = this.transform();
    return [t.tx + x * t.sx, t.ty + y * t.sy];
  }

  /** Crosshair at pixel coordinates (x, y) of the slice image (voxel centres are at c + 0.5). */
  // The setters below write to the DOM only what changed: a slice step must not restyle every pane.
  setCrosshair(x, y) {
    this.cross = [x, y];
    const [sx, sy] = this.toStage(x, y);
    const px = Math.round(sx);
    const py = Math.round(sy);
    if (px !== this.crossPx) this.vline.style.transform = `translateX(${(this.crossPx = px)}px)`;
    if (py !== this.crossPy) this.hline.style.transform = `translateY(${(this.crossPy = py)}px)`;
  }

  showCrosshair(visible) {
    if (visible === this.crossVisible) return;
    this.crossVisible = visible;
    this.vline.hidden = !visible;
    this.hline.hidden = !visible;
  }

  setSliceText(index, count) {
    if (index === this.shownIndex && count === this.shownCount) return;
    this.shownIndex = index;
    this.shownCount = count;
    // 0-based, like the voxel index in the readout, the exported NIfTI and 3D Slicer's IJK.
    this.sliceEl.textContent = count > 1 ? `slice ${index} (0–${count - 1})` : "";
    this.root.setAttribute("data-slice", String(index));
    if (this.slider) {
      this.slider.max = String(count - 1);
      this.slider.value = String(index);
      this.slider.hidden = count <= 1;
    }
  }

  /** Upload the composed pixels (pane.pixels) to the canvas. */
  commit() {
    this.ctx.putImageData(this.imageData, 0, 0);
  }

  // ------------------------------------------------------------------ gestures
  bindPointer() {
    const stage = this.stage;
    const local = (e) => {
      const rect = stage.getBoundingClientRect();
      return [e.clientX - rect.left, e.clientY - rect.top];
    };
    let drag = null;
    stage.addEventListener("contextmenu", (e) => e.preventDefault());
    stage.addEventListener("pointerdown", (e) => {
      e.preventDefault();
      this.handlers.focus(this);
      stage.setPointerCapture(e.pointerId);
      const [x, y] = local(e);
      const mode = e.button === 2 ? "window" : e.button === 1 || (e.button === 0 && e.shiftKey) ? "pan" : e.button === 0 ? "pick" : null;
      drag = mode && { mode, x, y };
      if (mode === "pick") this.handlers.pick(this, ...this.toPixel(x, y), true);
      if (mode === "window") this.handlers.window(0, 0, true);
    });
    stage.addEventListener("pointermove", (e) => {
      const [x, y] = local(e);
      if (!drag) {
        this.handlers.hover(this, ...this.toPixel(x, y));
        return;
      }
      const dx = x - drag.x;
      const dy = y - drag.y;
      if (drag.mode === "pick") this.handlers.pick(this, ...this.toPixel(x, y));
      else if (drag.mode === "window") this.handlers.window(dx, dy, false);
      else if (drag.mode === "pan") {
        drag.x = x;
        drag.y = y;
        this.handlers.pan(this, dx, dy);
      }
      this.handlers.hover(this, ...this.toPixel(x, y));
    });
    const end = (e) => {
      drag = null;
      if (stage.hasPointerCapture(e.pointerId)) stage.releasePointerCapture(e.pointerId);
    };
    stage.addEventListener("pointerup", end);
    stage.addEventListener("pointercancel", end);
    stage.addEventListener("pointerleave", () => {
      if (!drag) this.handlers.hover(this, null, null);
    });
    stage.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        const [x, y] = local(e);
        // A 2D image has no slices to scroll: the wheel zooms about the cursor, as in any image viewer.
        if (e.ctrlKey || e.metaKey || this.zoomOnWheel) this.handlers.zoom(this, Math.exp(-e.deltaY * 0.002), x, y);
        else this.handlers.scroll(this, e.deltaY > 0 ? -1 : 1);
      },
      { passive: false },
    );
    stage.addEventListener("dblclick", () => this.handlers.maximise(this));
  }
}
