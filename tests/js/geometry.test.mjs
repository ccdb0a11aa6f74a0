// Unit tests of the viewer's plane geometry, without a browser: `node --test tests/js/`
// (run from pytest by tests/test_viewer_geometry.py). Expected values come from the anatomical
// conventions written out by hand, not from the module under test.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  gridWalk,
  invert4,
  isAxisAligned,
  multiply4,
  niceLength,
  pixelOf,
  planeLayout,
  sliceWalk,
  voxelAt,
  voxelAxes,
  volumeGeometry,
  worldOf,
} from "../../viewer/component/js/geometry.js";

const RAS = [
  [1, 0, 0, -98],
  [0, 1, 0, -134],
  [0, 0, 1, -72],
  [0, 0, 0, 1],
];

function close(a, b, eps = 1e-9) {
  assert.equal(a.length, b.length);
  a.forEach((x, n) => assert.ok(Math.abs(x - b[n]) <= eps, `${a} != ${b}`));
}

test("RAS volume: radiological axial has R on screen left, A on top", () => {
  const g = volumeGeometry([4, 5, 6], RAS);
  const axial = planeLayout(g, "axial", true);
  assert.deepEqual(axial.labels, { left: "R", right: "L", top: "A", bottom: "P" });
  // The left-most pixel column must lie further to the patient's right (larger world x) than the right-most.
  const left = worldOf(g, voxelAt(g, axial, 2, 0.5, 2.5));
  const right = worldOf(g, voxelAt(g, axial, 2, axial.width - 0.5, 2.5));
  assert.ok(left[0] > right[0]);
  // Top row is anterior (larger y).
  const top = worldOf(g, voxelAt(g, axial, 2, 1.5, 0.5));
  const bottom = worldOf(g, voxelAt(g, axial, 2, 1.5, axial.height - 0.5));
  assert.ok(top[1] > bottom[1]);
  assert.equal(axial.sliceAxis, 2);
  assert.deepEqual([axial.width, axial.height], [4, 5]);
});

test("neurological flips only the left-right axis", () => {
  const g = volumeGeometry([4, 5, 6], RAS);
  for (const plane of ["axial", "coronal"]) {
    const rad = planeLayout(g, plane, true);
    const neuro = planeLayout(g, plane, false);
    assert.equal(rad.labels.left, "R");
    assert.equal(neuro.labels.left, "L");
    assert.equal(rad.x.dir, -neuro.x.dir);
    assert.deepEqual(rad.y, neuro.y);
  }
  assert.deepEqual(planeLayout(g, "sagittal", true), planeLayout(g, "sagittal", false));
});

test("coronal: superior up; sagittal: anterior left, superior up", () => {
  const g = volumeGeometry([4, 5, 6], RAS);
  const coronal = planeLayout(g, "coronal", true);
  assert.deepEqual([coronal.labels.top, coronal.labels.bottom], ["S", "I"]);
  assert.equal(coronal.sliceAxis, 1);
  const sagittal = planeLayout(g, "sagittal", true);
  assert.deepEqual(sagittal.labels, { left: "A", right: "P", top: "S", bottom: "I" });
  const a = worldOf(g, voxelAt(g, sagittal, 1, 0.5, 0.5));
  const p = worldOf(g, voxelAt(g, sagittal, 1, sagittal.width - 0.5, sagittal.height - 0.5));
  assert.ok(a[1] > p[1] && a[2] > p[2]);
});

test("LPS-stored and permuted volumes land in the same anatomical places", () => {
  // Voxel axes: 0 runs toward Superior, 1 toward Left (x decreasing), 2 toward Posterior.
  const affine = [
    [0, -0.8, 0, 100],
    [0, 0, -0.9, 90],
    [2, 0, 0, -50],
    [0, 0, 0, 1],
  ];
  const g = volumeGeometry([30, 40, 50], affine);
  assert.deepEqual(voxelAxes(affine), [
    { world: 2, sign: 1 },
    { world: 0, sign: -1 },
    { world: 1, sign: -1 },
  ]);
  const axial = planeLayout(g, "axial", true);
  assert.equal(axial.sliceAxis, 0);
  assert.deepEqual([axial.width, axial.height, axial.mmX, axial.mmY], [40, 50, 0.8, 0.9]);
  const left = worldOf(g, voxelAt(g, axial, 10, 0.5, 20.5));
  const right = worldOf(g, voxelAt(g, axial, 10, 39.5, 20.5));
  assert.ok(left[0] > right[0], "radiological: patient right on screen left");
  const top = worldOf(g, voxelAt(g, axial, 10, 5.5, 0.5));
  const bottom = worldOf(g, voxelAt(g, axial, 10, 5.5, 49.5));
  assert.ok(top[1] > bottom[1], "anterior up");
  const sagittal = planeLayout(g, "sagittal", false);
  assert.equal(sagittal.sliceAxis, 1);
  const up = worldOf(g, voxelAt(g, sagittal, 3, 1.5, 0.5));
  const down = worldOf(g, voxelAt(g, sagittal, 3, 1.5, 29.5));
  assert.ok(up[2] > down[2], "superior up");
});

test("oblique affines use the closest axes and are reported as oblique", () => {
  const t = (20 * Math.PI) / 180;
  const affine = [
    [Math.cos(t), -Math.sin(t), 0, 0],
    [Math.sin(t), Math.cos(t), 0, 0],
    [0, 0, 1.5, 0],
    [0, 0, 0, 1],
  ];
  assert.equal(isAxisAligned(affine), false);
  assert.equal(isAxisAligned(RAS), true);
  const g = volumeGeometry([10, 10, 10], affine);
  assert.deepEqual(planeLayout(g, "axial", true).labels, { left: "R", right: "L", top: "A", bottom: "P" });
  assert.deepEqual(g.spacing.map((s) => Math.round(s * 1e6) / 1e6), [1, 1, 1.5]);
});

test("pixelOf inverts voxelAt and sliceWalk agrees with the strides", () => {
  const affine = [
    [-0.7, 0, 0, 10],
    [0, 0.7, 0, -20],
    [0, 0, 1.2, 5],
    [0, 0, 0, 1],
  ];
  const g = volumeGeometry([7, 9, 11], affine);
  for (const plane of g.planes) {
    for (const rad of [true, false]) {
      const layout = planeLayout(g, plane, rad);
      const slice = 3;
      const walk = sliceWalk(g, layout, slice);
      for (const [c, r] of [
        [0, 0],
        [2, 5],
        [layout.width - 1, layout.height - 1],
      ]) {
        const v = voxelAt(g, layout, slice, c + 0.5, r + 0.5);
        close(pixelOf(g, layout, v), [c + 0.5, r + 0.5]);
        const index = v[0] + 7 * (v[1] + 9 * v[2]);
        assert.equal(walk.base + c * walk.dx + r * walk.dy, index);
        v.forEach((x) => assert.ok(Number.isInteger(x) && x >= 0));
      }
    }
  }
});

test("gridWalk gives another grid's voxel coordinates through both affines", () => {
  const g = volumeGeometry([20, 24, 16], RAS);
  // A 4x coarser map grid offset by half a voxel, as a model grid would be.
  const mapAffine = [
    [4, 0, 0, -96.5],
    [0, 4, 0, -132.5],
    [0, 0, 4, -70.5],
    [0, 0, 0, 1],
  ];
  const layout = planeLayout(g, "coronal", true);
  const walk = sliceWalk(g, layout, 7);
  const grid = gridWalk(g, walk, invert4(mapAffine));
  for (const [c, r] of [
    [0, 0],
    [5, 3],
    [19, 15],
  ]) {
    const world = worldOf(g, voxelAt(g, layout, 7, c + 0.5, r + 0.5));
    const expected = [0, 1, 2].map((a) => (world[a] - mapAffine[a][3]) / 4);
    close([0, 1, 2].map((a) => grid.m0[a] + c * grid.mx[a] + r * grid.my[a]), expected);
  }
});

test("2D images: i along a row, j down the rows, row 0 on top", () => {
  const g = volumeGeometry([64, 48], RAS);
  assert.deepEqual(g.planes, ["image"]);
  const layout = planeLayout(g, "image", true);
  assert.deepEqual([layout.x, layout.y, layout.width, layout.height], [{ axis: 0, dir: 1 }, { axis: 1, dir: 1 }, 64, 48]);
  const walk = sliceWalk(g, layout, 0);
  assert.deepEqual([walk.base, walk.dx, walk.dy], [0, 1, 64]);
});

test("invert4 and niceLength", () => {
  const m = [
    [0, -0.8, 0.1, 100],
    [0.2, 0, -0.9, 90],
    [2, 0, 0, -50],
    [0, 0, 0, 1],
  ];
  const id = multiply4(m, invert4(m));
  id.forEach((row, r) => close(row, [0, 1, 2, 3].map((c) => (r === c ? 1 : 0)), 1e-12));
  assert.throws(() => invert4([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]));
  assert.equal(niceLength(43), 50);
  assert.equal(niceLength(17), 20);
  assert.equal(niceLength(0.9), 1);
  assert.equal(niceLength(120), 100);
});
