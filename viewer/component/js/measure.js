// Distance measurement: two clicks on one pane give a segment whose length is measured in world millimetres
// through the image's full affine (voxel -> RAS+ mm), so it is right on anisotropic and oblique grids, where
// counting pixels times a spacing would not be. Methods mixed into Viewer; distanceMm is pure (tested in node).

import { pixelOf, voxelAt, worldOf } from "./geometry.js";

/** Euclidean distance in mm between two continuous voxel positions of `geom`. */
export function distanceMm(geom, a, b) {
  const p = worldOf(geom, a);
  const q = worldOf(geom, b);
  return Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
}

export function formatMm(mm) {
  return `${mm >= 100 ? mm.toFixed(0) : mm.toFixed(1)} mm`;
}

export const measureMethods = {
  /** Start measuring (the next two clicks on a pane), or stop and clear the segment. */
  toggleMeasure() {
    this.measuring = !this.measuring;
    this.measurement = null;
    this.controls.measure.classList.toggle("cv-on", this.measuring);
    this.root.setAttribute("data-measuring", this.measuring ? "1" : "0");
    this.showMeasure();
  },

  /** A click while measuring: the first end, then the second (a third click starts a new segment). */
  measurePick(pane, x, y) {
    const slice = this.cross[pane.layout.sliceAxis];
    const voxel = voxelAt(this.geom, pane.layout, slice, x, y);
    const m = this.measurement;
    if (!m || m.b || m.plane !== pane.plane) this.measurement = { plane: pane.plane, slice, a: voxel, b: null };
    else m.b = voxel;
    this.showMeasure();
  },

  /** Draw the segment on the pane it was measured on, while that pane shows its slice; expose it to tests. */
  showMeasure() {
    const m = this.measurement;
    const mm = m && m.b ? distanceMm(this.geom, m.a, m.b) : null;
    for (const pane of Object.values(this.panes)) {
      const here = m && pane.plane === m.plane && pane.layout && this.cross[pane.layout.sliceAxis] === m.slice;
      if (!here) pane.setMeasure(null);
      else pane.setMeasure([m.a, m.b || m.a].map((v) => pixelOf(this.geom, pane.layout, v)), mm === null ? "" : formatMm(mm));
    }
    this.root.setAttribute("data-measure-mm", mm === null ? "" : String(mm));
    this.root.setAttribute("data-measure-ends", m && m.b ? JSON.stringify([m.a, m.b]) : "");
  },
};
