// The viewer: anatomy + overlays in linked panes (1x3, 2x2 with a 3D pane, or one maximised), a compare
// grid with one pane per map, readout, colour bar. Every display control acts here, in the browser; nothing
// is sent to the server (no Streamlit rerun, no websocket traffic), crosshair and hover included.
//
// Rendering is synchronous for keyboard and wheel steps (one pane recomposed) and coalesced to one per
// animation frame for pointer drags. The state a test may read is on the root element as data-* attributes:
// data-map-key / data-map-title name the map drawn in the main panes (set after it is drawn, never before, and
// at the same moment as the visible title and facts above and below it, which belong to that drawn map only),
// data-pending-key the map asked for and not drawn yet (empty when none), data-cross the crosshair voxel
// after the panes were drawn there, data-mask-url the mask drawn, data-ready "1" once the whole image is drawn. Tests wait for these.

import { gridWalk, pixelOf, sliceWalk, voxelIndex, volumeGeometry } from "./geometry.js";
import { acrossAxis0Strides, composeSlice, greyTable, reorderAcrossAxis0 } from "./compose.js";
import { el } from "./pane.js";
import { AUTO, CT_PRESETS, PRESETS, buildToolbar, setOptions } from "./toolbar.js";
import { autoWindow, looksLikeCt, sortedSample, valueRange } from "./intensity.js";
import { MapSlot, MaskLayer } from "./layers.js";
import { typedView } from "./store.js";
import { drawColourbar, legendText } from "./legend.js";
import { readoutText } from "./readout.js";
import { handleKey } from "./keys.js";
import { layoutMethods } from "./layout.js";
import { controlMethods } from "./controls.js";
import { measureMethods } from "./measure.js";
import { scheduleWrite } from "./urlstate.js";

export class Viewer {
  constructor(parent, store, assets) {
    this.store = store;
    this.assets = assets;
    this.id = Symbol("viewer");
    this.root = el("div", { class: "cv-root", tabindex: "0", "data-testid": "cv-root", "data-ready": "0" }, parent);
    this.controls = buildToolbar(this.root, (name, value) => this.onControl(name, value));
    const head = el("div", { class: "cv-head" }, this.root);
    // The title of the map on the panes, and below it what is being computed: one never stands for the other.
    this.titleEl = el("div", { class: "cv-title", "data-testid": "cv-title", text: "" }, head);
    this.progressEl = el("div", { class: "cv-progress", "data-testid": "cv-progress" }, head);
    this.grid = el("div", { class: "cv-grid" }, this.root);
    this.compareEl = el("div", { class: "cv-compare", "data-testid": "cv-compare" }, this.root);
    this.compareEl.hidden = true;
    this.readoutEl = el("div", { class: "cv-readout", "data-testid": "cv-readout", text: "Loading the image…" }, this.root);
    const legend = el("div", { class: "cv-legend" }, this.root);
    this.barCanvas = el("canvas", { class: "cv-colourbar", width: "256", height: "12" }, legend);
    this.legendEl = el("div", { class: "cv-legend-text", "data-testid": "cv-legend" }, legend);
    this.factsEl = el("ul", { class: "cv-facts", "data-testid": "cv-facts" }, this.root);
    this.s = { layout: "1x3", maximised: null, active: "axial", radiological: true, overlay: true, opacity: 0.5, threshold: 0.2,
      colourmap: "inferno", mapIndex: 0, mask: true, maskMode: "outline", crosshair: true, width: 1, level: 0, preset: AUTO };
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
    if (!this.slots.length && !(data.maps || []).length) this.drawnShown = undefined; // the message may have changed
    this.setMaps(data.maps || [], data.options?.compare_plane);
    if (!(data.maps || []).length && this.anatomy?.data) this.renderAll(); // no slot will call back: clear now
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
    // A shared link's view (crosshair, window, opacity), validated by the server: the first view of this image.
    const view = opts.view || {};
    if (Number.isFinite(view.opacity)) this.s.opacity = Math.min(1, Math.max(0, view.opacity));
    this.geom = volumeGeometry(desc.shape, desc.affine);
    this.anatomy = { desc, data: null, scale: desc.scale ?? 1, inter: desc.inter ?? 0 };
    this.s.active = this.geom.planes[0];
    this.cross = this.geom.dims.map((n) => n >> 1);
    this.userMovedCrosshair = false;
    if (Array.isArray(view.cross) && view.cross.length === 3) {
      this.cross = voxelIndex(this.geom, view.cross);
      this.userMovedCrosshair = true; // the link's slice wins over the map's peak
    }
    this.measurement = null;
    this.windowByUser = false;
    this.buildPanes();
    this.syncControls();
    // Anatomy first, and progressively: what has arrived is drawn a few times a second while the rest loads.
    let lastPartial = 0;
    let provisional = false; // a window from the part loaded so far, replaced once the whole image is here
    const loading = this.store
      .get(desc, (fraction, bytes) => {
        if (this.data.anatomy.url !== desc.url) return;
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
    if (!full || this.data.anatomy.url !== desc.url) return;
    performance.mark("camviewer:anatomy-decoded", { detail: desc.url });
    if (!this.windowByUser) this.setInitialWindow(full);
    this.anatomy.data = full;
    this.renderAll();
    this.store.retain(this.id, this.urlsInUse());
    this.root.setAttribute("data-ready", "1");
    performance.mark("camviewer:anatomy-shown", { detail: desc.url });
    this.reorderInBackground(full);
  }

  /**
   * For volumes too big for the CPU caches, a copy ordered (j, k, i) so that slices across i (usually sagittal)
   * are read contiguously: built in small chunks after the image is shown, used once complete.
   */
  reorderInBackground(data) {
    const [n0, n1, n2] = this.geom.dims;
    if (this.geom.is2d || data.length < 8_000_000 || n0 < 2) return;
    const copy = new data.constructor(data.length);
    let i = 0;
    const chunk = () => {
      if (this.anatomy.data !== data) return; // another image meanwhile: drop the copy
      i = reorderAcrossAxis0(data, copy, this.geom.dims, i, Math.min(n0, i + 8));
      if (i < n0) setTimeout(chunk, 0);
      else this.anatomy.across = { data: copy, geom: { ...this.geom, strides: acrossAxis0Strides(this.geom.dims) } };
    };
    setTimeout(chunk, 0);
  }

  /** The first window: a shared link's, else the server's if given, else CT soft tissue for CT, else auto. */
  setInitialWindow(data) {
    if (!data.length) return false;
    const { scale, inter } = this.anatomy;
    const sorted = sortedSample(data, scale, inter);
    this.range = valueRange(sorted);
    this.auto = autoWindow(sorted);
    this.isCt = looksLikeCt(sorted);
    setOptions(this.controls.preset, [...Object.keys(PRESETS), "Custom"].filter((n) => this.presetAllowed(n)).map((n) => [n, n]));
    const given = this.data.options?.view?.window ? { width: this.data.options.view.window[0], level: this.data.options.view.window[1] } : this.data.window;
    if (given && given.width > 0) this.setWindow(given.width, given.level, given.preset || "Custom", false);
    else if (this.isCt) this.setWindow(...PRESETS["CT soft tissue"], "CT soft tissue", false);
    else this.setWindow(this.auto.width, this.auto.level, AUTO, false);
    return true;
  }

  /** Hounsfield presets are offered for 3D images and for 2D images that are CT; "auto" always. */
  presetAllowed(name) {
    return !CT_PRESETS.includes(name) || !this.geom?.is2d || Boolean(this.isCt);
  }

  /** The maps: the first overlaid on the main panes; with two or more, the compare layout opens on them. */
  setMaps(entries, comparePlane) {
    const before = this.slots.length;
    while (this.slots.length > entries.length) this.slots.pop().dispose();
    while (this.slots.length < entries.length) this.slots.push(new MapSlot(this.store, (slot) => this.onSlot(slot)));
    entries.forEach((entry, n) => this.slots[n].request(entry));
    setOptions(this.controls.map, entries.map((entry, n) => [n, entry.title || `map ${n + 1}`]));
    this.controls.mapGroup.hidden = entries.length < 2;
    this.s.mapIndex = Math.min(this.s.mapIndex, Math.max(0, entries.length - 1));
    if (entries.length >= 2 && before < 2 && this.s.layout !== "compare") {
      this.layoutBeforeCompare = this.s.layout;
      this.s.layout = "compare";
      this.s.maximised = null;
    } else if (entries.length < 2 && this.s.layout === "compare") this.s.layout = this.layoutBeforeCompare || "1x3";
    if (comparePlane && this.panes[comparePlane] && entries.length >= 2 && before < 2) this.s.active = comparePlane;
    this.syncControls();
    this.buildComparePanes();
    this.showProgress();
  }

  onSlot(slot) {
    this.showProgress();
    const n = this.slots.indexOf(slot);
    if (n === this.s.mapIndex && slot.shown && !this.userMovedCrosshair && this.geom) this.crossToPeak(slot.shown);
    if (this.anatomy && this.anatomy.data) this.renderAll();
    this.store.retain(this.id, this.urlsInUse());
    if (slot.shown && slot.markedFor !== slot.shown.desc.url) {
      slot.markedFor = slot.shown.desc.url;
      performance.mark("camviewer:map-shown", { detail: slot.shown.desc.url });
    }
  }

  showProgress() {
    const lines = this.slots.map((slot) => slot.progress()).filter(Boolean);
    this.progressEl.textContent = lines.join(" · ");
    this.root.setAttribute("data-progress", lines.join(" · "));
    this.root.setAttribute("data-pending-key", this.slots[this.s.mapIndex]?.pendingKey() ?? "");
  }

  /** After the main panes were drawn: which map, if any, is on them now; its title and facts with it. */
  markDrawn() {
    const drawn = this.anatomy?.data ? this.slots[this.s.mapIndex]?.shown : null;
    if (this.drawnShown !== drawn) {
      this.drawnShown = drawn;
      this.titleEl.textContent = drawn ? drawn.title : this.slots.length ? "" : this.data?.message || "no map for this image yet";
      this.factsEl.innerHTML = "";
      for (const fact of drawn ? drawn.facts : []) el("li", { text: fact }, this.factsEl);
      for (const warning of drawn ? drawn.warnings : []) el("li", { class: "cv-warn", text: warning }, this.factsEl);
    }
    this.root.setAttribute("data-map-key", drawn ? drawn.key : "");
    this.root.setAttribute("data-map-title", drawn ? drawn.title : "");
    this.root.setAttribute("data-map-url", drawn ? drawn.desc.url : "");
    this.root.setAttribute("data-map-peak", drawn ? String(drawn.peak) : "");
    this.root.setAttribute("data-pending-key", this.slots[this.s.mapIndex]?.pendingKey() ?? "");
    this.root.setAttribute("data-cross", this.cross ? this.cross.join(",") : "");
    this.root.setAttribute("data-mask-url", this.anatomy?.data && this.mask.shown ? this.mask.shown.desc.url : "");
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
    // Slices across the fastest voxel axis read memory with large strides; big volumes get a reordered copy.
    const source = layout.sliceAxis === 0 && this.anatomy.across ? this.anatomy.across : this.anatomy;
    const walk = sliceWalk(source.geom || this.geom, layout, slice);
    const gain = (scale * 255) / this.s.width;
    const bias = ((inter - lo) * 255) / this.s.width;
    const data = source.data;
    const key = `${data.constructor.name}|${gain}|${bias}`;
    if (this.greyKey !== key) {
      this.grey = greyTable(data, gain, bias); // one table per window, not per pixel
      this.greyKey = key;
    }
    const anatomy = { data, walk, gain, bias, lut: this.grey?.lut, lutOffset: this.grey?.offset };
    const layer = this.mapLayer(pane.mapIndex ?? this.s.mapIndex);
    if (pane.mapIndex !== undefined) {
      // A compare pane is titled by the map it draws, as the main title is; a pending one says so.
      const slot = this.slots[pane.mapIndex];
      const model = slot?.shown?.model ? ` — ${slot.shown.model}` : "";
      pane.titleEl.textContent = slot?.shown ? `${slot.shown.title}${model}` : `computing ${slot?.title ?? ""}…`;
      pane.root.setAttribute("data-map-key", slot?.shown ? slot.shown.key : "");
    }
    const map = layer && { ...layer, data: layer.map.data, dims: layer.map.dims, grid: gridWalk(this.geom, walk, layer.map.inverse) };
    const m = this.mask.shown;
    const mask = m && this.s.mask ? { ...m, grid: gridWalk(this.geom, walk, m.inverse), alpha: 0.45, outline: this.s.maskMode === "outline" } : null;
    composeSlice(pane.pixels, layout.width, layout.height, anatomy, map, mask, pane.labels);
    pane.commit();
    pane.renderedSlice = slice;
    this.placeCrosshair(pane);
    if (this.measurement) this.showMeasure();
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
    this.markDrawn();
    scheduleWrite(this);
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
    this.root.setAttribute("data-cross", this.cross.join(","));
    scheduleWrite(this);
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

}

Object.assign(Viewer.prototype, layoutMethods, controlMethods, measureMethods);
