// A map that is still being computed: the server writes a small JSON status file (viewer/status.py) and the
// browser polls it, with a cache-buster, until the stage is "done" (then the map is fetched) or "failed".
// Polling stops when the viewer is given another map for the slot, or the user stopped the computation.

export const STAGE_WORDS = {
  queued: "waiting to start",
  forward: "running the model (forward pass)",
  gradients: "computing gradients",
  windows: "window by window,",
  mapping: "mapping onto the image",
  done: "done",
  failed: "failed",
  stopped: "stopped",
};

export const POLL_MS = 400;

/**
 * Poll `statusUrl` until done or failed, calling onStatus(status) on each change of stage or message.
 * Returns a function that stops polling. A missing file (404) counts as "queued".
 */
export function pollStatus(statusUrl, onStatus, intervalMs = POLL_MS) {
  let stopped = false;
  let last = "";
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    let status;
    try {
      const sep = statusUrl.includes("?") ? "&" : "?";
      const response = await fetch(`${statusUrl}${sep}t=${Date.now()}`, { cache: "no-store" });
      status = response.ok ? await response.json() : { stage: "queued", message: "" };
    } catch (err) {
      status = { stage: "queued", message: `status not readable yet (${err.message})` };
    }
    if (stopped) return;
    const key = `${status.stage}|${status.message || ""}`;
    if (key !== last) {
      last = key;
      onStatus(status);
    }
    if (!["done", "failed", "stopped"].includes(status.stage)) timer = setTimeout(tick, intervalMs);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** The progress line for a pending map: it names the map asked for, never the one on screen. */
export function progressText(title, status) {
  const words = STAGE_WORDS[status.stage] || status.stage;
  if (status.stage === "failed") return `${title}: the map could not be computed. ${status.message || ""}`.trim();
  if (status.stage === "stopped") return `${title}: stopped before it finished. ${status.message || ""}`.trim();
  return `computing ${title}: ${words}…${status.message ? ` ${status.message}` : ""}`;
}
