// Sampling another grid along a pane's pixels: which columns of a row fall inside it, trilinear and nearest
// values at a point, and the shared scratch buffers of the row-by-row samplers (compose.js, overlay.js).

/** Columns [from, to] of row r whose grid coordinates lie inside [-0.5, n - 0.5] on every axis. */
export function insideColumns(grid, dims, r, width) {
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
 * When a pane's columns run along one axis of the other grid and its rows along another (any axis-aligned
 * pair of affines: the usual case), return those axes; trilinear sampling is then separable.
 */
export function alignedAxes(grid) {
  const along = (v) => {
    const axes = [0, 1, 2].filter((a) => Math.abs(v[a]) > 1e-9);
    return axes.length === 1 ? axes[0] : -1;
  };
  const a = along(grid.mx);
  const b = along(grid.my);
  return a >= 0 && b >= 0 && a !== b ? { a, b, c: 3 - a - b } : null;
}

// Scratch buffers reused across calls (a slice step allocates nothing), grown as needed.
const buffers = {
  columnIndex: new Int32Array(0),
  columnNext: new Int32Array(0),
  columnWeight: new Float32Array(0),
  rowValues: new Float32Array(0),
};

export function scratch(width, along) {
  if (buffers.columnIndex.length < width) {
    buffers.columnIndex = new Int32Array(width);
    buffers.columnNext = new Int32Array(width);
    buffers.columnWeight = new Float32Array(width);
  }
  if (buffers.rowValues.length < along) buffers.rowValues = new Float32Array(along);
  return buffers;
}

/** Index, next index and weight of a clamped linear coordinate (voxel centres at integers). */
export function split(v, n) {
  const x = v < 0 ? 0 : v > n - 1 ? n - 1 : v;
  const i = Math.floor(x);
  return [i, i < n - 1 ? i + 1 : i, x - i];
}
