// What the user does: toolbar controls, pane gestures (pick, hover, scroll, window/level drag, zoom, pan,
// maximise) and the window. All of it acts in the browser only. Methods mixed into Viewer.

import { voxelAt } from "./geometry.js";
import { PRESETS } from "./toolbar.js";

export const controlMethods = {
  setWindow(width, level, preset = "Custom", render = true) {
    if (!(width > 0) || !Number.isFinite(level)) return;
    Object.assign(this.s, { width, level, preset });
    this.controls.width.value = String(+width.toPrecision(6));
    this.controls.level.value = String(+level.toPrecision(6));
    this.controls.preset.value = preset;
    if (render) this.later("render", () => this.renderAll());
  },

  applyPreset(name) {
    if (name === "Custom") return;
    const wl = PRESETS[name] || (this.auto && [this.auto.width, this.auto.level]);
    if (wl) this.setWindow(wl[0], wl[1], name);
  },

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
    c.layout.querySelector('option[value="compare"]').hidden = this.slots.length < 2;
    c.planeGroup.hidden = this.s.layout !== "compare" || this.geom?.is2d;
    c.plane.value = this.s.active;
    c.mask.checked = this.s.mask;
    c.maskMode.value = this.s.maskMode;
    c.crosshair.checked = this.s.crosshair;
  },

  onControl(name, value) {
    const s = this.s;
    if (name === "preset" || name === "window") this.windowByUser = true;
    if (name === "preset") return this.applyPreset(value);
    if (name === "window") return this.setWindow(value[0], value[1], "Custom");
    if (name === "export") return import("./export.js").then((m) => m.exportPng(this));
    if (name === "measure") return this.toggleMeasure();
    if (name === "help") {
      this.controls.helpPanel.hidden = !value;
      this.root.setAttribute("data-help", value ? "1" : "0");
      return;
    }
    if (name === "plane") {
      this.setActive(value);
      return this.layoutPanes();
    }
    if (name === "reset") {
      for (const plane of Object.keys(this.views)) this.views[plane] = { zoom: 1, panX: 0, panY: 0 };
      this.applyLayouts();
      return this.renderAll();
    }
    if (name === "layout") {
      s.layout = value;
      s.maximised = null;
      this.syncControls();
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
  },

  /** Handlers for a main pane (mapIndex null) or a compare pane (its map). */
  paneHandlers(mapIndex) {
    const planeOf = (pane) => (mapIndex === null ? pane.plane : this.s.active);
    return {
      focus: (pane) => {
        this.setActive(planeOf(pane));
        this.root.focus({ preventScroll: true });
      },
      pick: (pane, x, y, first = false) => {
        if (this.measuring) {
          if (first && mapIndex === null) this.measurePick(pane, x, y);
          return;
        }
        this.later("pick", () => this.setCross(voxelAt(this.geom, pane.layout, this.cross[pane.layout.sliceAxis], x, y)));
      },
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
  },

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
  },

  applyView(plane) {
    for (const pane of this.allPanes()) if (pane.plane === plane) pane.setView(this.views[plane]);
    const pane = this.panes[plane];
    pane.root.setAttribute("data-zoom", String(+this.views[plane].zoom.toFixed(4)));
  },

  setActive(plane) {
    if (!this.panes[plane] || plane === this.s.active) return;
    this.s.active = plane;
    this.root.setAttribute("data-active", plane);
    this.controls.plane.value = plane;
    this.buildComparePanes();
  },

  toggleMaximise(plane) {
    if (this.geom.is2d) return;
    this.s.maximised = this.s.maximised === plane ? null : plane;
    this.layoutPanes();
  },
};
