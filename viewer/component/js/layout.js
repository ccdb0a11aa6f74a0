// Pane layout: the main panes (1x3, 2x2 with the 3D pane, or one maximised) or the compare grid (one pane per
// map, side by side, in the plane the user chooses), sized as large as the page allows. Methods mixed into Viewer.
//
// Sizes: the width is the viewer's; the height is the window's. A multi-pane grid may be taller than the window
// by the toolbar and the readout (the page scrolls a little); one image (2D, or a maximised pane) fits the window
// whole, toolbar and readout included.

import { planeLayout } from "./geometry.js";
import { Pane, el } from "./pane.js";

const GAP = 8;

export const layoutMethods = {
  buildPanes() {
    this.render3d?.dispose();
    this.render3d = this.render3dLoading = null; // a new image: a new 3D pane, built again when shown
    this.grid.innerHTML = "";
    this.panes = {};
    this.views = {};
    for (const plane of this.geom.planes) {
      this.panes[plane] = new Pane(this.grid, plane, this.paneHandlers(null));
      this.panes[plane].zoomOnWheel = this.geom.is2d;
      this.views[plane] = { zoom: 1, panX: 0, panY: 0 };
    }
    this.view3d = el("div", { class: "cv-pane cv-pane-3d", "data-plane": "3d" }, this.grid);
    this.applyLayouts();
    this.buildComparePanes();
    this.layoutPanes();
  },

  buildComparePanes() {
    this.compareEl.innerHTML = "";
    this.comparePanes = [];
    if (!this.geom || this.slots.length < 2) return;
    this.slots.forEach((slot, n) => {
      const pane = new Pane(this.compareEl, this.s.active, this.paneHandlers(n), { title: slot.title, slider: n === 0 });
      pane.zoomOnWheel = this.geom.is2d;
      pane.mapIndex = n;
      pane.root.setAttribute("data-testid", `cv-compare-${n}`);
      this.comparePanes.push(pane);
    });
    this.applyLayouts();
    this.layoutPanes();
  },

  /** Plane layouts (axes, flips, labels) for the current radiological setting, from geometry.js only. */
  applyLayouts() {
    if (!this.geom) return;
    for (const pane of [...Object.values(this.panes), ...this.comparePanes]) {
      pane.setLayout(planeLayout(this.geom, pane.plane, this.s.radiological));
      pane.setView(this.views[pane.plane]);
    }
    this.root.setAttribute("data-radiological", this.s.radiological ? "1" : "0");
  },

  /** The panes on screen (the main grid, or the compare grid): only these are drawn. */
  allPanes() {
    return [...(this.grid.hidden ? [] : Object.values(this.panes)), ...(this.compareEl.hidden ? [] : this.comparePanes)];
  },

  layoutPanes() {
    if (!this.geom) return;
    const width = Math.max(240, this.root.clientWidth - 2 * GAP);
    const planes = this.geom.planes;
    const comparing = this.s.layout === "compare" && this.comparePanes.length >= 2;
    const max = planes.length === 1 ? planes[0] : comparing ? null : this.s.maximised;
    const layout = comparing ? "compare" : max ? "max" : this.s.layout;
    this.grid.setAttribute("data-layout", layout);
    this.root.setAttribute("data-layout", max ? `max:${max}` : layout);
    this.grid.hidden = comparing;
    this.compareEl.hidden = !comparing;
    const show3d = !comparing && (!max ? this.s.layout === "2x2" : max === "3d");
    for (const plane of planes) this.panes[plane].root.hidden = Boolean(max) && max !== plane;
    this.view3d.hidden = !show3d;
    const paneChrome = 44; // a pane's title row and slice slider
    const tall = Math.max(240, window.innerHeight - paneChrome);
    // One image fits the window whole: the viewer's own toolbar, readout and legend are taken off its height.
    const chrome = Math.max(120, this.root.offsetHeight - (this.grid.hidden ? this.compareEl.offsetHeight : this.grid.offsetHeight));
    let side;
    if (max) side = [width, Math.max(240, Math.min(width, window.innerHeight - chrome - paneChrome - 2 * GAP))];
    else if (this.s.layout === "2x2") side = [Math.floor((width - GAP) / 2), Math.min(Math.floor((width - GAP) / 2), Math.floor((tall - GAP) / 2))];
    else side = [Math.floor((width - 2 * GAP) / 3), Math.min(Math.floor((width - 2 * GAP) / 3), tall)];
    for (const plane of planes) this.panes[plane].setStageSize(...side);
    this.size3d = side;
    // Compare: 2 or 3 maps in one row, 4 in two rows of two; square panes as large as width and window allow.
    const n = this.comparePanes.length;
    const perRow = n === 4 ? 2 : Math.max(1, Math.min(n, 3));
    const rows = Math.ceil(n / perRow);
    const compareSide = Math.max(160, Math.min(Math.floor((width - (perRow - 1) * GAP) / perRow), Math.floor((tall - (rows - 1) * GAP) / rows)));
    this.compareEl.style.gridTemplateColumns = `repeat(${perRow}, max-content)`;
    for (const pane of this.comparePanes) pane.setStageSize(compareSide, compareSide);
    if (show3d) this.ensure3d();
    this.renderAll();
  },

  async ensure3d() {
    if (!this.render3dLoading) {
      // Built only when its pane is shown: nothing is computed for a 3D view nobody opened.
      this.render3dLoading = import("./render3d.js").then((m) => new m.Render3D(this.view3d, this));
    }
    const loading = this.render3dLoading;
    const render3d = await loading;
    if (loading !== this.render3dLoading) return; // replaced by a new image meanwhile
    this.render3d = render3d;
    this.render3d.resize(...this.size3d);
    this.render3d.update();
  },
};
