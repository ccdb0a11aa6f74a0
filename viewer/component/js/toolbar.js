// The viewer's controls. Every control acts in the browser only: nothing here talks to the server.

import { el } from "./pane.js";

export const PRESETS = {
  "CT brain": [80, 40],
  "CT soft tissue": [400, 40],
  "CT lung": [1500, -600],
  "CT bone": [2500, 480],
  "MR auto": null, // percentiles of the image itself
};

export const SHORTCUTS = [
  ["↑ ↓ / wheel", "next / previous slice (PgUp/PgDn: 10, Home/End)"],
  ["a c s", "make the axial / coronal / sagittal pane active"],
  ["m / double-click", "maximise the active pane, or restore"],
  ["+ − 0 / ctrl+wheel", "zoom in, out, reset zoom and pan"],
  ["shift+drag / middle-drag", "pan"],
  ["right-drag", "window (left-right) and level (up-down)"],
  ["1 – 5", "window presets: CT brain, soft tissue, lung, bone, MR auto"],
  ["r", "radiological / neurological"],
  ["o", "map overlay on / off"],
  ["k", "mask on / off"],
  ["x", "crosshair lines on / off"],
  ["l", "layout 1×3 / 2×2 with 3D"],
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

/** Build the toolbar; `on(name, value)` is called on every change. Returns the controls by name. */
export function buildToolbar(root, on) {
  const bar = el("div", { class: "cv-toolbar" }, root);
  const c = {};
  c.layout = select(group(bar, "Layout"), "cv-layout", [
    ["1x3", "1 × 3"],
    ["2x2", "2 × 2 with 3D"],
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
  const help = el("span", { class: "cv-help", text: "?", tabindex: "0", "data-testid": "cv-help" }, bar);
  help.title = SHORTCUTS.map(([keys, what]) => `${keys}: ${what}`).join("\n");

  const fire = (name, read) => () => on(name, read());
  c.layout.addEventListener("change", fire("layout", () => c.layout.value));
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

/** Fill a <select> with options [value, text] (keeping the current value when it still exists). */
export function setOptions(node, options) {
  const keep = node.value;
  node.innerHTML = "";
  for (const [value, text] of options) el("option", { value: String(value), text }, node);
  if (options.some(([value]) => String(value) === keep)) node.value = keep;
}
