// Compose one pane's image: windowed anatomy, the map resampled trilinearly from its own grid, and the mask.
//
// One output pixel per anatomy voxel of the slice (the pane then scales that image on the GPU compositor),
// written as packed RGBA into a Uint32Array. The anatomy is read with strides (sliceWalk); the map and the
// mask with their own voxel coordinates, which are linear along a row (gridWalk), so each pixel costs a few
// additions. Rows are clipped to the part of the map's box they cross, so a small map costs little.
// Kept free of DOM and allocation per call: a slice step must stay within a few milliseconds. The overlays
// are in overlay.js, the sampling helpers they share in sampling.js.

import { overlayMap, overlayMask } from "./overlay.js";

/**
 * Fill `out` (Uint32Array, width * height, RGBA little-endian) for one slice.
 * anatomy: {data, walk: {base, dx, dy}, gain, bias, lut?, lutOffset?}  grey = clamp(value * gain + bias, 0, 255);
 *          for 8/16-bit integer data, `lut` (Uint32Array of packed grey pixels) indexed by value + lutOffset.
 * map:     null | {data (uint8), dims, grid, lut (Uint8Array 768), alpha (0..1), threshold (0..255)}
 * mask:    null | {data (uint8), dims, grid, colours (Uint8Array 768), alpha, outline, binaryAt (null | 0..255)}
 * labels:  scratch Uint8Array(width * height) reused between calls (mask only).
 */
export function composeSlice(out, width, height, anatomy, map, mask, labels) {
  const { data: vol, gain, bias, lut } = anatomy;
  const { base, dx, dy } = anatomy.walk;
  if (lut) {
    const offset = anatomy.lutOffset;
    for (let r = 0, p = 0; r < height; r++) {
      for (let c = 0, idx = base + r * dy; c < width; c++, p++, idx += dx) out[p] = lut[vol[idx] + offset];
    }
  } else {
    greyArithmetic(out, width, height, vol, base, dx, dy, gain, bias);
  }
  if (map) overlayMap(out, width, height, map);
  if (mask) overlayMask(out, width, height, mask, labels);
}

/**
 * Copy voxels i in [from, to) of `data` (order i, j, k) into `copy` ordered (j, k, i), so that a slice across
 * axis 0 is contiguous; returns `to`. Strides of the copy: acrossAxis0Strides(dims).
 */
export function reorderAcrossAxis0(data, copy, dims, from, to) {
  const [n0, n1, n2] = dims;
  const n01 = n0 * n1;
  for (let i = from; i < to; i++) {
    for (let k = 0; k < n2; k++) {
      for (let j = 0, src = i + n01 * k, dst = n1 * (k + n2 * i); j < n1; j++, src += n0) copy[dst + j] = data[src];
    }
  }
  return to;
}

export function acrossAxis0Strides(dims) {
  return [dims[1] * dims[2], 1, dims[1]];
}

/** Packed grey pixels for every value of 8/16-bit integer data: {lut, offset}, or null for other types. */
export function greyTable(data, gain, bias) {
  const range = { Int16Array: [-32768, 65536], Uint16Array: [0, 65536], Uint8Array: [0, 256], Int8Array: [-128, 256] }[data.constructor.name];
  if (!range) return null;
  const [first, count] = range;
  const lut = new Uint32Array(count);
  for (let n = 0; n < count; n++) {
    let g = (first + n) * gain + bias;
    g = g <= 0 ? 0 : g >= 255 ? 255 : g | 0;
    lut[n] = 0xff000000 | (g << 16) | (g << 8) | g;
  }
  return { lut, offset: -first };
}

function greyArithmetic(out, width, height, vol, base, dx, dy, gain, bias) {
  for (let r = 0, p = 0; r < height; r++) {
    let idx = base + r * dy;
    for (let c = 0; c < width; c++, p++, idx += dx) {
      let g = vol[idx] * gain + bias;
      g = g <= 0 ? 0 : g >= 255 ? 255 : g | 0;
      out[p] = 0xff000000 | (g << 16) | (g << 8) | g;
    }
  }
}
