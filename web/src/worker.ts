// worker.ts, served as /worker.js and started by the inline boot script
// (boot.ts): it inflates the query's +gzip matrix
// (pkg/matrixcodec.MediaTypeGzip) off the page's main thread, which is then
// busy evaluating the bundle and rendering. The boot sends the request
// itself (a worker's own fetch started 100-250 ms later, the worker being
// loaded and started first) and hands the compressed body (0.1 MB) over as
// a transferred stream, inflated here as it arrives; it comes back inflated
// as a transferred ArrayBuffer (moved, not copied).

/** InflateRequest is what boot.ts posts: a gzip body, as a transferred stream (inflated as it arrives) or whole. */
export interface InflateRequest {
  id: number;
  gz: ReadableStream | ArrayBuffer;
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
    const src = gz instanceof ArrayBuffer ? new Response(gz).body! : gz;
    const body = await new Response(src.pipeThrough(new DecompressionStream('gzip'))).arrayBuffer();
    a = { id, body, ms: performance.now() - t0 };
  } catch (err) {
    a = { id, error: String(err) };
  }
  postMessage(a, { transfer: a.body ? [a.body] : [] });
};
