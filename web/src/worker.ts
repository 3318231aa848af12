// worker.ts, served as /worker.js and started by the inline boot script
// (boot.ts): it sends the page's first data requests — the query and the
// change windows of its graph — off the page's main thread, and reads their
// bodies there, so that the page's main thread, busy evaluating the bundle
// and rendering, does not also read them from the network and inflate the
// query's answer. A +gzip matrix (pkg/matrixcodec.MediaTypeGzip) is
// inflated here; each body is handed to the page as a transferred
// ArrayBuffer (moved, not copied).
import { matrixGzipType } from './query/matrix';

/** WorkerRequest is what boot.ts posts: a request the page would send. */
export interface WorkerRequest {
  id: number;
  path: string;
  method: string;
  body: string | null;
  headers: [string, string][];
}

/**
 * WorkerAnswer is what this posts back: the response (its body inflated
 * when `inflated`), or `error` when it could not be had (boot.ts then
 * sends the request itself).
 */
export interface WorkerAnswer {
  id: number;
  status?: number;
  statusText?: string;
  headers?: [string, string][];
  body?: ArrayBuffer;
  inflated?: boolean;
  /** The request's Resource Timing in this worker, in ms since the epoch (the page's resource timing does not list a worker's requests). */
  timing?: { startTime: number; responseStart: number; responseEnd: number; encodedBodySize: number; inflateMs: number };
  error?: string;
}

self.onmessage = async (e: MessageEvent<WorkerRequest>) => {
  const q = e.data;
  let a: WorkerAnswer;
  try {
    const r = await fetch(q.path, { method: q.method, body: q.body, headers: q.headers });
    const gz = r.ok && !!r.body && (r.headers.get('Content-Type') ?? '').startsWith(matrixGzipType);
    const t0 = performance.now();
    const body = gz ? await new Response(r.body!.pipeThrough(new DecompressionStream('gzip'))).arrayBuffer() : await r.arrayBuffer();
    a = { id: q.id, status: r.status, statusText: r.statusText, headers: [...r.headers], body, inflated: gz, timing: timing(q.path, performance.now() - t0) };
  } catch (err) {
    a = { id: q.id, error: String(err) };
  }
  postMessage(a, { transfer: a.body ? [a.body] : [] });
};

function timing(path: string, inflateMs: number): WorkerAnswer['timing'] {
  const es = performance.getEntriesByType('resource').filter((e) => {
    const u = new URL(e.name);
    return u.pathname + u.search === path;
  }) as PerformanceResourceTiming[];
  const e = es[es.length - 1];
  if (!e) return undefined;
  const o = performance.timeOrigin;
  return { startTime: o + e.startTime, responseStart: o + e.responseStart, responseEnd: o + e.responseEnd, encodedBodySize: e.encodedBodySize, inflateMs };
}
