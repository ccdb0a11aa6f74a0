// Keyboard shortcuts of the viewer (listed in toolbar.js SHORTCUTS). The viewer root stops every key event
// it receives, so Streamlit's page hotkeys (c: clear caches, r: rerun) never see keys meant for the viewer.

import { AUTO } from "./toolbar.js";

const STEPS = { ArrowUp: 1, ArrowRight: 1, ArrowDown: -1, ArrowLeft: -1, PageUp: 10, PageDown: -10 };
const PRESET_KEYS = { 1: "CT brain", 2: "CT soft tissue", 3: "CT lung", 4: "CT bone", 5: AUTO };
const PLANE_KEYS = { a: "axial", c: "coronal", s: "sagittal" };

export function handleKey(viewer, e) {
  const target = e.target;
  if (target && (target.tagName === "INPUT" || target.tagName === "SELECT") && target.type !== "checkbox" && target.type !== "range") return;
  if (!viewer.geom || e.ctrlKey || e.metaKey || e.altKey) return;
  const s = viewer.s;
  const plane = s.active;
  const key = e.key;
  let handled = true;
  if (key in STEPS) viewer.step(plane, STEPS[key]);
  else if (key === "Home" || key === "End") {
    const axis = viewer.panes[plane].layout.sliceAxis;
    const v = [...viewer.cross];
    v[axis] = key === "Home" ? 0 : viewer.geom.dims[axis] - 1;
    viewer.setCross(v);
  } else if (key in PLANE_KEYS && viewer.panes[PLANE_KEYS[key]]) viewer.setActive(PLANE_KEYS[key]);
  else if (key === "m") viewer.toggleMaximise(plane);
  else if (key === "+" || key === "=") viewer.zoomAt(plane, Math.SQRT2);
  else if (key === "-" || key === "_") viewer.zoomAt(plane, Math.SQRT1_2);
  else if (key === "0") viewer.onControl("reset", true);
  else if (key in PRESET_KEYS) {
    viewer.windowByUser = true;
    viewer.applyPreset(PRESET_KEYS[key]);
  } else if (key === "r" && !viewer.geom.is2d) viewer.onControl("radiological", !s.radiological);
  else if (key === "o") viewer.onControl("overlay", !s.overlay);
  else if (key === "d") viewer.onControl("measure", null);
  else if (key === "?") viewer.onControl("help", viewer.controls.helpPanel.hidden);
  else if (key === "Escape" && (viewer.measuring || !viewer.controls.helpPanel.hidden)) {
    viewer.onControl("help", false);
    if (viewer.measuring) viewer.onControl("measure", null);
  }
  else if (key === "k") viewer.onControl("mask", !s.mask);
  else if (key === "x") viewer.onControl("crosshair", !s.crosshair);
  else if (key === "l" && !viewer.geom.is2d) {
    const cycle = viewer.comparePanes.length ? ["1x3", "2x2", "compare"] : ["1x3", "2x2"];
    viewer.onControl("layout", cycle[(cycle.indexOf(s.layout) + 1) % cycle.length]);
  } else handled = false;
  if (handled) e.preventDefault();
}
