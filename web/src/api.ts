// api.ts: every request the console makes goes through here, to this
// server's own API, with the signed-in token. Nothing here widens what the
// token may do: the server checks every call.
import { getToken } from './auth';
import { takePrefetched } from './prefetch';

/** ApiError is an answer other than 2xx, with the server's own message. */
export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public errorType = '',
  ) {
    super(message);
  }
  /** A human sentence for 401 and 403, else the server's message. */
  explain(): string {
    if (this.status === 401) return `Not signed in, or the token was refused (401): ${this.message}`;
    if (this.status === 403) return `This token may not do this (403): ${this.message}`;
    return this.message;
  }
}

/** Listeners told when a request is refused with 401, to show the sign-in. */
const unauthorized = new Set<() => void>();
export function onUnauthorized(f: () => void): () => void {
  unauthorized.add(f);
  return () => unauthorized.delete(f);
}

function headers(extra?: HeadersInit): Headers {
  const h = new Headers(extra);
  const tok = getToken();
  if (tok) h.set('Authorization', `Bearer ${tok}`);
  return h;
}

/** send fetches path with the signed-in token (boot.ts sends the first requests so). */
export function send(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(path, { ...init, headers: headers(init.headers) });
}

/**
 * respond fetches path and returns the response if it is 2xx, else throws
 * ApiError with the server's message.
 */
export async function respond(path: string, init: RequestInit = {}): Promise<Response> {
  const res = await (takePrefetched(path, init, getToken()) ?? send(path, init));
  if (res.ok) return res;
  const text = await res.text();
  let body: any = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON: the message is the text */
  }
  // Prometheus' envelope {status,errorType,error}, gRPC-gateway's
  // {code,message}, Kayenta's {message}, or plain text.
  const msg = body?.error ?? body?.message ?? (text.trim() || res.statusText);
  if (res.status === 401) unauthorized.forEach((f) => f());
  throw new ApiError(res.status, msg, body?.errorType ?? '');
}

/** request fetches path and returns the parsed JSON body or throws ApiError. */
export async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const text = await (await respond(path, init)).text();
  try {
    return (text ? JSON.parse(text) : undefined) as T;
  } catch {
    return undefined as T; // a 2xx that is not JSON, as before
  }
}

/** PromResponse is Prometheus' envelope. */
export interface PromResponse<T> {
  status: string;
  data: T;
  warnings?: string[];
  infos?: string[];
}

/** promForm is the form body of a Prometheus API call. */
export function promForm(params: Record<string, string | string[]>): URLSearchParams {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const x of Array.isArray(v) ? v : [v]) body.append(k, x);
  }
  return body;
}

/** prom calls the Prometheus API with form parameters. */
export async function prom<T>(path: string, params: Record<string, string | string[]>, signal?: AbortSignal): Promise<PromResponse<T>> {
  return request<PromResponse<T>>(path, { ...promInit(params), signal });
}

/** promInit is the request of a Prometheus API call with form parameters. */
export function promInit(params: Record<string, string | string[]>, accept?: string): RequestInit {
  const headers: Record<string, string> = { 'Content-Type': 'application/x-www-form-urlencoded' };
  if (accept) headers.Accept = accept;
  return { method: 'POST', body: promForm(params), headers };
}

export interface Whoami {
  tenant: string;
  subject: string;
  scopes: string[];
  auth_required: boolean;
  version: string;
}

export const whoamiPath = '/api/v1/status/whoami';

export async function whoami(): Promise<Whoami> {
  return (await request<PromResponse<Whoami>>(whoamiPath)).data;
}

export { headers as authHeaders };
