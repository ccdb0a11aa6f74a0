// Plane geometry, stated once for the whole viewer (rendering, pointer picking, crosshair, readout, export)
// and unit-tested with `node --test` (tests/js/geometry.test.mjs).
//
// Coordinates:
//   voxel  (i, j, k): indices into the array as stored, i fastest (index = i + n0 * (j + n1 * k)).
//   world  (x, y, z): millimetres, RAS+ (x toward the patient's Right, y Anterior, z Superior),
//                     world = affine · [i, j, k, 1].
//   pixel  (x, y):    a pane's image, one pixel per voxel of the slice; pixel (c, r) covers
//                     [c, c + 1) x [r, r + 1), so its centre is (c + 0.5, r + 0.5). Row 0 is the top.
//
// Each plane is drawn in the voxel plane closest to it ("closest-axis display"): for an axis-aligned affine
// this is exact (a permutation and flips, done with strides); for an oblique affine the pane shows the voxel
// grid as stored and labels it with the nearest anatomical directions, while the readout and the map overlay
// still go through the exact affine. Nothing is resampled, so no voxel is invented or lost.

export const PLANES_3D = ["axial", "coronal", "sagittal"];
export const PLANES_2D = ["image"];

// What a viewer expects on screen, in world terms: [world axis, direction] of screen +x (left to right) and
// screen +y (top to bottom), and the world axis the slice is taken across. Neurological convention; the
// radiological convention (patient's right on screen left) flips the R/L axis of the axial and coronal panes.
const CONVENTION = {
  axial: { x: [0, +1], y: [1, -1], normal: 2 }, // anterior up
  coronal: { x: [0, +1], y: [2, -1], normal: 1 }, // superior up
  sagittal: { x: [1, -1], y: [2, -1], normal: 0 }, // anterior left, superior up
};
const LETTERS = [
  ["L", "R"],
  ["P", "A"],
  ["I", "S"],
]; // [negative, positive] end of each world axis

/** Invert a 4x4 matrix given as rows ([[a, b, c, d], ...]); throws on a singular matrix. */
export function invert4(m) {
  const a = m.flat();
  const inv = new Array(16);
  inv[0] = a[5] * a[10] * a[15] - a[5] * a[11] * a[14] - a[9] * a[6] * a[15] + a[9] * a[7] * a[14] + a[13] * a[6] * a[11] - a[13] * a[7] * a[10];
  inv[4] = -a[4] * a[10] * a[15] + a[4] * a[11] * a[14] + a[8] * a[6] * a[15] - a[8] * a[7] * a[14] - a[12] * a[6] * a[11] + a[12] * a[7] * a[10];
  inv[8] = a[4] * a[9] * a[15] - a[4] * a[11] * a[13] - a[8] * a[5] * a[15] + a[8] * a[7] * a[13] + a[12] * a[5] * a[11] - a[12] * a[7] * a[9];
  inv[12] = -a[4] * a[9] * a[14] + a[4] * a[10] * a[13] + a[8] * a[5] * a[14] - a[8] * a[6] * a[13] - a[12] * a[5] * a[10] + a[12] * a[6] * a[9];
  inv[1] = -a[1] * a[10] * a[15] + a[1] * a[11] * a[14] + a[9] * a[2] * a[15] - a[9] * a[3] * a[14] - a[13] * a[2] * a[11] + a[13] * a[3] * a[10];
  inv[5] = a[0] * a[10] * a[15] - a[0] * a[11] * a[14] - a[8] * a[2] * a[15] + a[8] * a[3] * a[14] + a[12] * a[2] * a[11] - a[12] * a[3] * a[10];
  inv[9] = -a[0] * a[9] * a[15] + a[0] * a[11] * a[13] + a[8] * a[1] * a[15] - a[8] * a[3] * a[13] - a[12] * a[1] * a[11] + a[12] * a[3] * a[9];
  inv[13] = a[0] * a[9] * a[14] - a[0] * a[10] * a[13] - a[8] * a[1] * a[14] + a[8] * a[2] * a[13] + a[12] * a[1] * a[10] - a[12] * a[2] * a[9];
  inv[2] = a[1] * a[6] * a[15] - a[1] * a[7] * a[14] - a[5] * a[2] * a[15] + a[5] * a[3] * a[14] + a[13] * a[2] * a[7] - a[13] * a[3] * a[6];
  inv[6] = -a[0] * a[6] * a[15] + a[0] * a[7] * a[14] + a[4] * a[2] * a[15] - a[4] * a[3] * a[14] - a[12] * a[2] * a[7] + a[12] * a[3] * a[6];
  inv[10] = a[0] * a[5] * a[15] - a[0] * a[7] * a[13] - a[4] * a[1] * a[15] + a[4] * a[3] * a[13] + a[12] * a[1] * a[7] - a[12] * a[3] * a[5];
  inv[14] = -a[0] * a[5] * a[14] + a[0] * a[6] * a[13] + a[4] * a[1] * a[14] - a[4] * a[2] * a[13] - a[12] * a[1] * a[6] + a[12] * a[2] * a[5];
  inv[3] = -a[1] * a[6] * a[11] + a[1] * a[7] * a[10] + a[5] * a[2] * a[11] - a[5] * a[3] * a[10] - a[9] * a[2] * a[7] + a[9] * a[3] * a[6];
  inv[7] = a[0] * a[6] * a[11] - a[0] * a[7] * a[10] - a[4] * a[2] * a[11] + a[4] * a[3] * a[10] + a[8] * a[2] * a[7] - a[8] * a[3] * a[6];
  inv[11] = -a[0] * a[5] * a[11] + a[0] * a[7] * a[9] + a[4] * a[1] * a[11] - a[4] * a[3] * a[9] - a[8] * a[1] * a[7] + a[8] * a[3] * a[5];
  inv[15] = a[0] * a[5] * a[10] - a[0] * a[6] * a[9] - a[4] * a[1] * a[10] + a[4] * a[2] * a[9] + a[8] * a[1] * a[6] - a[8] * a[2] * a[5];
  const det = a[0] * inv[0] + a[1] * inv[4] + a[2] * inv[8] + a[3] * inv[12];
  if (!det || !Number.isFinite(det)) throw new Error("the affine is singular");
  return [0, 1, 2, 3].map((r) => [0, 1, 2, 3].map((c) => inv[r * 4 + c] / det));
}

/** Product of two 4x4 matrices (rows). */
export function multiply4(a, b) {
  return [0, 1, 2, 3].map((r) => [0, 1, 2, 3].map((c) => a[r][0] * b[0][c] + a[r][1] * b[1][c] + a[r][2] * b[2][c] + a[r][3] * b[3][c]));
}

/** Apply a 4x4 matrix to a point [x, y, z]. */
export function apply4(m, p) {
  return [0, 1, 2].map((r) => m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3]);
}

/** Apply the linear part only (a direction, not a point). */
export function applyLinear(m, d) {
  return [0, 1, 2].map((r) => m[r][0] * d[0] + m[r][1] * d[1] + m[r][2] * d[2]);
}

/**
 * Closest world axis and direction of each voxel axis: `axes[a] = {world, sign}`. Greedy on the largest
 * remaining |affine| entry, as nibabel's io_orientation, so the assignment is a permutation even when oblique.
 */
export function voxelAxes(affine) {
  const axes = [null, null, null];
  const freeWorld = new Set([0, 1, 2]);
  const freeVoxel = new Set([0, 1, 2]);
  while (freeVoxel.size) {
    let best = null;
    for (const a of freeVoxel) {
      for (const w of freeWorld) {
        const v = affine[w][a];
        if (!best || Math.abs(v) > Math.abs(best.v)) best = { a, w, v };
      }
    }
    axes[best.a] = { world: best.w, sign: best.v < 0 ? -1 : 1 };
    freeVoxel.delete(best.a);
    freeWorld.delete(best.w);
  }
  return axes;
}

/** Voxel size (mm) along each voxel axis: the column norms of the affine. */
export function spacingOf(affine) {
  return [0, 1, 2].map((a) => Math.hypot(affine[0][a], affine[1][a], affine[2][a]));
}

/** True when every voxel axis lies along a world axis (a pure permutation with flips and scaling). */
export function isAxisAligned(affine, tolerance = 1e-6) {
  const axes = voxelAxes(affine);
  return axes.every(({ world }, a) => [0, 1, 2].every((w) => w === world || Math.abs(affine[w][a]) <= tolerance * spacingOf(affine)[a]));
}

/**
 * Everything fixed for one volume: shape (3 numbers; a 2D image has shape [nx, ny, 1] and is2d), affine,
 * its inverse, strides, voxel axes and spacing. `shape` may be given with 2 entries for a 2D image.
 */
export function volumeGeometry(shape, affine) {
  const is2d = shape.length === 2;
  const dims = is2d ? [shape[0], shape[1], 1] : shape.slice(0, 3);
  return {
    dims,
    is2d,
    affine,
    inverse: invert4(affine),
    strides: [1, dims[0], dims[0] * dims[1]],
    axes: voxelAxes(affine),
    spacing: spacingOf(affine),
    planes: is2d ? PLANES_2D : PLANES_3D,
  };
}

/**
 * How one plane is laid out on screen: for screen x and y, the voxel axis and the direction (+1: the voxel
 * index grows to the right / downward), the axis the slice is taken across, the pixel size in mm, and the
 * orientation letters at the four edges.
 */
export function planeLayout(geom, plane, radiological) {
  if (plane === "image") {
    // 2D images as stored: i along a row, j down the rows, row 0 at the top; no anatomical labels.
    return { plane, x: { axis: 0, dir: 1 }, y: { axis: 1, dir: 1 }, sliceAxis: 2, labels: { left: "", right: "", top: "", bottom: "" }, ...sizes(geom, 0, 1) };
  }
  const want = CONVENTION[plane];
  const xWorld = [want.x[0], want.x[1] * (radiological && want.x[0] === 0 ? -1 : 1)];
  const screenAxis = ([world, direction]) => {
    const axis = geom.axes.findIndex((a) => a.world === world);
    return { axis, dir: direction * geom.axes[axis].sign, world, direction };
  };
  const x = screenAxis(xWorld);
  const y = screenAxis(want.y);
  const sliceAxis = geom.axes.findIndex((a) => a.world === want.normal);
  const letter = (world, direction) => LETTERS[world][direction > 0 ? 1 : 0];
  const labels = {
    left: letter(x.world, -x.direction),
    right: letter(x.world, x.direction),
    top: letter(y.world, -y.direction),
    bottom: letter(y.world, y.direction),
  };
  return { plane, x: { axis: x.axis, dir: x.dir }, y: { axis: y.axis, dir: y.dir }, sliceAxis, labels, ...sizes(geom, x.axis, y.axis) };
}

function sizes(geom, xAxis, yAxis) {
  return { width: geom.dims[xAxis], height: geom.dims[yAxis], mmX: geom.spacing[xAxis], mmY: geom.spacing[yAxis] };
}

/** Voxel index along `axis` shown at pixel coordinate `p` (continuous; pixel centres at p + 0.5). */
function voxelCoord(n, dir, p) {
  return dir > 0 ? p - 0.5 : n - 0.5 - p;
}

/** Continuous voxel coordinates under pixel position (x, y) of a pane showing `slice`. */
export function voxelAt(geom, layout, slice, x, y) {
  const v = [0, 0, 0];
  v[layout.x.axis] = voxelCoord(geom.dims[layout.x.axis], layout.x.dir, x);
  v[layout.y.axis] = voxelCoord(geom.dims[layout.y.axis], layout.y.dir, y);
  v[layout.sliceAxis] = slice;
  return v;
}

/** Pixel position (x, y) of a voxel's centre in a pane (inverse of voxelAt in-plane). */
export function pixelOf(geom, layout, voxel) {
  const pos = (axis, dir) => (dir > 0 ? voxel[axis] + 0.5 : geom.dims[axis] - 0.5 - voxel[axis]);
  return [pos(layout.x.axis, layout.x.dir), pos(layout.y.axis, layout.y.dir)];
}

/**
 * The slice as strided memory: linear index of pixel (0, 0) and the index step per column and per row, plus
 * the same in continuous voxel coordinates (origin = centre of pixel (0, 0); stepX, stepY = per pixel).
 */
export function sliceWalk(geom, layout, slice) {
  const origin = voxelAt(geom, layout, slice, 0.5, 0.5);
  const stepX = [0, 0, 0];
  const stepY = [0, 0, 0];
  stepX[layout.x.axis] = layout.x.dir;
  stepY[layout.y.axis] = layout.y.dir;
  const s = geom.strides;
  return {
    base: origin[0] * s[0] + origin[1] * s[1] + origin[2] * s[2],
    dx: layout.x.dir * s[layout.x.axis],
    dy: layout.y.dir * s[layout.y.axis],
    origin,
    stepX,
    stepY,
  };
}

/**
 * Coordinates in another grid (a map or mask with its own affine) along a pane's pixels:
 * at pixel (c, r) they are `m0 + c * mx + r * my` (continuous voxel coordinates of that grid).
 */
export function gridWalk(geom, walk, otherInverseAffine) {
  const toOther = multiply4(otherInverseAffine, geom.affine);
  return { m0: apply4(toOther, walk.origin), mx: applyLinear(toOther, walk.stepX), my: applyLinear(toOther, walk.stepY) };
}

/** World (mm) of a voxel position, and back. */
export function worldOf(geom, voxel) {
  return apply4(geom.affine, voxel);
}

export function voxelOfWorld(geom, world) {
  return apply4(geom.inverse, world);
}

/** Clamp and round a continuous voxel position to an index inside the volume. */
export function voxelIndex(geom, voxel) {
  return voxel.map((v, a) => Math.max(0, Math.min(geom.dims[a] - 1, Math.round(v))));
}

/** A "nice" scale-bar length (1, 2 or 5 x 10^n mm) close to `targetMm`. */
export function niceLength(targetMm) {
  if (!(targetMm > 0)) return 0;
  const power = 10 ** Math.floor(Math.log10(targetMm));
  const steps = [1, 2, 5, 10];
  return power * steps.reduce((best, s) => (Math.abs(s * power - targetMm) < Math.abs(best * power - targetMm) ? s : best), 1);
}
