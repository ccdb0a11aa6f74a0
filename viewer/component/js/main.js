// Entry point, imported once per page by the component's tiny inline script (viewer/component/__init__.py).
// One array store for the page; one viewer per component key, kept across Streamlit reruns so that arrays,
// crosshair, zoom and every display setting survive a rerun.

import { ArrayStore } from "./store.js";
import { Viewer } from "./viewer.js";

const store = new ArrayStore();
const viewers = new Map();

export function mount(component) {
  const { data, parentElement, key } = component;
  if (!data) return;
  let viewer = viewers.get(key);
  if (!viewer) {
    viewer = new Viewer(parentElement, store, data.assets);
    viewers.set(key, viewer);
  } else if (!parentElement.contains(viewer.root)) {
    parentElement.appendChild(viewer.root); // remounted by Streamlit: keep everything loaded
  }
  viewer.update(data);
}
