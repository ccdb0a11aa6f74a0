// Slice composition: grey levels, the map resampled trilinearly from its own grid, threshold, mask outline.
import { test } from "node:test";
import assert from "node:assert/strict";

import { acrossAxis0Strides, composeSlice, greyTable, reorderAcrossAxis0 } from "../../viewer/component/js/compose.js";
import { sampleTrilinear } from "../../viewer/component/js/sampling.js";
import { gridWalk, invert4, planeLayout, sliceWalk, volumeGeometry } from "../../viewer/component/js/geometry.js";

const ID = [
  [1, 0, 0, 0],
  [0, 1, 0, 0],
  [0, 0, 1, 0],
  [0, 0, 0, 1],
];
const rgb = (px) => [px & 0xff, (px >> 8) & 0xff, (px >> 16) & 0xff];

function setup() {
  const geom = volumeGeometry([8, 8, 8], ID);
  const data = new Int16Array(512).map((_, n) => n % 8); // value = i
  const layout = planeLayout(geom, "axial", false); // neurological: column c = voxel i, row r = voxel 7 - j
  const walk = sliceWalk(geom, layout, 4);
  return { geom, data, layout, walk };
}

test("anatomy grey levels follow the window, with or without the integer lookup table", () => {
  const { data, walk } = setup();
  for (const table of [null, greyTable(data, 255 / 7, 0)]) {
    const out = new Uint32Array(64);
    composeSlice(out, 8, 8, { data, walk, gain: 255 / 7, bias: 0, lut: table?.lut, lutOffset: table?.offset }, null, null, null);
    for (let c = 0; c < 8; c++) assert.deepEqual(rgb(out[c]), Array(3).fill(Math.floor((c * 255) / 7)));
  }
  assert.equal(greyTable(new Float32Array(1), 1, 0), null);
});

test("the map is sampled trilinearly through its own affine, above the threshold only", () => {
  const { geom, data, walk } = setup();
  // A 4x4x4 map of 2 mm voxels, voxel centres at world 0.5, 2.5, ...: one hot voxel (1, 2, 2) = world (2.5, 4.5, 4.5).
  const mapAffine = [
    [2, 0, 0, 0.5],
    [0, 2, 0, 0.5],
    [0, 0, 2, 0.5],
    [0, 0, 0, 1],
  ];
  const map = new Uint8Array(64);
  map[1 + 4 * 2 + 16 * 2] = 255;
  const lut = new Uint8Array(768).fill(0);
  for (let q = 0; q < 256; q++) lut[3 * q] = 255; // pure red
  const grid = gridWalk(geom, walk, invert4(mapAffine));
  const out = new Uint32Array(64);
  composeSlice(out, 8, 8, { data, walk, gain: 0, bias: 0 }, { data: map, dims: [4, 4, 4], grid, lut, alpha: 1, threshold: 100 }, null, null);
  // Expected by hand: pixel (c, r) is voxel (c, 7 - r, 4) = world (c, 7 - r, 4); map coords ((c - 0.5) / 2, ...).
  for (let r = 0; r < 8; r++) {
    for (let c = 0; c < 8; c++) {
      const m = [(c - 0.5) / 2, (7 - r - 0.5) / 2, (4 - 0.5) / 2];
      const value = sampleTrilinear(map, [4, 4, 4], m);
      const [red] = rgb(out[r * 8 + c]);
      assert.equal(red, value >= 100 ? 255 : 0, `pixel ${c}, ${r}: map ${value}`);
    }
  }
  // The hottest pixels are the two nearest the hot voxel's centre (world x 2.5 -> columns 2 and 3; y 4.5 -> rows 2, 3).
  const hot = [...out.keys()].filter((p) => rgb(out[p])[0] === 255).map((p) => [p % 8, Math.floor(p / 8)]);
  assert.ok(hot.length > 0 && hot.every(([c, r]) => c >= 1 && c <= 4 && r >= 1 && r <= 4), JSON.stringify(hot));
  // Hand check of the interpolation itself: halfway between two voxels of 255 and 0 is 127.5.
  const line = new Uint8Array([255, 0]);
  assert.equal(sampleTrilinear(line, [2, 1, 1], [0.5, 0, 0]), 127.5);
});

test("mask outline marks the label's border, not its inside", () => {
  const { geom, data, walk } = setup();
  const labels = new Uint8Array(512);
  for (let i = 2; i <= 4; i++) for (let j = 2; j <= 4; j++) labels[i + 8 * j + 64 * 4] = 1;
  const colours = new Uint8Array(768);
  colours.set([0, 255, 0], 3);
  const grid = gridWalk(geom, walk, invert4(ID));
  const out = new Uint32Array(64);
  const scratch = new Uint8Array(64);
  composeSlice(out, 8, 8, { data, walk, gain: 0, bias: 0 }, null, { data: labels, dims: [8, 8, 8], grid, colours, alpha: 1, outline: true, binaryAt: null }, scratch);
  const green = (c, r) => rgb(out[r * 8 + c])[1] === 255;
  // voxel (i, j) is at column i, row 7 - j: the square covers columns 2..4, rows 3..5.
  assert.ok(green(2, 3) && green(4, 5) && green(3, 3));
  assert.ok(!green(3, 4), "the centre of the square is not outlined");
  assert.ok(!green(1, 4) && !green(5, 4), "outside stays untouched");
  // The general (oblique) path agrees with the axis-aligned one.
  const skewed = { ...grid, mx: grid.mx.map((v) => v || 1e-9) };
  const again = new Uint32Array(64);
  composeSlice(again, 8, 8, { data, walk, gain: 0, bias: 0 }, null, { data: labels, dims: [8, 8, 8], grid: skewed, colours, alpha: 1, outline: true, binaryAt: null }, scratch);
  assert.deepEqual(Array.from(again), Array.from(out));
});

test("the separable path (axis-aligned grids) gives the same image as full trilinear", () => {
  const geom = volumeGeometry([40, 30, 20], ID);
  const data = new Int16Array(40 * 30 * 20).fill(100);
  const map = Uint8Array.from({ length: 7 * 6 * 5 }, (_, n) => (n * 37) % 256);
  const mapAffine = [
    [6.1, 0, 0, -2],
    [0, 5.2, 0, 1],
    [0, 0, 4.3, 0.5],
    [0, 0, 0, 1],
  ];
  const lut = Uint8Array.from({ length: 768 }, (_, n) => n % 256);
  for (const plane of geom.planes) {
    const layout = planeLayout(geom, plane, true);
    const walk = sliceWalk(geom, layout, 7);
    const grid = gridWalk(geom, walk, invert4(mapAffine));
    const skewed = { ...grid, mx: grid.mx.map((v, a) => (Math.abs(v) > 0 ? v : 1e-8 * (a + 1))) }; // forces the general path
    const run = (g) => {
      const out = new Uint32Array(layout.width * layout.height);
      composeSlice(out, layout.width, layout.height, { data, walk, gain: 1, bias: 0 }, { data: map, dims: [7, 6, 5], grid: g, lut, alpha: 0.7, threshold: 30 }, null, null);
      return out;
    };
    const [fast, slow] = [run(grid), run(skewed)];
    let worst = 0;
    for (let p = 0; p < fast.length; p++) for (const shift of [0, 8, 16]) worst = Math.max(worst, Math.abs(((fast[p] >> shift) & 0xff) - ((slow[p] >> shift) & 0xff)));
    assert.ok(worst <= 1, `${plane}: colours differ by ${worst}`);
  }
});

test("the reordered copy for slices across axis 0 shows the same sagittal image", () => {
  const dims = [9, 7, 5];
  const geom = volumeGeometry(dims, ID);
  const data = Int16Array.from({ length: 9 * 7 * 5 }, (_, n) => (n * 7919) % 1000);
  const copy = new Int16Array(data.length);
  reorderAcrossAxis0(data, copy, dims, 0, 4);
  reorderAcrossAxis0(data, copy, dims, 4, 9); // in chunks, as the viewer builds it
  const reordered = { ...geom, strides: acrossAxis0Strides(dims) };
  const layout = planeLayout(geom, "sagittal", true);
  for (const slice of [0, 4, 8]) {
    const render = (g, d) => {
      const out = new Uint32Array(layout.width * layout.height);
      composeSlice(out, layout.width, layout.height, { data: d, walk: sliceWalk(g, layout, slice), gain: 0.25, bias: 0 }, null, null, null);
      return Array.from(out);
    };
    assert.deepEqual(render(reordered, copy), render(geom, data));
  }
  assert.deepEqual(sliceWalk(reordered, layout, 3).dx, -1); // contiguous along the row (anterior left)
});
