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
    const body = await new Response(new Response(gz).body!.pipeThrough(new DecompressionStream('gzip'))).arrayBuffer();
    a = { id, body, ms: performance.now() - t0 };
  } catch (err) {
    a = { id, error: String(err) };
  }
  postMessage(a, { transfer: a.body ? [a.body] : [] });
};
