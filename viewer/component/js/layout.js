// Pane layout: the main panes (1x3, 2x2 with the 3D pane, or one maximised), the compare grid (one pane per
// map, showing the active plane), and their sizes from the page width. Methods mixed into Viewer.

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
      const pane = new Pane(this.compareEl, this.s.active, this.paneHandlers(n), { title: slot.title, slider: false });
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
    for (const pane of this.allPanes()) {
      pane.setLayout(planeLayout(this.geom, pane.plane, this.s.radiological));
      pane.setView(this.views[pane.plane]);
    }
    this.root.setAttribute("data-radiological", this.s.radiological ? "1" : "0");
  },

  allPanes() {
    return [...Object.values(this.panes), ...this.comparePanes];
  },

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
