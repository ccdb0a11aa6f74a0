// The colour bar (hot end = high importance) and its labels, shared by the page and the PNG export.

/** Draw the colour table across `width` x `height` at (x, y); values below the threshold are shown grey. */
export function drawColourbar(ctx, lut, threshold, x, y, width, height) {
  for (let px = 0; px < width; px++) {
    const t = px / Math.max(1, width - 1);
    const q = Math.round(t * 255) * 3;
    ctx.fillStyle = t < threshold ? "#333" : `rgb(${lut[q]},${lut[q + 1]},${lut[q + 2]})`;
    ctx.fillRect(x + px, y, 1, height);
  }
}

export function formatRaw(value) {
  if (!Number.isFinite(value)) return "";
  return Math.abs(value) >= 1000 || (Math.abs(value) < 0.01 && value !== 0) ? value.toExponential(2) : value.toPrecision(3);
}

/** Text under the bar: the scale, the threshold, and the map's raw peak. */
export function legendText(title, threshold, peak) {
  const raw = Number.isFinite(peak) ? ` (raw ${formatRaw(peak)})` : "";
  return `${title} · 0 → 1 = map peak${raw} · threshold ${threshold.toFixed(2)}`;
}

