// Arrays fetched once per URL (URLs carry a content hash), decoded and kept for the page's life, within a
// byte budget: beyond it, arrays no viewer is showing are dropped, least recently used first.
//
// A descriptor (written by viewer/publish.py) says how to read the bytes at `url`:
//   encoding "gzip" | "identity", offset (bytes to skip after decoding: a NIfTI header), dtype, endian,
//   shape, and `nbytes` (bytes on the wire). Decoding streams through the browser's DecompressionStream
//   straight into a preallocated buffer, so a volume is never held twice, and reports progress.

const TYPES = {
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
};

export const DEFAULT_BUDGET_BYTES = 1536 * 1024 * 1024;

function elementCount(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

/** The bytes of an array (complete or still loading) as the descriptor's typed array. */
export function typedView(desc, bytes) {
  return new TYPES[desc.dtype](bytes.buffer, 0, Math.floor(bytes.byteLength / TYPES[desc.dtype].BYTES_PER_ELEMENT));
}

export function decodedBytes(desc) {
  return elementCount(desc.shape) * TYPES[desc.dtype].BYTES_PER_ELEMENT;
}

function swapBytes(bytes, size) {
  for (let p = 0; p < bytes.length; p += size) {
    for (let a = p, b = p + size - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

/** Fetch and decode one array; `onProgress(fraction, bytes)` is called as data arrives. */
export async function fetchArray(desc, onProgress = () => {}) {
  const Type = TYPES[desc.dtype];
  if (!Type) throw new Error(`unsupported data type ${desc.dtype}`);
  const length = decodedBytes(desc);
  const skip = desc.offset || 0;
  const response = await fetch(desc.url);
  if (!response.ok) throw new Error(`HTTP ${response.status} for ${desc.url}`);
  let stream = response.body;
  if (desc.encoding === "gzip") stream = stream.pipeThrough(new DecompressionStream("gzip"));
  const out = new Uint8Array(length);
  const reader = stream.getReader();
  let seen = 0; // decoded bytes read so far, header included
  let lastReport = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const from = Math.max(0, skip - seen);
    const to = Math.min(value.length, skip + length - seen);
    if (to > from) out.set(value.subarray(from, to), seen + from - skip);
    seen += value.length;
    if (seen >= skip + length) {
      reader.cancel().catch(() => {}); // trailing bytes (NIfTI padding) are not ours
      break;
    }
    const now = performance.now();
    if (now - lastReport > 100) {
      lastReport = now;
      onProgress(Math.max(0, seen - skip) / length, out);
    }
  }
  if (seen < skip + length) throw new Error(`${desc.url} ended after ${seen - skip} of ${length} bytes`);
  const size = Type.BYTES_PER_ELEMENT;
  const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  if (size > 1 && (desc.endian === ">") === littleEndianHost) swapBytes(out, size);
  return typedView(desc, out);
}

/** The page-wide cache. One instance is shared by every viewer on the page. */
export class ArrayStore {
  constructor(budgetBytes = DEFAULT_BUDGET_BYTES) {
    this.budget = budgetBytes;
    this.entries = new Map(); // url -> {promise, bytes, used, partial}
    this.inUse = new Map(); // owner -> Set(url)
    this.clock = 0;
  }

  /** The decoded array for `desc` (a Promise); `onProgress` sees partial data while it loads. */
  get(desc, onProgress) {
    let entry = this.entries.get(desc.url);
    if (!entry) {
      entry = { bytes: decodedBytes(desc), used: 0, listeners: new Set() };
      entry.promise = fetchArray(desc, (fraction, partial) => {
        for (const listener of entry.listeners) listener(fraction, partial);
      });
      entry.promise.catch(() => this.entries.delete(desc.url)); // a failed fetch may be retried later
      this.entries.set(desc.url, entry);
    }
    if (onProgress) entry.listeners.add(onProgress);
    entry.used = ++this.clock;
    return entry.promise.finally(() => {
      if (onProgress) entry.listeners.delete(onProgress);
      this.evict();
    });
  }

  /** Declare which URLs `owner` shows now; they are never evicted while shown. */
  retain(owner, urls) {
    this.inUse.set(owner, new Set(urls.filter(Boolean)));
    for (const url of this.inUse.get(owner)) {
      const entry = this.entries.get(url);
      if (entry) entry.used = ++this.clock;
    }
    this.evict();
  }

  release(owner) {
    this.inUse.delete(owner);
    this.evict();
  }

  totalBytes() {
    let total = 0;
    for (const entry of this.entries.values()) total += entry.bytes;
    return total;
  }

  evict() {
    const shown = new Set();
    for (const urls of this.inUse.values()) for (const url of urls) shown.add(url);
    let total = this.totalBytes();
    const candidates = [...this.entries].filter(([url]) => !shown.has(url)).sort((a, b) => a[1].used - b[1].used);
    for (const [url, entry] of candidates) {
      if (total <= this.budget) break;
      this.entries.delete(url);
      total -= entry.bytes;
    }
  }
}
