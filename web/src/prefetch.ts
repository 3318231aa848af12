// prefetch.ts: the first requests of a page, sent by boot.js (boot.ts) as
// the HTML is parsed, before the bundle is loaded and evaluated, and taken
// over by api.ts when the app asks for the same thing. A request is taken
// once, and only when the app asks for exactly it: the same method, path,
// body, Accept and token.

/** What boot.ts leaves on window for the app. */
export interface Boot {
  /** The page's path and query string when the boot ran. */
  path: string;
  search: string;
  /** The boot's "now" (ms), which the first view of the page uses. */
  now: number;
  /** Requests in flight, by requestKey. */
  pending: Map<string, Promise<Response>>;
  /** The purposes that have used `now` (bootNow). */
  used: Set<string>;
  /** Bodies inflated by the boot's worker, by the response (which has no body of its own). */
  inflated: WeakMap<Response, ArrayBuffer>;
}

declare global {
  interface Window {
    __lvBoot?: Boot;
  }
}

/** Request is what the app would pass to fetch. */
export interface Request {
  path: string;
  init: RequestInit;
}

/** requestKey names a request by what decides its answer. */
export function requestKey(path: string, init: RequestInit, token: string): string {
  const h = new Headers(init.headers);
  return [init.method ?? 'GET', path, String(init.body ?? ''), h.get('Accept') ?? '', token].join('\n');
}

/** takePrefetched returns the boot's response to this request, once, or undefined. */
export function takePrefetched(path: string, init: RequestInit, token: string): Promise<Response> | undefined {
  const b = window.__lvBoot;
  if (!b || b.pending.size === 0) return undefined;
  const k = requestKey(path, init, token);
  const p = b.pending.get(k);
  if (p) b.pending.delete(k);
  return p;
}

/**
 * bootNow is the time (ms) a view takes as "now": the boot's, the first
 * time a purpose asks on the page the boot ran for (so that the app asks
 * for the range the boot asked for), else Date.now().
 */
export function bootNow(purpose: string): number {
  const b = window.__lvBoot;
  if (!b || b.used.has(purpose) || b.path !== location.pathname || b.search !== location.search) return Date.now();
  b.used.add(purpose);
  return b.now;
}

/**
 * inflatedBody is the body of a +gzip response that the boot's worker has
 * already inflated (worker.ts), or undefined: then the response's own body
 * is to be read and inflated.
 */
export function inflatedBody(r: Response): ArrayBuffer | undefined {
  return window.__lvBoot?.inflated?.get(r);
}
