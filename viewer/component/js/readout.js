// The readout line: where the cursor (or the crosshair) is, in world millimetres and file voxel indices,
// the image value there, the map's value (0..1 of its peak, trilinear like the overlay) and its raw value,
// and the mask label.

import { voxelIndex, worldOf } from "./geometry.js";
import { insideGrid, sampleNearest, sampleTrilinear } from "./sampling.js";
import { formatRaw } from "./legend.js";

function applyRows(m, p) {
  return [0, 1, 2].map((r) => m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3]);
}

function formatValue(value) {
  return Number.isInteger(value) ? String(value) : value.toPrecision(5);
}

/** Text for voxel position `voxel` (continuous; rounded for the image value). */
export function readoutText(viewer, voxel, map, where) {
  const { geom, anatomy } = viewer;
  const index = voxelIndex(geom, voxel);
  const [i, j, k] = index;
  const value = anatomy.data[i + geom.dims[0] * (j + geom.dims[1] * k)] * anatomy.scale + anatomy.inter;
  const world = worldOf(geom, voxel);
  const voxelText = geom.is2d ? `${i}, ${j}` : index.join(", ");
  const parts = [`${where}: ${world.map((x) => x.toFixed(1)).join(", ")} mm`, `voxel ${voxelText}`, `value ${formatValue(value)}`];
  if (map) {
    const m = applyRows(map.inverse, world);
    if (insideGrid(map.dims, m)) {
      const fraction = sampleTrilinear(map.data, map.dims, m) / 255;
      parts.push(`map ${fraction.toFixed(3)} (raw ${formatRaw(fraction * map.peak)})`);
    } else parts.push("map: outside its grid");
  }
  const mask = viewer.mask.shown;
  if (mask && viewer.s.mask) {
    const name = viewer.mask.labelName(sampleNearest(mask.data, mask.dims, applyRows(mask.inverse, world)));
    if (name) parts.push(name);
  }
  return parts.join(" · ");
}
