// The view in the page's URL: crosshair voxel, window and opacity, as query parameters beside the ones the
// page keeps (case, model, method, layer, target). Written with history.replaceState, a few times a second at
// most, so a copied link or a reload opens the same view. The server reads them back (explain/share.py) and
// hands them to the viewer as the first view of that image: the viewer never trusts the URL directly.

export const VIEW_KEYS = ["cross", "window", "opacity"];
const WRITE_MS = 250;

/** The query parameters for a view state (numbers rounded so the URL stays short). */
export function viewParams({ cross, width, level, opacity }) {
  const short = (x) => String(+x.toPrecision(6));
  return { cross: cross.join(","), window: `${short(width)},${short(level)}`, opacity: String(+opacity.toFixed(2)) };
}

/** `search` (e.g. location.search) with the view parameters replaced, others kept in their order. */
export function withView(search, params) {
  const query = new URLSearchParams(search);
  for (const key of VIEW_KEYS) {
    if (params[key] === undefined || params[key] === null) query.delete(key);
    else query.set(key, params[key]);
  }
  const text = query.toString();
  return text ? `?${text}` : "";
}

/** Write the view into the URL soon (coalesced): one history entry replaced, none added. */
export function scheduleWrite(viewer) {
  clearTimeout(viewer.urlTimer);
  viewer.urlTimer = setTimeout(() => {
    if (!viewer.cross || !viewer.anatomy?.data) return;
    const search = withView(window.location.search, viewParams({ ...viewer.s, cross: viewer.cross }));
    if (search !== window.location.search) window.history.replaceState(window.history.state, "", `${window.location.pathname}${search}${window.location.hash}`);
  }, WRITE_MS);
}
