// camviewer slice view: three linked planes (axial, coronal, sagittal) drawn on canvas.
//
// Arrays arrive once per content hash: `data` carries only URLs of gzip files that
// Python wrote under app/static/, fetched and decoded here and kept in a module-level
// cache for the life of the page. Every display control (window/level, opacity,
// threshold, colour map, radiological flip, slice, crosshair) acts here, with no
// Streamlit rerun and nothing sent back over the websocket.
//
// Voxel order is RAS with i fastest: index = i + nx * (j + ny * k).

const arrayCache = new Map(); // url -> Promise<TypedArray>
const instances = new Map(); // component key -> state, survives reruns

const PLANES = ["axial", "coronal", "sagittal"];
const PRESETS = {
  "MR auto": null,
  "CT brain": [80, 40],
  "CT soft tissue": [400, 40],
  "CT lung": [1500, -600],
  "CT bone": [2500, 480],
};

function fetchArray(desc) {
  if (!arrayCache.has(desc.url)) {
    const started = performance.now();
    const p = fetch(desc.url)
      .then((r) => {
        if (!r.ok) throw new Error(`HTTP ${r.status} for ${desc.url}`);
        return r.body.pipeThrough(new DecompressionStream("gzip"));
      })
      .then((stream) => new Response(stream).arrayBuffer())
      .then((buf) => {
        const arr = desc.dtype === "int16" ? new Int16Array(buf) : new Uint8Array(buf);
        window.__camviewer.fetches.push({ url: desc.url, bytes: desc.nbytes, ms: performance.now() - started });
        return arr;
      });
    p.catch(() => arrayCache.delete(desc.url)); // a failed fetch may be retried on the next render
    arrayCache.set(desc.url, p);
  }
  return arrayCache.get(desc.url);
}

window.__camviewer = window.__camviewer || { fetches: [], renders: 0, stepTimes: [], ready: false };

function el(tag, attrs = {}, parent = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  if (parent) parent.appendChild(node);
  return node;
}

function matVec(m, v) {
  return [0, 1, 2].map((r) => m[r][0] * v[0] + m[r][1] * v[1] + m[r][2] * v[2] + m[r][3]);
}

function buildLut(colours) {
  // colours: flat [r,g,b,...] 256 entries from Python (the same tables as the figures)
  return Uint8Array.from(colours);
}

class SliceViewer {
  constructor(parent) {
    this.root = el("div", { class: "cv-root", tabindex: "0", "data-testid": "cv-root" });
    parent.appendChild(this.root);
    this.state = null;
    this.vol = null;
    this.cam = null;
    this.compare = [];
    this.cross = [0, 0, 0];
    this.active = "axial";
    this.buildToolbar();
    this.viewsRow = el("div", { class: "cv-views" }, this.root);
    this.views = {};
    for (const plane of PLANES) this.views[plane] = this.buildView(plane, this.viewsRow, true);
    this.readout = el("div", { class: "cv-readout", "data-testid": "cv-readout", text: "Loading…" }, this.root);
    this.colourbar = el("canvas", { class: "cv-colourbar", width: "512", height: "14" }, this.root);
    this.colourbarLabels = el("div", { class: "cv-colourbar-labels" }, this.root);
    this.compareRow = el("div", { class: "cv-compare" }, this.root);
    this.compareViews = [];
    this.greyLut = new Uint8Array(65536);
    this.root.addEventListener("keydown", (e) => this.onKey(e));
    this.resizeObserver = new ResizeObserver(() => this.layout());
    this.resizeObserver.observe(this.root);
  }

  // ---------------------------------------------------------------- DOM
  buildToolbar() {
    const bar = el("div", { class: "cv-toolbar" }, this.root);
    const group = (label) => {
      const g = el("label", { class: "cv-group" }, bar);
      el("span", { text: label }, g);
      return g;
    };
    this.presetSel = el("select", { "data-testid": "cv-preset" }, group("Window"));
    for (const name of [...Object.keys(PRESETS), "Custom"]) el("option", { value: name, text: name }, this.presetSel);
    this.presetSel.addEventListener("change", () => this.applyPreset(this.presetSel.value));
    this.widthIn = el("input", { type: "number", step: "any", class: "cv-num", "data-testid": "cv-width" }, group("W"));
    this.levelIn = el("input", { type: "number", step: "any", class: "cv-num", "data-testid": "cv-level" }, group("L"));
    for (const input of [this.widthIn, this.levelIn]) {
      input.addEventListener("input", () => {
        this.presetSel.value = "Custom";
        this.setWindow(parseFloat(this.widthIn.value), parseFloat(this.levelIn.value));
      });
    }
    this.opacityIn = el("input", { type: "range", min: "0", max: "1", step: "0.05", "data-testid": "cv-opacity" },
      group("Opacity"));
    this.opacityIn.addEventListener("input", () => this.timed(() => this.renderAll()));
    this.thresholdIn = el("input", { type: "range", min: "0", max: "1", step: "0.05", "data-testid": "cv-threshold" },
      group("Threshold"));
    this.thresholdIn.addEventListener("input", () => this.timed(() => { this.renderAll(); this.drawColourbar(); }));
    this.cmapSel = el("select", { "data-testid": "cv-cmap" }, group("Colour map"));
    this.cmapSel.addEventListener("change", () => this.timed(() => { this.renderAll(); this.drawColourbar(); }));
    this.radioIn = el("input", { type: "checkbox", "data-testid": "cv-radiological" }, group("Radiological"));
    this.radioIn.addEventListener("change", () => this.timed(() => this.renderAll()));
    this.overlayIn = el("input", { type: "checkbox", "data-testid": "cv-overlay" }, group("Overlay"));
    this.overlayIn.checked = true;
    this.overlayIn.addEventListener("change", () => this.timed(() => this.renderAll()));
  }

  buildView(plane, parent, withSlider) {
    const wrap = el("div", { class: "cv-view", "data-plane": plane }, parent);
    const title = el("div", { class: "cv-title", text: plane }, wrap);
    const box = el("div", { class: "cv-box" }, wrap);
    const canvas = el("canvas", { "data-testid": `cv-canvas-${plane}` }, box);
    // Crosshair on its own transparent canvas: moving it never re-blits the slice images.
    const lines = el("canvas", { class: "cv-lines" }, box);
    const labels = {};
    for (const side of ["left", "right", "top", "bottom"]) labels[side] = el("div", { class: `cv-lab cv-${side}` }, box);
    const view = { plane, wrap, title, box, canvas, lines, ctx: canvas.getContext("2d"), lctx: lines.getContext("2d"),
      labels, off: document.createElement("canvas") };
    view.offctx = view.off.getContext("2d");
    if (withSlider) {
      view.slider = el("input", { type: "range", min: "0", max: "0", step: "1", class: "cv-slider", "data-testid": `cv-slider-${plane}` }, wrap);
      view.slider.addEventListener("input", () => this.timed(() => this.setSlice(plane, parseInt(view.slider.value, 10))));
      this.bindPointer(view);
    }
    return view;
  }

  bindPointer(view) {
    const target = view.lines;
    const toVoxel = (e) => {
      const rect = target.getBoundingClientRect();
      const fit = view.fit;
      if (!fit) return null;
      const x = ((e.clientX - rect.left) * (view.canvas.width / rect.width) - fit.dx) / fit.dw;
      const y = ((e.clientY - rect.top) * (view.canvas.height / rect.height) - fit.dy) / fit.dh;
      if (x < 0 || x >= 1 || y < 0 || y >= 1) return null;
      const [w, h] = this.planeSize(view.plane);
      return this.voxelOf(view.plane, Math.floor(x * w), Math.floor(y * h));
    };
    target.addEventListener("pointerdown", (e) => {
      this.active = view.plane;
      this.root.focus({ preventScroll: true });
      const v = toVoxel(e);
      if (v) this.timed(() => this.setCross(v));
      view.dragging = true;
    });
    target.addEventListener("pointermove", (e) => {
      if (!view.dragging || !(e.buttons & 1)) return;
      const v = toVoxel(e);
      if (v) this.timed(() => this.setCross(v));
    });
    const stop = () => {
      if (view.dragging && this.setStateValue) this.setStateValue("crosshair", [...this.cross]);
      view.dragging = false;
    };
    target.addEventListener("pointerup", stop);
    target.addEventListener("pointerleave", () => { view.dragging = false; });
    target.addEventListener("wheel", (e) => {
      e.preventDefault();
      this.active = view.plane;
      this.timed(() => this.step(view.plane, e.deltaY > 0 ? -1 : 1));
    }, { passive: false });
  }

  // ---------------------------------------------------------------- data
  async update(data, setStateValue) {
    this.setStateValue = setStateValue;
    const first = !this.state || this.state.version !== data.version;
    this.state = data;
    if (first) {
      this.cmapSel.innerHTML = "";
      for (const name of Object.keys(data.colourmaps)) el("option", { value: name, text: name }, this.cmapSel);
      this.cmapSel.value = data.colourmap;
      this.opacityIn.value = data.opacity;
      this.thresholdIn.value = data.threshold;
      this.radioIn.checked = data.radiological;
      this.presetSel.value = data.window.preset in PRESETS ? data.window.preset : "Custom";
      this.widthIn.value = data.window.width;
      this.levelIn.value = data.window.level;
      this.autoWindow = [data.window.auto_width, data.window.auto_level];
    }
    this.readout.textContent = "Loading volume…";
    const [vol, cam, ...compare] = await Promise.all([
      fetchArray(data.anatomy),
      data.overlay ? fetchArray(data.overlay) : Promise.resolve(null),
      ...(data.compare || []).map((c) => fetchArray(c.map)),
    ]);
    if (this.state !== data) return; // a newer render arrived while fetching
    this.vol = vol;
    this.cam = cam;
    this.compare = compare;
    const [nx, ny, nz] = data.anatomy.shape;
    this.dims = [nx, ny, nz];
    if (first) this.cross = data.crosshair ? [...data.crosshair] : [nx >> 1, ny >> 1, nz >> 1];
    this.cross = this.cross.map((c, a) => Math.max(0, Math.min(this.dims[a] - 1, c)));
    this.views.axial.slider.max = String(nz - 1);
    this.views.coronal.slider.max = String(ny - 1);
    this.views.sagittal.slider.max = String(nx - 1);
    this.buildCompareViews();
    this.setWindow(parseFloat(this.widthIn.value), parseFloat(this.levelIn.value), false);
    this.layout();
    this.drawColourbar();
    window.__camviewer.ready = true;
    window.__camviewer.version = data.version;
    window.__camviewer.overlay = data.overlay ? data.overlay.url : null;
  }

  buildCompareViews() {
    this.compareRow.innerHTML = "";
    this.compareViews = (this.state.compare || []).map((c, n) => {
      const view = this.buildView(this.active, this.compareRow, false);
      view.title.textContent = c.title;
      view.compareIndex = n;
      return view;
    });
  }

  // ---------------------------------------------------------------- geometry
  planeSize(plane) {
    const [nx, ny, nz] = this.dims;
    return plane === "axial" ? [nx, ny] : plane === "coronal" ? [nx, nz] : [ny, nz];
  }

  planeSpacing(plane) {
    const [sx, sy, sz] = this.state.spacing;
    return plane === "axial" ? [sx, sy] : plane === "coronal" ? [sx, sz] : [sy, sz];
  }

  // Screen column/row -> voxel. Radiological: patient's right on screen left (i reversed).
  voxelOf(plane, c, r) {
    const [nx, ny, nz] = this.dims;
    const rad = this.radioIn.checked;
    const v = [...this.cross];
    if (plane === "axial") { v[0] = rad ? nx - 1 - c : c; v[1] = ny - 1 - r; }
    else if (plane === "coronal") { v[0] = rad ? nx - 1 - c : c; v[2] = nz - 1 - r; }
    else { v[1] = ny - 1 - c; v[2] = nz - 1 - r; } // sagittal: anterior on the left
    return v;
  }

  screenOf(plane, v) {
    const [nx, ny, nz] = this.dims;
    const rad = this.radioIn.checked;
    if (plane === "axial") return [rad ? nx - 1 - v[0] : v[0], ny - 1 - v[1]];
    if (plane === "coronal") return [rad ? nx - 1 - v[0] : v[0], nz - 1 - v[2]];
    return [ny - 1 - v[1], nz - 1 - v[2]];
  }

  orientationLabels(plane) {
    const rad = this.radioIn.checked;
    if (plane === "sagittal") return { left: "A", right: "P", top: "S", bottom: "I" };
    const lr = rad ? { left: "R", right: "L" } : { left: "L", right: "R" };
    return plane === "axial" ? { ...lr, top: "A", bottom: "P" } : { ...lr, top: "S", bottom: "I" };
  }

  // ---------------------------------------------------------------- controls
  applyPreset(name) {
    const p = PRESETS[name];
    if (name === "Custom") return;
    const [w, l] = p || this.autoWindow;
    this.widthIn.value = w;
    this.levelIn.value = l;
    this.timed(() => this.setWindow(w, l));
  }

  setWindow(width, level, render = true) {
    if (!(width > 0) || !isFinite(level)) return;
    const { scale, offset } = this.state.anatomy;
    const lo = level - width / 2;
    const k = 255 / width;
    for (let s = 0; s < 65536; s++) {
      const value = (s - 32768) * scale + offset;
      const g = (value - lo) * k;
      this.greyLut[s] = g <= 0 ? 0 : g >= 255 ? 255 : g;
    }
    if (render) this.renderAll();
  }

  setSlice(plane, index) {
    const axis = plane === "axial" ? 2 : plane === "coronal" ? 1 : 0;
    const v = [...this.cross];
    v[axis] = Math.max(0, Math.min(this.dims[axis] - 1, index));
    this.setCross(v);
  }

  step(plane, delta) {
    const axis = plane === "axial" ? 2 : plane === "coronal" ? 1 : 0;
    this.setSlice(plane, this.cross[axis] + delta);
  }

  setCross(v) {
    const changed = PLANES.filter((plane, n) => v[[2, 1, 0][n]] !== this.cross[[2, 1, 0][n]]);
    this.cross = v;
    for (const plane of PLANES) {
      if (changed.includes(plane)) this.renderView(this.views[plane]);
      else this.drawLines(this.views[plane]); // same image, moved crosshair
    }
    this.renderCompare();
    this.updateReadout();
  }

  onKey(e) {
    const steps = { ArrowUp: 1, ArrowRight: 1, PageUp: 5, ArrowDown: -1, ArrowLeft: -1, PageDown: -5 };
    if (e.key in steps) {
      e.preventDefault();
      this.timed(() => this.step(this.active, steps[e.key]));
    } else if (e.key === "a" || e.key === "c" || e.key === "s") {
      this.active = { a: "axial", c: "coronal", s: "sagittal" }[e.key];
      this.buildCompareViews();
      this.layout();
    }
  }

  timed(fn) {
    const t0 = performance.now();
    fn();
    window.__camviewer.stepTimes.push(performance.now() - t0);
    if (window.__camviewer.stepTimes.length > 5000) window.__camviewer.stepTimes.splice(0, 1000);
  }

  // ---------------------------------------------------------------- drawing
  layout() {
    if (!this.dims) return;
    // clientWidth includes the root's 8 px padding on each side; three views have two 8 px gaps.
    const width = (this.root.clientWidth || 900) - 16;
    const side = Math.max(160, Math.floor((width - 16) / 3) - 1);
    for (const plane of PLANES) this.sizeView(this.views[plane], side);
    const small = Math.max(120, Math.floor((width - 24) / Math.max(3, this.compareViews.length)) - 1);
    for (const view of this.compareViews) this.sizeView(view, Math.min(small, side));
    this.renderAll();
  }

  sizeView(view, side) {
    const dpr = window.devicePixelRatio || 1;
    view.canvas.width = Math.round(side * dpr);
    view.canvas.height = Math.round(side * dpr);
    view.canvas.style.width = `${side}px`;
    view.canvas.style.height = `${side}px`;
    view.lines.width = view.canvas.width;
    view.lines.height = view.canvas.height;
    view.lines.style.width = `${side}px`;
    view.lines.style.height = `${side}px`;
    view.box.style.width = `${side}px`;
    view.box.style.height = `${side}px`;
  }

  renderAll() {
    if (!this.vol) return;
    for (const plane of PLANES) this.renderView(this.views[plane]);
    this.renderCompare();
    this.updateReadout();
  }

  renderCompare() {
    for (const view of this.compareViews) {
      view.plane = this.active;
      this.renderView(view, this.compare[view.compareIndex]);
    }
  }

  // Compose one slice at voxel resolution into the view's offscreen canvas, then draw.
  renderView(view, overlayArr) {
    if (!this.vol) return;
    window.__camviewer.renders++;
    const plane = view.plane;
    const [w, h] = this.planeSize(plane);
    if (view.off.width !== w || view.off.height !== h) {
      view.off.width = w;
      view.off.height = h;
      view.img = view.offctx.createImageData(w, h);
    }
    const out = view.img.data;
    const [nx, ny, nz] = this.dims;
    const nxy = nx * ny;
    const vol = this.vol;
    const grey = this.greyLut;
    const cam = overlayArr !== undefined ? overlayArr : this.cam;
    const showCam = cam && this.overlayIn.checked;
    const lut = this.state.colourmaps[this.cmapSel.value];
    const alpha = parseFloat(this.opacityIn.value);
    const thr = Math.max(1, Math.round(parseFloat(this.thresholdIn.value) * 255));
    const rad = this.radioIn.checked;
    const [ci, cj, ck] = this.cross;
    let p = 0;
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        let idx;
        if (plane === "axial") idx = (rad ? nx - 1 - c : c) + nx * (ny - 1 - r) + nxy * ck;
        else if (plane === "coronal") idx = (rad ? nx - 1 - c : c) + nx * cj + nxy * (nz - 1 - r);
        else idx = ci + nx * (ny - 1 - c) + nxy * (nz - 1 - r);
        const g = grey[vol[idx] + 32768];
        if (showCam && cam[idx] >= thr) {
          const q = cam[idx] * 3;
          out[p] = g + (lut[q] - g) * alpha;
          out[p + 1] = g + (lut[q + 1] - g) * alpha;
          out[p + 2] = g + (lut[q + 2] - g) * alpha;
        } else {
          out[p] = g;
          out[p + 1] = g;
          out[p + 2] = g;
        }
        out[p + 3] = 255;
        p += 4;
      }
    }
    view.offctx.putImageData(view.img, 0, 0);
    this.drawView(view);
  }

  // Blit the composed slice with the physical aspect ratio, then the crosshair layer.
  drawView(view) {
    if (!this.vol || !view.off.width) return;
    const [w, h] = this.planeSize(view.plane);
    const [sw, sh] = this.planeSpacing(view.plane);
    const cw = view.canvas.width;
    const ch = view.canvas.height;
    const k = Math.min(cw / (w * sw), ch / (h * sh));
    const fit = { dw: w * sw * k, dh: h * sh * k };
    fit.dx = (cw - fit.dw) / 2;
    fit.dy = (ch - fit.dh) / 2;
    view.fit = fit;
    const ctx = view.ctx;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, cw, ch);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(view.off, fit.dx, fit.dy, fit.dw, fit.dh);
    this.drawLines(view);
  }

  // Crosshair, orientation letters, slider and title: cheap, done on every crosshair move.
  drawLines(view) {
    const fit = view.fit;
    if (!this.vol || !fit) return;
    const plane = view.plane;
    const [w, h] = this.planeSize(plane);
    const ctx = view.lctx;
    ctx.clearRect(0, 0, view.lines.width, view.lines.height);
    const [sc, sr] = this.screenOf(plane, this.cross);
    const x = fit.dx + ((sc + 0.5) / w) * fit.dw;
    const y = fit.dy + ((sr + 0.5) / h) * fit.dh;
    ctx.strokeStyle = "rgba(80, 200, 255, 0.75)";
    ctx.lineWidth = Math.max(1, window.devicePixelRatio || 1);
    ctx.beginPath();
    ctx.moveTo(x, fit.dy); ctx.lineTo(x, fit.dy + fit.dh);
    ctx.moveTo(fit.dx, y); ctx.lineTo(fit.dx + fit.dw, y);
    ctx.stroke();
    const labels = this.orientationLabels(plane);
    for (const side of Object.keys(labels)) view.labels[side].textContent = labels[side];
    const axis = plane === "axial" ? 2 : plane === "coronal" ? 1 : 0;
    if (view.slider) view.slider.value = String(this.cross[axis]);
    const where = `${plane} ${this.cross[axis] + 1}/${this.dims[axis]}`;
    view.title.textContent = view.compareIndex === undefined ? where
      : `${this.state.compare[view.compareIndex].title} · ${where}`;
    view.title.setAttribute("data-slice", String(this.cross[axis]));
  }

  updateReadout() {
    if (!this.vol) return;
    const [i, j, k] = this.cross;
    const [nx, ny] = this.dims;
    const idx = i + nx * (j + ny * k);
    const { scale, offset } = this.state.anatomy;
    const value = this.vol[idx] * scale + offset;
    const world = matVec(this.state.ras_affine, [i, j, k]);
    const orig = matVec(this.state.ras_to_file, [i, j, k]).map((x) => Math.round(x));
    let camText = "no map";
    if (this.cam) {
      const frac = this.cam[idx] / 255;
      camText = `${frac.toFixed(3)} of peak (raw ${(frac * this.state.raw_peak).toPrecision(3)})`;
    }
    this.readout.textContent =
      `world ${world.map((x) => x.toFixed(1)).join(", ")} mm (RAS) · voxel ${orig.join(", ")} (file) · ` +
      `intensity ${Number.isInteger(value) ? value : value.toPrecision(4)} · CAM ${camText}`;
  }

  drawColourbar() {
    if (!this.state) return;
    const lut = this.state.colourmaps[this.cmapSel.value];
    const ctx = this.colourbar.getContext("2d");
    const width = this.colourbar.width;
    const thr = parseFloat(this.thresholdIn.value);
    for (let x = 0; x < width; x++) {
      const q = Math.round((x / (width - 1)) * 255) * 3;
      const below = x / (width - 1) < thr;
      ctx.fillStyle = below ? "#333" : `rgb(${lut[q]},${lut[q + 1]},${lut[q + 2]})`;
      ctx.fillRect(x, 0, 1, this.colourbar.height);
    }
    const peak = this.state.raw_peak ? ` (raw ${Number(this.state.raw_peak).toPrecision(3)})` : "";
    this.colourbarLabels.textContent =
      `CAM 0 · threshold ${thr.toFixed(2)} · 1.0 = peak${peak} · ${this.state.overlay_label || ""}`;
  }
}

export default function (component) {
  const { data, parentElement, setStateValue, key } = component;
  let viewer = instances.get(key);
  if (!viewer) {
    viewer = new SliceViewer(parentElement);
    instances.set(key, viewer);
  } else if (!parentElement.contains(viewer.root)) {
    parentElement.appendChild(viewer.root); // a remount: reuse arrays, crosshair and controls
  }
  if (data) viewer.update(data, setStateValue).catch((err) => {
    viewer.readout.textContent = `Could not load the volume: ${err.message}`;
  });
  return () => {};
}
