// The viewer: anatomy + overlays in linked panes (1x3, 2x2 with a 3D pane, or one maximised), a compare
// grid with one pane per map, readout, colour bar. Every display control acts here, in the browser; nothing
// is sent to the server (no Streamlit rerun, no websocket traffic), crosshair and hover included.
//
// Rendering is synchronous for keyboard and wheel steps (one pane recomposed) and coalesced to one per
// animation frame for pointer drags. The state a test may read is on the root element as data-* attributes.

import { gridWalk, pixelOf, planeLayout, sliceWalk, voxelAt, voxelIndex, volumeGeometry, worldOf } from "./geometry.js";
import { composeSlice, greyTable } from "./compose.js";
import { Pane, el } from "./pane.js";
import { PRESETS, buildToolbar, setOptions } from "./toolbar.js";
import { autoWindow, looksLikeCt, sortedSample, valueRange } from "./intensity.js";
import { MapSlot, MaskLayer } from "./layers.js";
import { typedView } from "./store.js";
import { drawColourbar, legendText } from "./legend.js";
import { readoutText } from "./readout.js";
import { handleKey } from "./keys.js";

const GAP = 8;

export class Viewer {
  constructor(parent, store, assets) {
    this.store = store;
    this.assets = assets;
    this.id = Symbol("viewer");
    this.root = el("div", { class: "cv-root", tabindex: "0", "data-testid": "cv-root", "data-ready": "0" }, parent);
    this.controls = buildToolbar(this.root, (name, value) => this.onControl(name, value));
    this.progressEl = el("div", { class: "cv-progress", "data-testid": "cv-progress" }, this.root);
    this.grid = el("div", { class: "cv-grid" }, this.root);
    this.readoutEl = el("div", { class: "cv-readout", "data-testid": "cv-readout", text: "Loading the image…" }, this.root);
    const legend = el("div", { class: "cv-legend" }, this.root);
    this.barCanvas = el("canvas", { class: "cv-colourbar", width: "256", height: "12" }, legend);
    this.legendEl = el("div", { class: "cv-legend-text", "data-testid": "cv-legend" }, legend);
    this.compareEl = el("div", { class: "cv-compare" }, this.root);
    this.s = { layout: "1x3", maximised: null, active: "axial", radiological: true, overlay: true, opacity: 0.5, threshold: 0.2,
      colourmap: "inferno", mapIndex: 0, mask: true, maskMode: "outline", crosshair: true, width: 1, level: 0, preset: "MR auto" };
    this.panes = {};
    this.comparePanes = [];
    this.views = {};
    this.slots = [];
    this.mask = new MaskLayer(store, () => this.renderAll());
    this.userMovedCrosshair = false;
    for (const type of ["keydown", "keyup", "keypress"]) {
      // Streamlit binds page hotkeys (c: clear caches, r: rerun); keys pressed in the viewer stop here.
      this.root.addEventListener(type, (e) => {
        e.stopPropagation();
        if (type === "keydown") handleKey(this, e);
      });
    }
    new ResizeObserver(() => this.layoutPanes()).observe(this.root);
    this.colourmapsReady = fetch(`${assets}/colourmaps.json`).then((r) => r.json()).then((tables) => {
      this.colourmaps = Object.fromEntries(Object.entries(tables).map(([name, t]) => [name, Uint8Array.from(t)]));
      setOptions(this.controls.colourmap, Object.keys(tables).map((n) => [n, n]));
      this.controls.colourmap.value = this.s.colourmap;
    });
  }

  // ------------------------------------------------------------------ payload from Python
  update(data) {
    const anatomyChanged = !this.data || this.data.anatomy.url !== data.anatomy.url;
    this.data = data;
    if (anatomyChanged) this.loadAnatomy(data);
    this.setMaps(data.maps || []);
    this.mask.request(data.mask || null);
    this.controls.maskGroup.hidden = !data.mask;
  }

  async loadAnatomy(data) {
    const desc = data.anatomy;
    const opts = data.options || {};
    this.root.setAttribute("data-ready", "0");
    this.root.setAttribute("data-anatomy", desc.url);
    Object.assign(this.s, {
      radiological: opts.radiological ?? true, opacity: opts.opacity ?? 0.5, threshold: opts.threshold ?? 0.2,
      colourmap: opts.colourmap || "inferno", layout: opts.layout || "1x3", maximised: null,
    });
    if (opts.cache_mb) this.store.budget = opts.cache_mb * 1024 * 1024;
    this.geom = volumeGeometry(desc.shape, desc.affine);
    this.anatomy = { desc, data: null, scale: desc.scale ?? 1, inter: desc.inter ?? 0 };
    this.s.active = this.geom.planes[0];
    this.cross = this.geom.dims.map((n) => n >> 1);
    this.userMovedCrosshair = false;
    this.windowByUser = false;
    this.buildPanes();
    this.syncControls();
    // Anatomy first, and progressively: what has arrived is drawn a few times a second while the rest loads.
    let lastPartial = 0;
    let provisional = false; // a window from the part loaded so far, replaced once the whole image is here
    const loading = this.store
      .get(desc, (fraction, bytes) => {
        if (this.data.anatomy !== desc) return;
        this.readoutEl.textContent = `Loading the image… ${Math.round(fraction * 100)} %`;
        if (performance.now() - lastPartial < 250) return;
        lastPartial = performance.now();
        const partial = typedView(desc, bytes);
        if (!this.windowByUser && !provisional) provisional = this.setInitialWindow(partial.subarray(0, Math.floor(partial.length * fraction)));
        this.anatomy.data = partial;
        this.renderAll();
      })
      .catch((err) => {
        this.readoutEl.textContent = `The image could not be loaded: ${err.message}`;
        return null;
      });
    const [full] = await Promise.all([loading, this.colourmapsReady]);
    if (!full || this.data.anatomy !== desc) return;
    performance.mark("camviewer:anatomy-decoded", { detail: desc.url });
    if (!this.windowByUser) this.setInitialWindow(full);
    this.anatomy.data = full;
    this.renderAll();
    this.store.retain(this.id, this.urlsInUse());
    this.root.setAttribute("data-ready", "1");
    performance.mark("camviewer:anatomy-shown", { detail: desc.url });
  }

  /** The first window: the server's if given, else CT soft tissue for CT, else MR auto (percentiles). */
  setInitialWindow(data) {
    if (!data.length) return false;
    const { scale, inter } = this.anatomy;
    const sorted = sortedSample(data, scale, inter);
    this.range = valueRange(sorted);
    this.auto = autoWindow(sorted);
    const given = this.data.window;
    if (given && given.width > 0) this.setWindow(given.width, given.level, given.preset || "Custom", false);
    else if (looksLikeCt(sorted)) this.setWindow(...PRESETS["CT soft tissue"], "CT soft tissue", false);
    else this.setWindow(this.auto.width, this.auto.level, "MR auto", false);
    return true;
  }

  setMaps(entries) {
    while (this.slots.length > entries.length) this.slots.pop().dispose();
    while (this.slots.length < entries.length) this.slots.push(new MapSlot(this.store, (slot) => this.onSlot(slot)));
    entries.forEach((entry, n) => this.slots[n].request(entry));
    setOptions(this.controls.map, entries.map((entry, n) => [n, entry.title || `map ${n + 1}`]));
    this.controls.mapGroup.hidden = entries.length < 2;
    this.s.mapIndex = Math.min(this.s.mapIndex, Math.max(0, entries.length - 1));
    this.buildComparePanes();
    this.showProgress();
  }

  onSlot(slot) {
    this.showProgress();
    const n = this.slots.indexOf(slot);
    if (n === this.s.mapIndex && slot.shown && !this.userMovedCrosshair && this.geom) this.crossToPeak(slot.shown);
    if (this.anatomy && this.anatomy.data) this.renderAll();
    this.store.retain(this.id, this.urlsInUse());
  }

  showProgress() {
    const lines = this.slots.map((slot) => slot.progress()).filter(Boolean);
    this.progressEl.textContent = lines.join(" · ");
    this.root.setAttribute("data-progress", lines.join(" · "));
    const shown = this.slots[this.s.mapIndex]?.shown;
    this.root.setAttribute("data-map-url", shown ? shown.desc.url : "");
  }

  urlsInUse() {
    return [this.anatomy?.desc.url, ...this.slots.map((s) => s.shown?.desc.url), this.mask.shown?.desc.url];
  }

  /** Put the crosshair on the map's maximum (where the model looked most), once, until the user moves it. */
  crossToPeak(map) {
    let best = 0;
    for (let p = 1; p < map.data.length; p++) if (map.data[p] > map.data[best]) best = p;
    const [n0, n1] = map.dims;
    const m = [best % n0, Math.floor(best / n0) % n1, Math.floor(best / (n0 * n1))];
    const world = [0, 1, 2].map((r) => map.desc.affine[r][0] * m[0] + map.desc.affine[r][1] * m[1] + map.desc.affine[r][2] * m[2] + map.desc.affine[r][3]);
    const voxel = [0, 1, 2].map((r) => this.geom.inverse[r][0] * world[0] + this.geom.inverse[r][1] * world[1] + this.geom.inverse[r][2] * world[2] + this.geom.inverse[r][3]);
    this.cross = voxelIndex(this.geom, voxel);
  }

  // ------------------------------------------------------------------ panes and layout
  buildPanes() {
    this.grid.innerHTML = "";
    this.panes = {};
    this.views = {};
    for (const plane of this.geom.planes) {
      this.panes[plane] = new Pane(this.grid, plane, this.paneHandlers(null));
      this.views[plane] = { zoom: 1, panX: 0, panY: 0 };
    }
    this.view3d = el("div", { class: "cv-pane cv-pane-3d", "data-plane": "3d" }, this.grid);
    this.applyLayouts();
    this.buildComparePanes();
    this.layoutPanes();
  }

  buildComparePanes() {
    this.compareEl.innerHTML = "";
    this.comparePanes = [];
    if (!this.geom || this.slots.length < 2) return;
    this.slots.forEach((slot, n) => {
      const pane = new Pane(this.compareEl, this.s.active, this.paneHandlers(n), { title: slot.title, slider: false });
      pane.mapIndex = n;
      pane.root.setAttribute("data-testid", `cv-compare-${n}`);
      this.comparePanes.push(pane);
    });
    this.applyLayouts();
    this.layoutPanes();
  }

  /** Plane layouts (axes, flips, labels) for the current radiological setting, from geometry.js only. */
  applyLayouts() {
    if (!this.geom) return;
    for (const pane of this.allPanes()) {
      pane.setLayout(planeLayout(this.geom, pane.plane, this.s.radiological));
      pane.setView(this.views[pane.plane]);
    }
    this.root.setAttribute("data-radiological", this.s.radiological ? "1" : "0");
  }

  allPanes() {
    return [...Object.values(this.panes), ...this.comparePanes];
  }

  layoutPanes() {
    if (!this.geom) return;
    const width = Math.max(240, this.root.clientWidth - 2 * GAP);
    const planes = this.geom.planes;
    const tall = Math.max(260, window.innerHeight - 220);
    const max = planes.length === 1 ? planes[0] : this.s.maximised;
    this.grid.setAttribute("data-layout", max ? "max" : this.s.layout);
    this.root.setAttribute("data-layout", max ? `max:${max}` : this.s.layout);
    const show3d = !max ? this.s.layout === "2x2" : max === "3d";
    for (const plane of planes) this.panes[plane].root.hidden = Boolean(max) && max !== plane;
    this.view3d.hidden = !show3d;
    // Panes share the page width; their height is capped so that the grid fits the window.
    let side;
    if (max) side = [width, Math.min(width, tall)];
    else if (this.s.layout === "2x2") side = [Math.floor((width - GAP) / 2), Math.min(Math.floor((width - GAP) / 2), Math.floor((tall - GAP) / 2))];
    else side = [Math.floor((width - 2 * GAP) / 3), Math.min(Math.floor((width - 2 * GAP) / 3), tall)];
    for (const plane of planes) this.panes[plane].setStageSize(...side);
    this.size3d = side;
    const n = this.comparePanes.length;
    const compareSide = Math.min(side[1], Math.floor((width - (Math.min(n, 4) - 1) * GAP) / Math.max(1, Math.min(n, 4))));
    for (const pane of this.comparePanes) pane.setStageSize(compareSide, compareSide);
    if (show3d) this.ensure3d();
    else if (this.render3d) this.render3d.pause();
    this.renderAll();
  }

  async ensure3d() {
    if (!this.render3dLoading) {
      // Built only when its pane is shown: nothing is computed for a 3D view nobody opened.
      this.render3dLoading = import("./render3d.js").then((m) => new m.Render3D(this.view3d, this));
    }
    this.render3d = await this.render3dLoading;
    this.render3d.resize(...this.size3d);
    this.render3d.update();
  }

  // ------------------------------------------------------------------ drawing
  mapLayer(index) {
    const slot = this.slots[index];
    if (!slot || !slot.shown || !this.s.overlay || !this.colourmaps) return null;
    return { map: slot.shown, lut: this.colourmaps[this.s.colourmap], alpha: this.s.opacity, threshold: Math.max(1, this.s.threshold * 255) };
  }

  renderPane(pane) {
    if (!this.anatomy?.data || !pane.layout) return;
    const { scale, inter } = this.anatomy;
    const lo = this.s.level - this.s.width / 2;
    const layout = pane.layout;
    const slice = this.cross[layout.sliceAxis];
    const walk = sliceWalk(this.geom, layout, slice);
    const gain = (scale * 255) / this.s.width;
    const bias = ((inter - lo) * 255) / this.s.width;
    const data = this.anatomy.data;
    const key = `${gain}|${bias}`;
    if (this.greyFor !== data || this.greyKey !== key) {
      this.grey = greyTable(data, gain, bias); // one table per window, not per pixel
      this.greyFor = data;
      this.greyKey = key;
    }
    const anatomy = { data, walk, gain, bias, lut: this.grey?.lut, lutOffset: this.grey?.offset };
    const layer = this.mapLayer(pane.mapIndex ?? this.s.mapIndex);
    const map = layer && { ...layer, data: layer.map.data, dims: layer.map.dims, grid: gridWalk(this.geom, walk, layer.map.inverse) };
    const m = this.mask.shown;
    const mask = m && this.s.mask ? { ...m, grid: gridWalk(this.geom, walk, m.inverse), alpha: 0.45, outline: this.s.maskMode === "outline" } : null;
    composeSlice(pane.pixels, layout.width, layout.height, anatomy, map, mask, pane.labels);
    pane.commit();
    pane.renderedSlice = slice;
    this.placeCrosshair(pane);
  }

  placeCrosshair(pane) {
    const [x, y] = pixelOf(this.geom, pane.layout, this.cross);
    pane.setCrosshair(x, y);
    pane.showCrosshair(this.s.crosshair);
    const axis = pane.layout.sliceAxis;
    pane.setSliceText(this.cross[axis], this.geom.dims[axis]);
  }

  renderAll() {
    for (const pane of this.allPanes()) this.renderPane(pane);
    this.drawLegend();
    this.showReadout();
    if (this.render3d && !this.view3d.hidden) this.render3d.update();
  }

  /** Move the crosshair; re-compose only the panes whose slice changed. */
  setCross(voxel, byUser = true) {
    const next = voxelIndex(this.geom, voxel);
    this.userMovedCrosshair ||= byUser;
    this.cross = next;
    for (const pane of this.allPanes()) {
      if (!pane.layout) continue;
      if (pane.renderedSlice !== next[pane.layout.sliceAxis]) this.renderPane(pane);
      else this.placeCrosshair(pane);
    }
    this.showReadout();
    if (this.render3d && !this.view3d.hidden) this.render3d.crosshairMoved();
  }

  step(plane, delta) {
    const axis = this.panes[plane].layout.sliceAxis;
    const v = [...this.cross];
    v[axis] += delta;
    this.setCross(v);
  }

  /** Coalesce pointer-driven work to one run per animation frame. */
  later(name, fn) {
    this.pendingWork ||= new Map();
    const first = this.pendingWork.size === 0;
    this.pendingWork.set(name, fn);
    if (first) {
      requestAnimationFrame(() => {
        const work = [...this.pendingWork.values()];
        this.pendingWork.clear();
        for (const f of work) f();
      });
    }
  }

  drawLegend() {
    if (!this.colourmaps) return;
    const ctx = this.barCanvas.getContext("2d");
    drawColourbar(ctx, this.colourmaps[this.s.colourmap], this.s.threshold, 0, 0, 256, 12);
    const shown = this.slots[this.s.mapIndex]?.shown;
    this.legendEl.textContent = shown ? legendText(shown.title, this.s.threshold, shown.peak) : "no map yet";
  }

  showReadout(hover = null) {
    if (!this.anatomy?.data) return;
    const slot = this.slots[hover?.mapIndex ?? this.s.mapIndex];
    this.readoutEl.textContent = readoutText(this, hover ? hover.voxel : this.cross, slot?.shown, hover ? "cursor" : "crosshair");
  }

  // ------------------------------------------------------------------ controls
  setWindow(width, level, preset = "Custom", render = true) {
    if (!(width > 0) || !Number.isFinite(level)) return;
    Object.assign(this.s, { width, level, preset });
    this.controls.width.value = String(+width.toPrecision(6));
    this.controls.level.value = String(+level.toPrecision(6));
    this.controls.preset.value = preset;
    if (render) this.later("render", () => this.renderAll());
  }

  applyPreset(name) {
    if (name === "Custom") return;
    const wl = PRESETS[name] || (this.auto && [this.auto.width, this.auto.level]);
    if (wl) this.setWindow(wl[0], wl[1], name);
  }

  syncControls() {
    const c = this.controls;
    c.layout.value = this.s.layout;
    c.overlay.checked = this.s.overlay;
    c.opacity.value = String(this.s.opacity);
    c.threshold.value = String(this.s.threshold);
    c.colourmap.value = this.s.colourmap;
    c.radiological.checked = this.s.radiological;
    c.radiologicalGroup.hidden = this.geom?.is2d;
    c.layout.parentElement.hidden = this.geom?.is2d;
    c.mask.checked = this.s.mask;
    c.maskMode.value = this.s.maskMode;
    c.crosshair.checked = this.s.crosshair;
  }

  onControl(name, value) {
    const s = this.s;
    if (name === "preset" || name === "window") this.windowByUser = true;
    if (name === "preset") return this.applyPreset(value);
    if (name === "window") return this.setWindow(value[0], value[1], "Custom");
    if (name === "export") return import("./export.js").then((m) => m.exportPng(this));
    if (name === "reset") {
      for (const plane of Object.keys(this.views)) this.views[plane] = { zoom: 1, panX: 0, panY: 0 };
      this.applyLayouts();
      return this.renderAll();
    }
    if (name === "layout") {
      s.layout = value;
      s.maximised = null;
      return this.layoutPanes();
    }
    if (name === "map") {
      s.mapIndex = value;
      this.showProgress();
      if (!this.userMovedCrosshair && this.slots[value]?.shown) this.crossToPeak(this.slots[value].shown);
    }
    if (name === "radiological") {
      s.radiological = value;
      this.applyLayouts();
    }
    if (!["map", "radiological"].includes(name)) s[name] = value;
    this.syncControls();
    this.renderAll();
  }

  /** Handlers for a main pane (mapIndex null) or a compare pane (its map). */
  paneHandlers(mapIndex) {
    const planeOf = (pane) => (mapIndex === null ? pane.plane : this.s.active);
    return {
      focus: (pane) => {
        this.setActive(planeOf(pane));
        this.root.focus({ preventScroll: true });
      },
      pick: (pane, x, y) => this.later("pick", () => this.setCross(voxelAt(this.geom, pane.layout, this.cross[pane.layout.sliceAxis], x, y))),
      hover: (pane, x, y) =>
        this.later("hover", () => {
          const inside = x !== null && x >= 0 && y >= 0 && x < pane.layout.width && y < pane.layout.height;
          this.showReadout(inside ? { voxel: voxelAt(this.geom, pane.layout, this.cross[pane.layout.sliceAxis], x, y), mapIndex: pane.mapIndex } : null);
        }),
      scroll: (pane, delta) => this.step(planeOf(pane), delta),
      slice: (pane, index) => {
        const v = [...this.cross];
        v[pane.layout.sliceAxis] = index;
        this.setCross(v);
      },
      window: (dx, dy, first) => {
        if (first) this.dragStart = { width: this.s.width, level: this.s.level };
        this.windowByUser = true;
        const perPx = this.range ? Math.max(1e-6, (this.range.max - this.range.min) / 600) : 1;
        const start = this.dragStart;
        this.later("window", () => this.setWindow(Math.max(perPx, start.width + dx * perPx), start.level + dy * perPx, "Custom", false));
        this.later("render", () => this.renderAll());
      },
      zoom: (pane, factor, x, y) => this.zoomAt(planeOf(pane), factor, pane, x, y),
      pan: (pane, dx, dy) => {
        const view = this.views[planeOf(pane)];
        view.panX += dx;
        view.panY += dy;
        this.applyView(planeOf(pane));
      },
      maximise: (pane) => this.toggleMaximise(planeOf(pane)),
    };
  }

  zoomAt(plane, factor, pane = this.panes[plane], x = pane.stageW / 2, y = pane.stageH / 2) {
    const view = this.views[plane];
    const zoom = Math.min(64, Math.max(0.25, view.zoom * factor));
    const [px, py] = pane.toPixel(x, y);
    view.zoom = zoom;
    pane.setView(view);
    const [nx, ny] = pane.toStage(px, py); // keep the point under the cursor fixed
    view.panX += x - nx;
    view.panY += y - ny;
    this.applyView(plane);
  }

  applyView(plane) {
    for (const pane of this.allPanes()) if (pane.plane === plane) pane.setView(this.views[plane]);
    const pane = this.panes[plane];
    pane.root.setAttribute("data-zoom", String(+this.views[plane].zoom.toFixed(4)));
  }

  setActive(plane) {
    if (!this.panes[plane] || plane === this.s.active) return;
    this.s.active = plane;
    this.root.setAttribute("data-active", plane);
    this.buildComparePanes();
  }

  toggleMaximise(plane) {
    if (this.geom.is2d) return;
    this.s.maximised = this.s.maximised === plane ? null : plane;
    this.layoutPanes();
  }
}
