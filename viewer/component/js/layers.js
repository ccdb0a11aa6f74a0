// The overlays on the anatomy: up to N maps (each in a slot that keeps showing its previous map while a new
// one is pending) and one mask (uint8 labels, or a second map shown as an outline at half its peak).

import { invert4 } from "./geometry.js";
import { pollStatus, progressText } from "./pending.js";

const MASK_PALETTE = [
  [0, 0, 0],
  [0, 230, 255],
  [80, 255, 80],
  [255, 90, 255],
  [255, 255, 0],
  [255, 140, 0],
  [120, 120, 255],
];

/** A map or mask descriptor's grid: data dims as 3 numbers and the inverse affine. */
function gridOf(desc) {
  const dims = desc.shape.length === 2 ? [desc.shape[0], desc.shape[1], 1] : desc.shape.slice(0, 3);
  return { dims, inverse: invert4(desc.affine) };
}

export class MapSlot {
  constructor(store, onChange) {
    this.store = store;
    this.onChange = onChange; // (slot) => void, after data or status changed
    this.key = null; // identity of the requested map: its URL or its status URL
    this.requestKey = ""; // the server's key of the requested map (its request key), exposed to tests
    this.title = "";
    this.shown = null; // {desc, data, dims, inverse, peak, title}: what is on screen
    this.status = null; // last status of a pending map
    this.stop = () => {};
  }

  /** Ask for `entry` (a payload map); the previous map stays shown until the new one has arrived. */
  request(entry) {
    const key = entry.status_url || entry.url;
    this.title = entry.title || "map";
    this.requestKey = entry.key || key;
    if (key === this.key) {
      // The same map with new facts (a mask added, localisation scores with it): a new object, so it is redrawn.
      if (!entry.status_url && this.shown?.desc.url === entry.url && factsChanged(this.shown, entry)) {
        this.shown = { ...this.shown, facts: entry.facts || [], warnings: entry.warnings || [], model: entry.model || "" };
        this.onChange(this);
      }
      return;
    }
    this.stop();
    this.key = key;
    this.status = null;
    if (entry.status_url) {
      this.stop = pollStatus(entry.status_url, (status) => {
        if (this.key !== key) return;
        this.status = status;
        // The map's facts (compute time, peak, scores) travel with it: shown only once it is drawn.
        if (status.stage === "done") this.load({ ...entry, ...(status.map || {}), facts: status.facts || [], warnings: status.warnings || [] }, key);
        this.onChange(this);
      });
    } else {
      this.stop = () => {};
      this.load(entry, key);
    }
  }

  load(desc, key) {
    this.store.get(desc).then(
      (data) => {
        if (this.key !== key) return;
        this.shown = {
          desc, data, ...gridOf(desc), peak: desc.peak ?? 1, title: desc.title || this.title, key: desc.key || key,
          facts: desc.facts || [], warnings: desc.warnings || [], model: desc.model || "",
        };
        this.status = null;
        this.onChange(this);
      },
      (err) => {
        if (this.key !== key) return;
        this.status = { stage: "failed", message: err.message };
        this.onChange(this);
      },
    );
  }

  /** The key of the requested map while it is not the one shown, else "". */
  pendingKey() {
    return this.shown && this.shown.key === this.requestKey ? "" : this.requestKey;
  }

  /** The progress line while pending or failed, else "". */
  progress() {
    return this.status ? progressText(this.title, this.status) : "";
  }

  dispose() {
    this.stop();
  }
}

function factsChanged(shown, entry) {
  const same = (a, b) => JSON.stringify(a || []) === JSON.stringify(b || []);
  return !same(shown.facts, entry.facts) || !same(shown.warnings, entry.warnings) || (shown.model || "") !== (entry.model || "");
}

/** The mask layer: labels (nearest voxel, colour per label) or a map drawn at half its peak. */
export class MaskLayer {
  constructor(store, onChange) {
    this.store = store;
    this.onChange = onChange;
    this.key = null;
    this.shown = null;
  }

  request(entry) {
    if (!entry) {
      this.key = null;
      this.shown = null;
      return;
    }
    if (entry.url === this.key) return;
    this.key = entry.url;
    const key = entry.url;
    this.store.get(entry).then((data) => {
      if (this.key !== key) return;
      const colours = new Uint8Array(768);
      for (let label = 1; label < 256; label++) colours.set(MASK_PALETTE[((label - 1) % (MASK_PALETTE.length - 1)) + 1], label * 3);
      for (const [label, rgb] of Object.entries(entry.colours || {})) colours.set(rgb, Number(label) * 3);
      this.shown = {
        desc: entry,
        data,
        ...gridOf(entry),
        colours,
        names: entry.names || {},
        binaryAt: entry.kind === "map" ? 128 : null,
        title: entry.title || "mask",
      };
      this.onChange(this);
    });
  }

  /** Name of a label value, for the readout. */
  labelName(value) {
    if (!this.shown || !value) return "";
    if (this.shown.binaryAt !== null) return value >= this.shown.binaryAt ? this.shown.title : "";
    return this.shown.names[String(value)] || `label ${value}`;
  }
}
