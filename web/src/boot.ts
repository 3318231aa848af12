// boot.ts, built into index.html as an inline script (build.mjs) that runs
// before the bundle is even fetched: it
// sends the first requests of the page — who is signed in and, on the
// query page, the query and the change windows of its graph — so that the
// server works while the browser loads and evaluates the bundle. The app
// takes the answers over when it asks for the same requests (prefetch.ts);
// what it does not ask for is not used. It builds each request with the
// app's own functions, so the two cannot drift apart.
import { send, whoamiPath } from './api';
import { getToken } from './auth';
import { eventsPath, spanReads, splitMatchers } from './events';
import { requestKey, type Boot } from './prefetch';
import { instantRequest, rangeRequest } from './query/data';
import { eventsRange, graphRange, runs, view } from './query/view';
import { decodeQuery } from './url';

import { matrixGzipType } from './query/matrix';
import type { InflateAnswer, InflateRequest } from './worker';

const boot: Boot = { path: location.pathname, search: location.search, now: Date.now(), pending: new Map(), used: new Set(), inflated: new WeakMap() };

function start(path: string, init: RequestInit = {}): void {
  const p = send(path, init).then(buffered);
  p.catch(() => {}); // the app sees the failure when it takes the request
  boot.pending.set(requestKey(path, init, token), p);
}

// The worker (worker.ts, /worker.js) inflates the query's +gzip answer on
// another thread while this one evaluates the bundle. Without Worker or
// DecompressionStream, or when the worker cannot be started or fails, the
// app inflates it as it reads it (query/data.ts).
let worker: Worker | undefined;
let nextID = 0;
const waiting = new Map<number, (a: InflateAnswer) => void>();

/** startWorker starts the worker. */
function startWorker(): void {
  try {
    if (typeof Worker === 'function' && typeof DecompressionStream === 'function') {
      worker = new Worker('/worker.js', { name: 'levitated-inflate' });
      worker.onmessage = (e: MessageEvent<InflateAnswer>) => {
        const f = waiting.get(e.data.id);
        waiting.delete(e.data.id);
        f?.(e.data);
      };
      worker.onerror = () => {
        worker?.terminate();
        worker = undefined;
        for (const [id, f] of waiting) {
          waiting.delete(id);
          f({ id, error: 'worker failed' });
        }
      };
    }
  } catch {
    worker = undefined;
  }
}

// The worker is started first: under load, starting it (fetching
// /worker.js, a thread, its script) took longer than the query's answer.
startWorker();
// The token, read from session storage (the first read waits for the
// browser process: 4-60 ms under load, while the worker starts).
const token = getToken();

// inflateTimeout bounds the wait for the worker: a /worker.js that never
// loads, or a worker that never answers, must not hold the first graph
// back (the app then inflates the body itself).
const inflateTimeout = 3000;

function inflate(gz: ArrayBuffer): Promise<InflateAnswer> {
  const id = nextID++;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      if (waiting.delete(id)) resolve({ id, error: 'worker did not answer' });
    }, inflateTimeout);
    waiting.set(id, (a) => {
      clearTimeout(timer);
      resolve(a);
    });
    const q: InflateRequest = { id, gz };
    performance.mark('lv:to-worker');
    worker!.postMessage(q, { transfer: [gz] });
  });
}

// buffered reads a response's body as it arrives, while the bundle is
// loaded and evaluated, so that the app finds it whole (reading the query's
// 2 MB from the network took the app's main thread 50-110 ms after it had
// asked); the app is given a response of the same status, headers and body.
// A +gzip matrix goes to the worker to be inflated: the app is given a
// response without a body, and the inflated body in boot.inflated.
async function buffered(r: Response): Promise<Response> {
  // When this thread got the query's headers (BenchmarkConsoleGraph).
  if (r.url.endsWith('/api/v1/query_range')) performance.mark('lv:boot-headers');
  const body = await r.arrayBuffer();
  const init = { status: r.status, statusText: r.statusText, headers: r.headers };
  if (worker && r.ok && (r.headers.get('Content-Type') ?? '').startsWith(matrixGzipType)) {
    const keep = body.slice(0); // the app's fallback, should the worker fail
    const a = await inflate(body);
    if (a.body) {
      performance.measure('lv:worker-inflate', { start: performance.now() - (a.ms ?? 0), duration: a.ms ?? 0 });
      const out = new Response(null, init);
      boot.inflated.set(out, a.body);
      return out;
    }
    return new Response(keep, init);
  }
  return new Response(nullBodyStatus.includes(r.status) ? null : body, init);
}
const nullBodyStatus = [101, 103, 204, 205, 304];

// The query first (the server's longest answer), then the change windows,
// then whoami (the query page does not wait for it).
try {
  if (boot.path === '/' || boot.path === '/query' || boot.path === '/graph') {
    // As pages/Query.tsx computes them on its first render.
    const st = decodeQuery(boot.search);
    const v = view(st.range, st.end, st.step);
    if (runs(st, v)) {
      const [s, e] = graphRange(v, boot.now);
      const r = st.tab === 'graph' ? rangeRequest(st.expr, s, e, v.stepSec) : instantRequest(st.expr, e);
      start(r.path, r.init);
    }
    if (!v.badRange && !v.badEnd && st.tab === 'graph') {
      const [from, to] = eventsRange(v, boot.now);
      for (const r of spanReads({ name: st.evName || undefined, match: splitMatchers(st.evMatch) }, from, to, boot.now / 1000)) if (r) start(eventsPath(r.params));
    }
  }
} catch {
  // Nothing sent is nothing lost: the app asks for itself.
}
try {
  start(whoamiPath);
} catch {
  // As above.
}
window.__lvBoot = boot;
// What the app has not taken by then, it will not.
setTimeout(() => {
  boot.pending.clear();
  if (waiting.size === 0) worker?.terminate();
  worker = undefined;
}, 10_000);
