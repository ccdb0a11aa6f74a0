// The first window (node --test): percentiles of the foreground, and the whole range when the foreground is flat.
import { test } from "node:test";
import assert from "node:assert/strict";
import { autoWindow, sortedSample } from "../../viewer/component/js/intensity.js";

test("auto window spans the 0.5-99.5 percentiles of voxels above the minimum", () => {
  const data = new Float32Array(1001).map((_, n) => (n === 0 ? -5 : n)); // background -5, foreground 1..1000
  const { width, level } = autoWindow(sortedSample(data));
  // 0.5th and 99.5th percentile of 1..1000 by linear interpolation: 1 + 999 * 0.005 and 1 + 999 * 0.995
  assert.ok(Math.abs(level - width / 2 - 5.995) < 1e-3 && Math.abs(level + width / 2 - 995.005) < 1e-3);
});

test("a flat foreground (bright dots on a flat background) gets the whole range, so the dots show", () => {
  const data = new Int16Array(10_000).fill(100);
  for (const n of [10, 20, 30, 40]) data[n] = 1000;
  const { width, level } = autoWindow(sortedSample(data));
  assert.equal(level - width / 2, 100);
  assert.equal(level + width / 2, 1000);
  assert.equal(autoWindow(sortedSample(new Int16Array(8).fill(7))).width, 1); // constant image: still a window
});
