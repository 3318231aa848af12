// events.ts: change events from the events API (GET /api/v1/events, and the
// newline-delimited JSON stream GET /api/v1/events:tail).
import { request, authHeaders, ApiError } from './api';

export interface EventWindow {
  start_id?: string;
  start?: string;
  stop_id?: string;
  end?: string;
  open?: boolean;
}

export interface ChangeEvent {
  id: string;
  name: string;
  state: 'start' | 'stop' | string;
  timestamp: string;
  received_at?: string;
  attributes?: Record<string, string>;
  text?: string;
  url?: string;
  source?: string;
  value?: number;
  window?: EventWindow;
}

export interface ListParams {
  start?: number; // Unix seconds
  end?: number;
  name?: string;
  match?: string[];
  openOnly?: boolean;
  limit?: number;
}

function listQuery(p: ListParams, pageToken?: string): URLSearchParams {
  const q = new URLSearchParams();
  if (p.start !== undefined) q.set('start', String(Math.floor(p.start)));
  if (p.end !== undefined) q.set('end', String(Math.ceil(p.end)));
  if (p.name) q.set('name', p.name);
  for (const m of p.match ?? []) if (m.trim()) q.append('match', m.trim());
  if (p.openOnly) q.set('open_only', 'true');
  q.set('limit', String(p.limit ?? 1000));
  if (pageToken) q.set('page_token', pageToken);
  return q;
}

/** eventsPath is the request of a page of events (boot.ts sends the first). */
export function eventsPath(p: ListParams, pageToken?: string): string {
  return `/api/v1/events?${listQuery(p, pageToken)}`;
}

/** listEvents reads every page, up to max events. */
export async function listEvents(p: ListParams, max = 5000, signal?: AbortSignal): Promise<ChangeEvent[]> {
  const out: ChangeEvent[] = [];
  let token: string | undefined;
  do {
    const r = await request<{ events?: ChangeEvent[]; next_page_token?: string }>(eventsPath(p, token), { signal });
    out.push(...(r.events ?? []));
    token = r.next_page_token || undefined;
  } while (token && out.length < max);
  return out;
}

export async function getEvent(id: string): Promise<ChangeEvent> {
  return (await request<{ event: ChangeEvent }>(`/api/v1/events/${encodeURIComponent(id)}`)).event;
}

/** splitMatchers splits `a="x", b=~"y"` at top-level commas. */
export function splitMatchers(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      cur += c;
      if (c === '\\') cur += s[++i] ?? '';
      else if (c === quote) quote = '';
    } else if (c === '"' || c === "'" || c === '`') {
      quote = c;
      cur += c;
    } else if (c === ',') {
      if (cur.trim()) out.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/**
 * tailEvents follows new events until signal aborts; onEvent gets each.
 * It resolves when the stream ends and rejects on an HTTP error.
 */
export async function tailEvents(
  p: { name?: string; match?: string[] },
  onEvent: (e: ChangeEvent) => void,
  signal: AbortSignal,
  onOpen?: () => void,
): Promise<void> {
  const q = new URLSearchParams();
  if (p.name) q.set('name', p.name);
  for (const m of p.match ?? []) q.append('match', m);
  const res = await fetch(`/api/v1/events:tail?${q}`, { headers: authHeaders(), signal });
  if (!res.ok || !res.body) throw new ApiError(res.status, (await res.text()).trim() || res.statusText);
  // The server answers once the tail is subscribed (its header is
  // flushed then): from here on no new event is missed.
  onOpen?.();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line);
      if (msg.error) throw new ApiError(503, msg.error.message ?? 'tail ended');
      if (msg.result?.event) onEvent(msg.result.event);
    }
  }
}

/** Span is what the graphs draw: a window [start, end) or a point event (end undefined). */
export interface Span {
  id: string;
  name: string;
  start: number; // Unix seconds
  end?: number;
  open: boolean;
  ev: ChangeEvent;
}

/**
 * spans turns events into windows and points: a start is its window (to now
 * while open); a stop that closed a window is part of it; any other stop is
 * a point event.
 */
export function spans(evs: ChangeEvent[], now = Date.now() / 1000): Span[] {
  const out: Span[] = [];
  const ids = new Set(evs.map((e) => e.id));
  const seen = new Set<string>();
  for (const e of evs) {
    const t = Date.parse(e.timestamp) / 1000;
    if (e.state === 'start') {
      if (seen.has(e.id)) continue;
      seen.add(e.id);
      const w = e.window;
      const open = !w || w.open !== false;
      const end = !open && w?.end ? Date.parse(w.end) / 1000 : now;
      out.push({ id: e.id, name: e.name, start: t, end, open, ev: e });
    } else if (!e.window?.start_id) {
      out.push({ id: e.id, name: e.name, start: t, open: false, ev: e });
    } else if (!ids.has(e.window.start_id) && !seen.has(e.window.start_id) && e.window.start) {
      // The stop of a window whose start is not among evs (it opened
      // before them): the window, from the stop's record of it.
      seen.add(e.window.start_id);
      out.push({ id: e.window.start_id, name: e.name, start: Date.parse(e.window.start) / 1000, end: t, open: false, ev: e });
    }
  }
  return out;
}

/** How far before a range an open window is looked for (spansIn). */
export const openLookback = 30 * 86400;

/** spanReads are spansIn's three reads (the third undefined for a range that ends now). */
export function spanReads(p: { name?: string; match?: string[] }, from: number, to: number, now: number): ({ params: ListParams; max: number } | undefined)[] {
  return [
    { params: { ...p, start: from, end: to }, max: 5000 },
    { params: { ...p, start: from - openLookback, end: from, openOnly: true }, max: 1000 },
    to < now - 1 ? { params: { ...p, start: to, limit: 1000 }, max: 1000 } : undefined,
  ];
}

/**
 * spansIn lists the windows and point events that overlap [from, to] (Unix
 * seconds): the events inside it; windows opened before it, from their
 * stops inside it; windows opened before it (up to openLookback) that are
 * still open; and, for a range that ends in the past, windows opened before
 * it and closed after it, from the stops among the first 1000 events after
 * it. The events API bounds an event's own time, so these are separate
 * reads.
 */
export async function spansIn(
  p: { name?: string; match?: string[] },
  from: number,
  to: number,
  signal?: AbortSignal,
  now = Date.now() / 1000,
): Promise<Span[]> {
  const [inRange, open, after] = await Promise.all(spanReads(p, from, to, now).map((r) => (r ? listEvents(r.params, r.max, signal) : Promise.resolve([] as ChangeEvent[]))));
  const before = (e: ChangeEvent) => !!e.window?.start && Date.parse(e.window.start) / 1000 < from;
  const spanning = after.filter((e) => e.state === 'stop' && before(e));
  return spans(withoutJudgements([...open, ...inRange, ...spanning], p.name), now);
}

/**
 * The event levitated records for each automatic impact verdict
 * (docs/impact.md). Lists and graphs show the verdict on the change it
 * judges, not as a change of its own, unless asked for it by name.
 */
export const impactEventName = 'change_impact';

/** ImpactMark is a change's automatic verdict, from its change_impact event. */
export interface ImpactMark {
  verdict: string;
  score?: string;
  failing?: string;
}

/** impactMarks maps a judged change's id to its verdict. */
export function impactMarks(evs: ChangeEvent[]): Map<string, ImpactMark> {
  const out = new Map<string, ImpactMark>();
  for (const e of evs) {
    const a = e.attributes ?? {};
    if (e.name === impactEventName && a.change_id && a.verdict) out.set(a.change_id, { verdict: a.verdict, score: a.score, failing: a.failing_signals });
  }
  return out;
}

/**
 * The event levitated records for each analysis someone asked for: an
 * Argo Rollouts or Kayenta canary execution, a Flagger webhook, a native
 * analysis (docs/analysis.md). A judgement, not a change: lists and graphs
 * show it on the change it judged, if any, unless asked for it by name;
 * the Analyses page lists the executions.
 */
export const analysisEventName = 'change_analysis';

/** AnalysisMark is a change's newest analysis, from its change_analysis events. */
export interface AnalysisMark {
  verdict: string;
  score?: string;
  source?: string;
  failing?: string;
  at: number; // Unix seconds
}

/** analysisSourceTitle names the source of a recorded analysis (its source attribute). */
export function analysisSourceTitle(source?: string): string {
  switch (source) {
    case 'analysis':
      return 'native analysis';
    case 'kayenta':
      return 'Kayenta execution';
    case 'flagger':
      return 'Flagger webhook';
    default:
      return `analysis (${source ?? 'unknown source'})`;
  }
}

/** analysisMarks maps a judged change's id to its newest analysis. */
export function analysisMarks(evs: ChangeEvent[]): Map<string, AnalysisMark> {
  const out = new Map<string, AnalysisMark>();
  for (const e of evs) {
    const a = e.attributes ?? {};
    if (e.name !== analysisEventName || !a.change_id || !a.verdict) continue;
    const at = Date.parse(e.timestamp) / 1000;
    const had = out.get(a.change_id);
    if (had && had.at > at) continue;
    out.set(a.change_id, { verdict: a.verdict, score: a.score, source: a.source, failing: a.failing_signals, at });
  }
  return out;
}

/** newestFirst sorts events by their time, newest first, in place. */
export function newestFirst(evs: ChangeEvent[]): ChangeEvent[] {
  return evs.sort((a, b) => Date.parse(b.timestamp) - Date.parse(a.timestamp));
}

/** signalList writes a failing_signals attribute (comma-separated) for reading. */
export function signalList(csv: string): string {
  return csv.split(',').join(', ');
}

/**
 * withoutJudgements drops the judgements (change_impact and change_analysis
 * events) unless name asks for them.
 */
export function withoutJudgements(evs: ChangeEvent[], name?: string): ChangeEvent[] {
  return evs.filter((e) => (e.name !== impactEventName && e.name !== analysisEventName) || e.name === name);
}

/** describe writes an event's attributes as `k=v, …`. */
export function describe(attrs?: Record<string, string>): string {
  return Object.entries(attrs ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
}
