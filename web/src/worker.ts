// worker.ts, served as /worker.js and started by the inline boot script
// (boot.ts): it inflates the query's +gzip matrix
// (pkg/matrixcodec.MediaTypeGzip) off the page's main thread, which is then
// busy evaluating the bundle and rendering. The boot sends the request and
// reads the compressed body itself (0.1 MB: a worker's own fetch started
// 100-250 ms later, the worker being loaded and started first); the body
// goes to the worker and comes back inflated as transferred ArrayBuffers
// (moved, not copied).

/** InflateRequest is what boot.ts posts: a gzip body. */
export interface InflateRequest {
  id: number;
  gz: ArrayBuffer;
}

/** InflateAnswer is what this posts back: the body inflated, or an error. */
export interface InflateAnswer {
  id: number;
  body?: ArrayBuffer;
  /** The time the inflating took in this worker (ms). */
  ms?: number;
  error?: string;
}

self.onmessage = async (e: MessageEvent<InflateRequest>) => {
  const { id, gz } = e.data;
  let a: InflateAnswer;
  try {
    const t0 = performance.now();
    const body = await gunzip(gz);
    a = { id, body, ms: performance.now() - t0 };
  } catch (err) {
    a = { id, error: String(err) };
  }
  postMessage(a, { transfer: a.body ? [a.body] : [] });
};

/**
 * gunzip inflates a gzip body into one buffer, sized from the gzip
 * trailer's length (grown should it be wrong): the inflated chunks are
 * copied once, where a Response over the stream gathered them and copied
 * them again.
 */
async function gunzip(gz: ArrayBuffer): Promise<ArrayBuffer> {
  const ds = new DecompressionStream('gzip');
  const w = ds.writable.getWriter();
  // The trailer's length (mod 2^32) as a hint only, within what deflate
  // can expand to (1032:1) and 256 MiB: a body cut short or not gzip ends
  // in bytes that are no length.
  const hint = gz.byteLength >= 18 ? new DataView(gz).getUint32(gz.byteLength - 4, true) : 0;
  const size = hint <= Math.min(gz.byteLength * 1032, 256 << 20) ? hint : 0;
  w.write(new Uint8Array(gz)).catch(() => {}); // a bad body fails the reads below
  w.close().catch(() => {});
  const r = ds.readable.getReader();
  let out = new Uint8Array(size || 1 << 16);
  let n = 0;
  for (;;) {
    const { done, value } = await r.read();
    if (done) break;
    if (n + value.length > out.length) {
      const grown = new Uint8Array(Math.max(2 * out.length, n + value.length));
      grown.set(out.subarray(0, n));
      out = grown;
    }
    out.set(value, n);
    n += value.length;
  }
  return n === out.length ? out.buffer : out.buffer.slice(0, n);
}
