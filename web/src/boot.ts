// boot.ts, built into index.html as an inline script (build.mjs) that runs
// before the bundle is even fetched: it
// sends the first requests of the page — who is signed in and, on the
// query page, the query and the change windows of its graph — so that the
// server works while the browser loads and evaluates the bundle. The app
// takes the answers over when it asks for the same requests (prefetch.ts);
// what it does not ask for is not used. It builds each request with the
// app's own functions, so the two cannot drift apart.
import { authHeaders, send, whoamiPath } from './api';
import { getToken } from './auth';
import { eventsPath, spanReads, splitMatchers } from './events';
import { requestKey, type Boot } from './prefetch';
import { instantRequest, rangeRequest } from './query/data';
import { eventsRange, graphRange, runs, view } from './query/view';
import { decodeQuery } from './url';

import type { WorkerAnswer, WorkerRequest } from './worker';

const boot: Boot = { path: location.pathname, search: location.search, now: Date.now(), pending: new Map(), used: new Set(), inflated: new WeakMap(), offThread: [], timings: [] };
const token = getToken();

function start(path: string, init: RequestInit = {}, offThread = false): void {
  const p = offThread && worker ? viaWorker(path, init) : send(path, init).then(buffered);
  p.catch(() => {}); // the app sees the failure when it takes the request
  boot.pending.set(requestKey(path, init, token), p);
}

// The worker (worker.ts, /worker.js) sends the query and the events and
// reads (and inflates) their bodies on another thread while this one
// evaluates the bundle. Without Worker or DecompressionStream, or when the
// worker cannot be started or fails, the requests are sent from here.
let worker: Worker | undefined;
let nextID = 0;
const waiting = new Map<number, { path: string; init: RequestInit; resolve: (r: Response | Promise<Response>) => void }>();
try {
  if (typeof Worker === 'function' && typeof DecompressionStream === 'function') {
    worker = new Worker('/worker.js', { name: 'levitated-boot' });
    worker.onmessage = (e: MessageEvent<WorkerAnswer>) => {
      const a = e.data;
      const w = waiting.get(a.id);
      if (!w) return;
      waiting.delete(a.id);
      if (a.error !== undefined || a.status === undefined) {
        w.resolve(send(w.path, w.init).then(buffered));
        return;
      }
      const t = a.timing;
      if (t) {
        const o = performance.timeOrigin;
        boot.timings.push({ path: w.path, startTime: t.startTime - o, responseStart: t.responseStart - o, responseEnd: t.responseEnd - o, encodedBodySize: t.encodedBodySize, inflateMs: t.inflateMs });
      }
      const init = { status: a.status, statusText: a.statusText, headers: a.headers };
      if (a.inflated) {
        // The app reads the inflated body from boot.inflated (inflatedBody).
        const r = new Response(null, init);
        boot.inflated.set(r, a.body!);
        w.resolve(r);
      } else w.resolve(new Response(nullBodyStatus.includes(a.status) ? null : a.body!, init));
    };
    worker.onerror = () => {
      worker?.terminate();
      worker = undefined;
      for (const [id, w] of waiting) {
        waiting.delete(id);
        w.resolve(send(w.path, w.init).then(buffered));
      }
    };
  }
} catch {
  worker = undefined;
}

function viaWorker(path: string, init: RequestInit): Promise<Response> {
  const id = nextID++;
  boot.offThread.push(path);
  const q: WorkerRequest = {
    id,
    path,
    method: init.method ?? 'GET',
    body: init.body == null ? null : String(init.body),
    headers: [...authHeaders(init.headers)],
  };
  return new Promise<Response>((resolve) => {
    waiting.set(id, { path, init, resolve });
    worker!.postMessage(q);
  });
}

// buffered reads a response's body as it arrives, while the bundle is
// loaded and evaluated, so that the app finds it whole (reading the query's
// 2 MB from the network took the app's main thread 50-110 ms after it had
// asked); the app is given a response of the same status, headers and body.
async function buffered(r: Response): Promise<Response> {
  const body = await r.arrayBuffer();
  const init = { status: r.status, statusText: r.statusText, headers: r.headers };
  return new Response(nullBodyStatus.includes(r.status) ? null : body, init);
}
const nullBodyStatus = [101, 103, 204, 205, 304];

try {
  start(whoamiPath);
  if (boot.path === '/' || boot.path === '/query' || boot.path === '/graph') {
    // As pages/Query.tsx computes them on its first render.
    const st = decodeQuery(boot.search);
    const v = view(st.range, st.end, st.step);
    if (runs(st, v)) {
      const [s, e] = graphRange(v, boot.now);
      const r = st.tab === 'graph' ? rangeRequest(st.expr, s, e, v.stepSec) : instantRequest(st.expr, e);
      start(r.path, r.init, true);
    }
    if (!v.badRange && !v.badEnd && st.tab === 'graph') {
      const [from, to] = eventsRange(v, boot.now);
      for (const r of spanReads({ name: st.evName || undefined, match: splitMatchers(st.evMatch) }, from, to, boot.now / 1000)) if (r) start(eventsPath(r.params), {}, true);
    }
  }
} catch {
  // Nothing sent is nothing lost: the app asks for itself.
}
window.__lvBoot = boot;
// What the app has not taken by then, it will not.
setTimeout(() => {
  boot.pending.clear();
  if (waiting.size === 0) worker?.terminate();
}, 10_000);
