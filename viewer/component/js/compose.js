// Compose one pane's image: windowed anatomy, the map resampled trilinearly from its own grid, and the mask.
//
// One output pixel per anatomy voxel of the slice (the pane then scales that image on the GPU compositor),
// written as packed RGBA into a Uint32Array. The anatomy is read with strides (sliceWalk); the map and the
// mask with their own voxel coordinates, which are linear along a row (gridWalk), so each pixel costs a few
// additions. Rows are clipped to the part of the map's box they cross, so a small map costs little.
// Kept free of DOM and allocation per call: a slice step must stay within a few milliseconds.

/** Columns [from, to] of row r whose grid coordinates lie inside [-0.5, n - 0.5] on every axis. */
function insideColumns(grid, dims, r, width) {
  let from = 0;
  let to = width - 1;
  for (let a = 0; a < 3; a++) {
    const p = grid.m0[a] + r * grid.my[a];
    const q = grid.mx[a];
    const lo = -0.5;
    const hi = dims[a] - 0.5;
    if (Math.abs(q) < 1e-12) {
      if (p < lo || p > hi) return null;
      continue;
    }
    let c0 = (lo - p) / q;
    let c1 = (hi - p) / q;
    if (c0 > c1) [c0, c1] = [c1, c0];
    from = Math.max(from, Math.ceil(c0 - 1e-9));
    to = Math.min(to, Math.floor(c1 + 1e-9));
  }
  return from <= to ? [from, to] : null;
}

/** Trilinear value of a uint8 grid at continuous voxel coordinates (clamped to the edge voxels). */
export function sampleTrilinear(data, dims, m) {
  const [n0, n1, n2] = dims;
  const x = Math.min(Math.max(m[0], 0), n0 - 1);
  const y = Math.min(Math.max(m[1], 0), n1 - 1);
  const z = Math.min(Math.max(m[2], 0), n2 - 1);
  const x0 = Math.floor(x);
  const y0 = Math.floor(y);
  const z0 = Math.floor(z);
  const fx = x - x0;
  const fy = y - y0;
  const fz = z - z0;
  const i = x0 + n0 * (y0 + n1 * z0);
  const ox = x0 < n0 - 1 ? 1 : 0;
  const oy = y0 < n1 - 1 ? n0 : 0;
  const oz = z0 < n2 - 1 ? n0 * n1 : 0;
  const c00 = data[i] + (data[i + ox] - data[i]) * fx;
  const c10 = data[i + oy] + (data[i + oy + ox] - data[i + oy]) * fx;
  const c01 = data[i + oz] + (data[i + oz + ox] - data[i + oz]) * fx;
  const c11 = data[i + oz + oy] + (data[i + oz + oy + ox] - data[i + oz + oy]) * fx;
  const c0 = c00 + (c10 - c00) * fy;
  const c1 = c01 + (c11 - c01) * fy;
  return c0 + (c1 - c0) * fz;
}

/** Whether continuous voxel coordinates fall inside a grid of `dims` (voxel boxes, so +-0.5 at the edges). */
export function insideGrid(dims, m) {
  return m.every((v, a) => v >= -0.5 && v <= dims[a] - 0.5);
}

/** Nearest voxel value of a grid (0 outside). */
export function sampleNearest(data, dims, m) {
  if (!insideGrid(dims, m)) return 0;
  const [i, j, k] = m.map((v, a) => Math.min(dims[a] - 1, Math.max(0, Math.round(v))));
  return data[i + dims[0] * (j + dims[1] * k)];
}

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

/**
 * When a pane's columns run along one axis of the other grid and its rows along another (any axis-aligned
 * pair of affines: the usual case), return those axes; trilinear sampling is then separable.
 */
function alignedAxes(grid) {
  const along = (v) => {
    const axes = [0, 1, 2].filter((a) => Math.abs(v[a]) > 1e-9);
    return axes.length === 1 ? axes[0] : -1;
  };
  const a = along(grid.mx);
  const b = along(grid.my);
  return a >= 0 && b >= 0 && a !== b ? { a, b, c: 3 - a - b } : null;
}

// Scratch buffers reused across calls (a slice step allocates nothing).
let columnIndex = new Int32Array(0);
let columnNext = new Int32Array(0);
let columnWeight = new Float32Array(0);
let rowValues = new Float32Array(0);

function scratch(width, along) {
  if (columnIndex.length < width) {
    columnIndex = new Int32Array(width);
    columnNext = new Int32Array(width);
    columnWeight = new Float32Array(width);
  }
  if (rowValues.length < along) rowValues = new Float32Array(along);
}

/** Index, next index and weight of a clamped linear coordinate (voxel centres at integers). */
function split(v, n) {
  const x = v < 0 ? 0 : v > n - 1 ? n - 1 : v;
  const i = Math.floor(x);
  return [i, i < n - 1 ? i + 1 : i, x - i];
}

function overlayMap(out, width, height, map) {
  const aligned = alignedAxes(map.grid);
  if (aligned) overlayMapAligned(out, width, height, map, aligned);
  else overlayMapGeneral(out, width, height, map);
}

/**
 * Every (grey level, map level) pair blended once: 65536 packed pixels for one colour table and opacity, so a
 * pixel under the map costs one lookup. Rebuilt only when the colour map or the opacity changes.
 */
let blendCache = { lut: null, alpha: -1, table: null };

export function blendTable(lut, alpha) {
  if (blendCache.lut === lut && blendCache.alpha === alpha) return blendCache.table;
  const table = new Uint32Array(65536);
  const keep = 1 - alpha;
  for (let grey = 0; grey < 256; grey++) {
    const base = grey * keep;
    for (let q = 0; q < 256; q++) {
      const red = (base + lut[3 * q] * alpha) | 0;
      const green = (base + lut[3 * q + 1] * alpha) | 0;
      const blue = (base + lut[3 * q + 2] * alpha) | 0;
      table[(grey << 8) | q] = 0xff000000 | (blue << 16) | (green << 8) | red;
    }
  }
  blendCache = { lut, alpha, table };
  return table;
}

/**
 * Separable trilinear: the coordinate across the pane is constant, the one down the rows depends on the row
 * only, the one along the row on the column only. Per row, the map's values along the row axis are
 * interpolated once (a few dozen values); per pixel it is then one linear interpolation.
 */
function overlayMapAligned(out, width, height, map, { a, b, c }) {
  const { data, dims, grid, lut, alpha, threshold } = map;
  const strides = [1, dims[0], dims[0] * dims[1]];
  const inside = (v, n) => v >= -0.5 && v <= n - 0.5;
  const depth = grid.m0[c];
  if (!inside(depth, dims[c])) return;
  const [z0, z1, fz] = split(depth, dims[c]);
  scratch(width, dims[a]);
  let first = width;
  let last = -1;
  for (let col = 0; col < width; col++) {
    const v = grid.m0[a] + col * grid.mx[a];
    if (!inside(v, dims[a])) continue;
    first = Math.min(first, col);
    last = col;
    const [i0, i1, f] = split(v, dims[a]);
    columnIndex[col] = i0;
    columnNext[col] = v < 0 ? i0 : i1; // clamped below the first centre: constant, its own run
    columnWeight[col] = f;
  }
  // Columns between the same two map voxels form a run along which the value is linear in the column:
  // per pixel it is then one addition.
  const runs = [];
  for (let col = first; col <= last; col++) {
    const run = runs[runs.length - 1];
    if (run && run.i0 === columnIndex[col] && run.i1 === columnNext[col]) run.to = col;
    else runs.push({ from: col, to: col, i0: columnIndex[col], i1: columnNext[col] });
  }
  for (const run of runs) {
    run.w = columnWeight[run.from];
    run.dw = run.to > run.from ? (columnWeight[run.to] - run.w) / (run.to - run.from) : 0;
  }
  const blend = blendTable(lut, alpha);
  const sa = strides[a];
  const sz0 = z0 * strides[c];
  const sz1 = z1 * strides[c];
  for (let r = 0; r < height; r++) {
    const v = grid.m0[b] + r * grid.my[b];
    if (!inside(v, dims[b])) continue;
    const [y0, y1, fy] = split(v, dims[b]);
    const p00 = y0 * strides[b] + sz0;
    const p10 = y1 * strides[b] + sz0;
    const p01 = y0 * strides[b] + sz1;
    const p11 = y1 * strides[b] + sz1;
    for (let i = 0, o = 0; i < dims[a]; i++, o += sa) {
      const near = data[o + p00] + (data[o + p10] - data[o + p00]) * fy;
      const far = data[o + p01] + (data[o + p11] - data[o + p01]) * fy;
      rowValues[i] = near + (far - near) * fz;
    }
    const rowStart = r * width;
    for (const run of runs) {
      const lo = rowValues[run.i0];
      const span = rowValues[run.i1] - lo;
      let value = lo + span * run.w;
      const step = span * run.dw;
      for (let p = rowStart + run.from, end = rowStart + run.to; p <= end; p++, value += step) {
        if (value >= threshold) out[p] = blend[((out[p] & 0xff) << 8) | ((value + 0.5) | 0)];
      }
    }
  }
}

/** Any pair of affines (oblique): full trilinear per pixel, coordinates advanced by additions. */
function overlayMapGeneral(out, width, height, map) {
  const { data, dims, grid, lut, alpha, threshold } = map;
  const [n0, n1, n2] = dims;
  const n01 = n0 * n1;
  const max0 = n0 - 1;
  const max1 = n1 - 1;
  const max2 = n2 - 1;
  const [ax, ay, az] = grid.mx;
  const blend = blendTable(lut, alpha);
  for (let r = 0; r < height; r++) {
    const span = insideColumns(grid, dims, r, width);
    if (!span) continue;
    const [from, to] = span;
    let x = grid.m0[0] + r * grid.my[0] + from * ax;
    let y = grid.m0[1] + r * grid.my[1] + from * ay;
    let z = grid.m0[2] + r * grid.my[2] + from * az;
    for (let c = from, p = r * width + from; c <= to; c++, p++, x += ax, y += ay, z += az) {
      const cx = x < 0 ? 0 : x > max0 ? max0 : x;
      const cy = y < 0 ? 0 : y > max1 ? max1 : y;
      const cz = z < 0 ? 0 : z > max2 ? max2 : z;
      const x0 = cx | 0;
      const y0 = cy | 0;
      const z0 = cz | 0;
      const fx = cx - x0;
      const fy = cy - y0;
      const fz = cz - z0;
      const i = x0 + n0 * y0 + n01 * z0;
      const ox = x0 < max0 ? 1 : 0;
      const oy = y0 < max1 ? n0 : 0;
      const oz = z0 < max2 ? n01 : 0;
      const a = data[i];
      const c00 = a + (data[i + ox] - a) * fx;
      const b = data[i + oy];
      const c10 = b + (data[i + oy + ox] - b) * fx;
      const d = data[i + oz];
      const c01 = d + (data[i + oz + ox] - d) * fx;
      const e = data[i + oz + oy];
      const c11 = e + (data[i + oz + oy + ox] - e) * fx;
      const c0 = c00 + (c10 - c00) * fy;
      const value = c0 + (c01 + (c11 - c01) * fy - c0) * fz;
      if (value >= threshold) out[p] = blend[((out[p] & 0xff) << 8) | ((value + 0.5) | 0)];
    }
  }
}

/** Nearest-voxel labels of the mask along the pane's pixels (0 outside the mask's grid). */
function sampleLabels(labels, width, height, mask) {
  const { data, dims, grid, binaryAt } = mask;
  const [n0, n1, n2] = dims;
  const n01 = n0 * n1;
  const strides = [1, n0, n01];
  const nearest = (v, n) => Math.min(n - 1, Math.floor(v + 0.5));
  const aligned = alignedAxes(grid);
  labels.fill(0, 0, width * height);
  if (aligned) {
    const { a, b, c } = aligned;
    const depth = grid.m0[c];
    if (depth < -0.5 || depth > dims[c] - 0.5) return;
    scratch(width, 0);
    let first = width;
    let last = -1;
    for (let col = 0; col < width; col++) {
      const v = grid.m0[a] + col * grid.mx[a];
      if (v < -0.5 || v > dims[a] - 0.5) continue;
      first = Math.min(first, col);
      last = col;
      columnIndex[col] = nearest(v, dims[a]) * strides[a];
    }
    const plane = nearest(depth, dims[c]) * strides[c];
    for (let r = 0; r < height; r++) {
      const v = grid.m0[b] + r * grid.my[b];
      if (v < -0.5 || v > dims[b] - 0.5) continue;
      const row = plane + nearest(v, dims[b]) * strides[b];
      for (let col = first, p = r * width + first; col <= last; col++, p++) {
        const value = data[row + columnIndex[col]];
        labels[p] = binaryAt === null ? value : value >= binaryAt ? 1 : 0;
      }
    }
    return;
  }
  const [ax, ay, az] = grid.mx;
  for (let r = 0; r < height; r++) {
    const span = insideColumns(grid, dims, r, width);
    if (!span) continue;
    const [from, to] = span;
    // Nearest voxel: floor(x + 0.5), with x + 0.5 >= 0 inside the box (so `| 0` floors), clamped at the top.
    let x = grid.m0[0] + r * grid.my[0] + from * ax + 0.5;
    let y = grid.m0[1] + r * grid.my[1] + from * ay + 0.5;
    let z = grid.m0[2] + r * grid.my[2] + from * az + 0.5;
    for (let c = from, p = r * width + from; c <= to; c++, p++, x += ax, y += ay, z += az) {
      const i = x | 0;
      const j = y | 0;
      const k = z | 0;
      const v = data[(i < n0 ? i : n0 - 1) + n0 * (j < n1 ? j : n1 - 1) + n01 * (k < n2 ? k : n2 - 1)];
      labels[p] = binaryAt === null ? v : v >= binaryAt ? 1 : 0;
    }
  }
}

function overlayMask(out, width, height, mask, labels) {
  const { colours, alpha, outline } = mask;
  sampleLabels(labels, width, height, mask);
  const keep = 1 - alpha;
  for (let r = 0, p = 0; r < height; r++) {
    for (let c = 0; c < width; c++, p++) {
      const label = labels[p];
      if (!label) continue;
      const q = label * 3;
      if (outline) {
        const edge =
          c === 0 || r === 0 || c === width - 1 || r === height - 1 ||
          labels[p - 1] !== label || labels[p + 1] !== label || labels[p - width] !== label || labels[p + width] !== label;
        if (edge) out[p] = 0xff000000 | (colours[q + 2] << 16) | (colours[q + 1] << 8) | colours[q];
      } else {
        const px = out[p];
        const red = ((px & 0xff) * keep + colours[q] * alpha) | 0;
        const green = (((px >> 8) & 0xff) * keep + colours[q + 1] * alpha) | 0;
        const blue = (((px >> 16) & 0xff) * keep + colours[q + 2] * alpha) | 0;
        out[p] = 0xff000000 | (blue << 16) | (green << 8) | red;
      }
    }
  }
}
