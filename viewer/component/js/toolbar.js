// The viewer's controls. Every control acts in the browser only: nothing here talks to the server.

import { el } from "./pane.js";

export const PRESETS = {
  "CT brain": [80, 40],
  "CT soft tissue": [400, 40],
  "CT lung": [1500, -600],
  "CT bone": [2500, 480],
  "Auto (percentiles)": null, // 0.5-99.5 percentiles of the image itself (MR, radiographs, anything not in HU)
};
export const AUTO = "Auto (percentiles)";
// Hounsfield presets mean nothing on an image that is not CT (a radiograph, an MR): offered for CT only.
export const CT_PRESETS = ["CT brain", "CT soft tissue", "CT lung", "CT bone"];

export const SHORTCUTS = [
  ["↑ ↓ / wheel", "next / previous slice (PgUp/PgDn: 10, Home/End)"],
  ["a c s", "make the axial / coronal / sagittal pane active"],
  ["m / double-click", "maximise the active pane, or restore"],
  ["+ − 0 / ctrl+wheel", "zoom in, out, reset zoom and pan"],
  ["shift+drag / middle-drag", "pan"],
  ["right-drag", "window (left-right) and level (up-down)"],
  ["1 – 5", "window presets: CT brain, soft tissue, lung, bone, auto (percentiles)"],
  ["d", "measure a distance in mm: click two points on a pane (d or Esc again: stop)"],
  ["r", "radiological / neurological"],
  ["o", "map overlay on / off"],
  ["k", "mask on / off"],
  ["x", "crosshair lines on / off"],
  ["l", "layout 1×3 / 2×2 with 3D (/ compare, when there are maps to compare)"],
  ["?", "this help"],
];

function group(bar, label, testid) {
  const g = el("label", { class: "cv-group" }, bar);
  el("span", { text: label }, g);
  if (testid) g.setAttribute("data-testid", testid);
  return g;
}

function select(parent, testid, options) {
  const node = el("select", { "data-testid": testid }, parent);
  for (const [value, text] of options) el("option", { value, text }, node);
  return node;
}

export const LAYOUTS = [
  ["1x3", "1 × 3"],
  ["2x2", "2 × 2 with 3D"],
  ["compare", "compare maps"],
];

/** Build the toolbar; `on(name, value)` is called on every change. Returns the controls by name. */
export function buildToolbar(root, on) {
  const bar = el("div", { class: "cv-toolbar" }, root);
  const c = {};
  c.layout = select(group(bar, "Layout"), "cv-layout", LAYOUTS);
  c.planeGroup = group(bar, "Plane");
  c.plane = select(c.planeGroup, "cv-compare-plane", [
    ["axial", "axial"],
    ["coronal", "coronal"],
    ["sagittal", "sagittal"],
  ]);
  c.preset = select(group(bar, "Window"), "cv-preset", [...Object.keys(PRESETS), "Custom"].map((n) => [n, n]));
  c.width = el("input", { type: "number", step: "any", class: "cv-num", "data-testid": "cv-width" }, group(bar, "W"));
  c.level = el("input", { type: "number", step: "any", class: "cv-num", "data-testid": "cv-level" }, group(bar, "L"));
  c.mapGroup = group(bar, "Map");
  c.map = el("select", { "data-testid": "cv-map" }, c.mapGroup);
  c.overlay = el("input", { type: "checkbox", "data-testid": "cv-overlay" }, group(bar, "Overlay"));
  c.opacity = el("input", { type: "range", min: "0", max: "1", step: "0.05", "data-testid": "cv-opacity" }, group(bar, "Opacity"));
  c.threshold = el("input", { type: "range", min: "0", max: "1", step: "0.01", "data-testid": "cv-threshold" }, group(bar, "Threshold"));
  c.colourmap = el("select", { "data-testid": "cv-colourmap" }, group(bar, "Colours"));
  c.maskGroup = group(bar, "Mask");
  c.mask = el("input", { type: "checkbox", "data-testid": "cv-mask" }, c.maskGroup);
  c.maskMode = select(c.maskGroup, "cv-mask-mode", [
    ["outline", "outline"],
    ["fill", "fill"],
  ]);
  c.radiologicalGroup = group(bar, "Radiological");
  c.radiological = el("input", { type: "checkbox", "data-testid": "cv-radiological" }, c.radiologicalGroup);
  c.crosshair = el("input", { type: "checkbox", "data-testid": "cv-crosshair" }, group(bar, "Crosshair"));
  c.crosshair.checked = true;
  c.reset = el("button", { type: "button", text: "Reset view", "data-testid": "cv-reset" }, bar);
  c.export = el("button", { type: "button", text: "PNG", title: "Save what you see as a PNG", "data-testid": "cv-export" }, bar);
  c.measure = el("button", { type: "button", text: "Measure", title: "Measure a distance in mm (d)", "data-testid": "cv-measure" }, bar);
  c.help = el("button", { type: "button", class: "cv-help", text: "?", title: "Keyboard and mouse (?)", "data-testid": "cv-help" }, bar);
  c.helpPanel = buildHelp(root, () => on("help", false));

  const fire = (name, read) => () => on(name, read());
  c.layout.addEventListener("change", fire("layout", () => c.layout.value));
  c.plane.addEventListener("change", fire("plane", () => c.plane.value));
  c.measure.addEventListener("click", fire("measure", () => null));
  c.help.addEventListener("click", fire("help", () => c.helpPanel.hidden));
  c.preset.addEventListener("change", fire("preset", () => c.preset.value));
  for (const input of [c.width, c.level]) input.addEventListener("input", fire("window", () => [parseFloat(c.width.value), parseFloat(c.level.value)]));
  c.map.addEventListener("change", fire("map", () => parseInt(c.map.value, 10)));
  c.overlay.addEventListener("change", fire("overlay", () => c.overlay.checked));
  c.opacity.addEventListener("input", fire("opacity", () => parseFloat(c.opacity.value)));
  c.threshold.addEventListener("input", fire("threshold", () => parseFloat(c.threshold.value)));
  c.colourmap.addEventListener("change", fire("colourmap", () => c.colourmap.value));
  c.mask.addEventListener("change", fire("mask", () => c.mask.checked));
  c.maskMode.addEventListener("change", fire("maskMode", () => c.maskMode.value));
  c.radiological.addEventListener("change", fire("radiological", () => c.radiological.checked));
  c.crosshair.addEventListener("change", fire("crosshair", () => c.crosshair.checked));
  c.reset.addEventListener("click", fire("reset", () => true));
  c.export.addEventListener("click", fire("export", () => true));
  return c;
}

/** The keyboard and mouse help, opened by the "?" button or key; closed by its button, Esc or "?". */
function buildHelp(root, close) {
  const panel = el("div", { class: "cv-help-panel", role: "dialog", "aria-label": "Keyboard and mouse", "data-testid": "cv-help-panel" }, root);
  panel.hidden = true;
  const head = el("div", { class: "cv-help-head" }, panel);
  el("strong", { text: "Keyboard and mouse" }, head);
  el("button", { type: "button", text: "Close", "data-testid": "cv-help-close" }, head).addEventListener("click", close);
  const table = el("table", {}, panel);
  for (const [keys, what] of SHORTCUTS) {
    const row = el("tr", {}, table);
    el("th", { text: keys }, row);
    el("td", { text: what }, row);
  }
  return panel;
}

/** Fill a <select> with options [value, text] (keeping the current value when it still exists). */
export function setOptions(node, options) {
  const keep = node.value;
  node.innerHTML = "";
  for (const [value, text] of options) el("option", { value: String(value), text }, node);
  if (options.some(([value]) => String(value) === keep)) node.value = keep;
}
