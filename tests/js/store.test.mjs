// The browser-side array store, run in Node (which has fetch, DecompressionStream and data: URLs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";

import { ArrayStore, fetchArray } from "../../viewer/component/js/store.js";

function dataUrl(bytes) {
  return `data:application/octet-stream;base64,${Buffer.from(bytes).toString("base64")}`;
}

test("gzip with a header to skip, little- and big-endian int16", async () => {
  const values = [1, -2, 300, -32768, 32767, 0];
  for (const endian of ["<", ">"]) {
    const body = Buffer.alloc(352 + values.length * 2 + 7); // header, voxels, trailing padding
    values.forEach((v, n) => (endian === "<" ? body.writeInt16LE(v, 352 + 2 * n) : body.writeInt16BE(v, 352 + 2 * n)));
    const desc = { url: dataUrl(gzipSync(body)), encoding: "gzip", offset: 352, dtype: "int16", endian, shape: [3, 2] };
    assert.deepEqual(Array.from(await fetchArray(desc)), values);
  }
});

test("float32 without compression, and a truncated file fails with a sentence", async () => {
  const values = new Float32Array([0.5, -1.25, 3e6]);
  const desc = { url: dataUrl(new Uint8Array(values.buffer)), encoding: "identity", offset: 0, dtype: "float32", endian: "<", shape: [3] };
  assert.deepEqual(Array.from(await fetchArray(desc)), Array.from(values));
  await assert.rejects(fetchArray({ ...desc, shape: [4] }), /ended after 12 of 16 bytes/);
});

test("least recently used arrays are evicted beyond the budget, shown ones never", async () => {
  const make = (n) => ({ url: dataUrl(new Uint8Array(100).fill(n)), encoding: "identity", offset: 0, dtype: "uint8", endian: "<", shape: [100] });
  const [a, b, c] = [make(1), make(2), make(3)];
  const store = new ArrayStore(250);
  await store.get(a);
  await store.get(b);
  store.retain("viewer", [a.url]); // a is on screen, b is not
  await store.get(c); // 300 bytes > 250: b (least recent, not shown) goes
  assert.deepEqual([...store.entries.keys()].sort(), [a.url, c.url].sort());
  store.release("viewer");
  await store.get(b);
  assert.ok(store.totalBytes() <= 250 && store.entries.has(b.url));
});
