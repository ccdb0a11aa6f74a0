// Intensity statistics for window/level, computed in the browser from the array it already holds
// (the same rules as viewer/windowing.py: percentiles of the non-background voxels; CT if the 1st
// percentile is below -500 HU).

const SAMPLE = 100_000; // plenty for 0.5 / 99.5 percentiles, and sorted in a few ms

/** Real values (stored * scale + inter) of a regular subsample, sorted ascending. */
export function sortedSample(data, scale = 1, inter = 0) {
  const step = Math.max(1, Math.floor(data.length / SAMPLE));
  const out = new Float32Array(Math.ceil(data.length / step));
  for (let n = 0, p = 0; p < data.length; n++, p += step) out[n] = data[p] * scale + inter;
  return out.sort();
}

function quantile(sorted, q) {
  if (!sorted.length) return 0;
  const k = (sorted.length - 1) * q;
  const lo = Math.floor(k);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (k - lo);
}

/** {width, level} spanning the 0.5-99.5 percentiles of voxels above the minimum ("MR auto"). */
export function autoWindow(sorted) {
  const min = sorted[0];
  let first = 0;
  while (first < sorted.length && sorted[first] <= min) first++;
  const fg = first < sorted.length ? sorted.subarray(first) : sorted;
  let lo = quantile(fg, 0.005);
  let hi = quantile(fg, 0.995);
  if (hi <= lo) [lo, hi] = [sorted[0], sorted[sorted.length - 1]]; // a constant foreground: the whole range
  const width = hi > lo ? hi - lo : 1;
  return { width, level: lo + width / 2 };
}

export function looksLikeCt(sorted) {
  return quantile(sorted, 0.01) < -500;
}

/** Range of values, for scaling right-drag window changes to the data. */
export function valueRange(sorted) {
  return { min: sorted[0], max: sorted[sorted.length - 1] };
}
