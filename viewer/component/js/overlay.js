// The overlays of a pane: the map (trilinear through its own affine, coloured above the threshold) and the
// mask (nearest voxel, outline or fill). Both write into the packed pixels composeSlice filled with anatomy.

import { alignedAxes, insideColumns, scratch, split } from "./sampling.js";

export function overlayMap(out, width, height, map) {
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
  const { columnIndex, columnNext, columnWeight, rowValues } = scratch(width, dims[a]);
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
    const { columnIndex } = scratch(width, 0);
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

export function overlayMask(out, width, height, mask, labels) {
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
