// Distances in world mm through an oblique, anisotropic affine, against values worked out by hand.
import { test } from "node:test";
import assert from "node:assert/strict";

import { volumeGeometry } from "../../viewer/component/js/geometry.js";
import { distanceMm, formatMm } from "../../viewer/component/js/measure.js";

// Voxel axes: i is 0.5 mm along (cos 30°, sin 30°, 0); j is 2 mm along (-sin 30°, cos 30°, 0); k is 3 mm along z.
const c = Math.cos(Math.PI / 6);
const s = Math.sin(Math.PI / 6);
const OBLIQUE = [
  [0.5 * c, -2 * s, 0, 10],
  [0.5 * s, 2 * c, 0, -20],
  [0, 0, 3, 5],
  [0, 0, 0, 1],
];

test("a step along each voxel axis measures that axis's spacing, whatever the rotation", () => {
  const geom = volumeGeometry([40, 30, 20], OBLIQUE);
  assert.ok(Math.abs(distanceMm(geom, [0, 0, 0], [10, 0, 0]) - 5) < 1e-9); // 10 voxels of 0.5 mm
  assert.ok(Math.abs(distanceMm(geom, [3, 4, 5], [3, 7, 5]) - 6) < 1e-9); // 3 voxels of 2 mm
  assert.ok(Math.abs(distanceMm(geom, [3, 4, 5], [3, 4, 9]) - 12) < 1e-9); // 4 voxels of 3 mm
});

test("a diagonal is Pythagoras in mm, not in voxels", () => {
  const geom = volumeGeometry([40, 30, 20], OBLIQUE);
  // 6 voxels along i (3 mm) and 2 along j (4 mm), orthogonal axes: 5 mm; in voxels it would be sqrt(40).
  assert.ok(Math.abs(distanceMm(geom, [1, 1, 2], [7, 3, 2]) - 5) < 1e-9);
  // with 1 voxel along k too (3 mm): sqrt(9 + 16 + 9)
  assert.ok(Math.abs(distanceMm(geom, [1, 1, 2], [7, 3, 3]) - Math.sqrt(34)) < 1e-9);
  // sub-voxel ends (clicks land between voxel centres)
  assert.ok(Math.abs(distanceMm(geom, [0.25, 0, 0], [0.75, 0, 0]) - 0.25) < 1e-9);
});

test("lengths are written with sensible precision", () => {
  assert.equal(formatMm(4.26), "4.3 mm");
  assert.equal(formatMm(123.4), "123 mm");
});
