// data.ts: running queries and shaping their results for the chart.
import { promInit, request, respond, type PromResponse } from '../api';
import type { ChartSeries } from '../chart/Chart';
import { seriesColor } from '../chart/palette';
import { formatLabels } from '../format';
import { inflatedBody } from '../prefetch';
import { decodeMatrix, matrixGzipType, matrixType } from './matrix';

/**
 * Values are a series' samples on the step grid: null where it has none,
 * or, for a series present at every step of a binary answer, the answer's
 * own Float64Array.
 */
export type Values = (number | null)[] | Float64Array;

export interface MatrixSeries {
  metric: Record<string, string>;
  values?: [number, string][];
  histograms?: [number, any][];
}

/**
 * RangeSeries is a series of a range answer. Its label (formatLabels) is
 * written when it is first read: a chart of many series draws without
 * reading it (500 labels written cold took 4-8 ms before the first draw);
 * the legend, rendered after the draw, reads it.
 */
export class RangeSeries implements ChartSeries {
  private written?: string;
  constructor(
    readonly metric: Record<string, string>,
    readonly color: string,
    readonly values: Values,
  ) {}
  get label(): string {
    return (this.written ??= formatLabels(this.metric));
  }
}

export interface RangeResult {
  xs: number[];
  series: RangeSeries[];
  warnings: string[];
  infos: string[];
  ms: number; // API time
  format: 'matrix' | 'matrix+gzip' | 'json'; // the answer's encoding
  /** Where a +gzip answer was inflated: by the boot's worker or in the page. */
  inflated?: 'worker' | 'page';
}

// The binary matrix, compressed by the server itself where the browser can
// inflate it (pkg/matrixcodec.MediaTypeGzip: the body crosses from the
// browser's network process into the page compressed, 0.19 MB instead of
// 1.97 for 500 series x 481 steps), else as it is, else JSON.
const rangeAccept =
  typeof DecompressionStream === 'function' ? `${matrixGzipType}, ${matrixType};q=0.95, application/json;q=0.9` : `${matrixType}, application/json;q=0.9`;

/** rangeRequest is queryRange's request (boot.ts sends it too). */
export function rangeRequest(expr: string, start: number, end: number, step: number): { path: string; init: RequestInit } {
  return {
    path: '/api/v1/query_range',
    init: promInit({ query: expr, start: String(start), end: String(end), step: String(step) }, rangeAccept),
  };
}

/** instantRequest is queryInstant's request. */
export function instantRequest(expr: string, time: number): { path: string; init: RequestInit } {
  return { path: '/api/v1/query', init: promInit({ query: expr, time: String(time) }) };
}

/**
 * queryRange runs a range query and puts the samples on the step grid. The
 * performance marks lv:query, lv:received, lv:parsed and lv:shaped time its
 * parts (BenchmarkConsoleGraph reads them).
 */
export async function queryRange(expr: string, start: number, end: number, step: number, signal?: AbortSignal): Promise<RangeResult> {
  const t0 = performance.now();
  performance.mark('lv:query');
  const req = rangeRequest(expr, start, end, step);
  const res = await respond(req.path, { ...req.init, signal });
  const n = Math.floor((end - start) / step) + 1;
  const xs = Array.from({ length: n }, (_, i) => start + i * step);
  const grid = (t: number) => Math.round((t - start) / step);
  let out: RangeResult;
  const ctype = res.headers.get('Content-Type') ?? '';
  if (ctype.startsWith(matrixType)) {
    // levitated's binary matrix (pkg/matrixcodec): the samples are read
    // in place, as Float64Array views of the body.
    const gz = ctype.startsWith(matrixGzipType);
    const pre = gz ? inflatedBody(res) : undefined;
    const buf = pre ?? (gz ? await new Response(res.body!.pipeThrough(new DecompressionStream('gzip'))).arrayBuffer() : await res.arrayBuffer());
    performance.mark('lv:received');
    const m = decodeMatrix(buf);
    const ms = performance.now() - t0;
    performance.mark('lv:parsed');
    const g = m.grid;
    // The body's grid is the query's when the answer spans the whole range
    // (its grid starts at the earliest point): then a series present at
    // every step is drawn from the body as it is.
    const same = !!g && Math.abs(g.start - start * 1000) < 0.5 && g.step === step * 1000 && g.steps === n;
    const series = m.series.map((s, i) => {
      const vs = s.values;
      let values: Values;
      if (same && vs.length === n) values = vs;
      else {
        const a: (number | null)[] = new Array(n).fill(null);
        const put = (t: number, v: number) => {
          const k = grid(t / 1000);
          if (k >= 0 && k < n) a[k] = v;
        };
        if (s.timestamps) for (let j = 0; j < vs.length; j++) put(s.timestamps[j], vs[j]);
        else if (g && s.mask) {
          const mask = s.mask;
          for (let k = 0, j = 0; k < g.steps && j < vs.length; k++) if (mask[k >> 3] & (1 << (k & 7))) put(g.start + k * g.step, vs[j++]);
        } else if (g) for (let j = 0; j < vs.length; j++) put(g.start + j * g.step, vs[j]);
        values = a;
      }
      return new RangeSeries(s.metric, seriesColor(i), values);
    });
    out = { xs, series, warnings: m.warnings ?? [], infos: m.infos ?? [], ms, format: gz ? 'matrix+gzip' : 'matrix', inflated: gz ? (pre ? 'worker' : 'page') : undefined };
  } else {
    // Prometheus' JSON: any other answer (native histograms, a server
    // without the binary codec).
    const text = await res.text();
    performance.mark('lv:received');
    const r: PromResponse<{ resultType: string; result: MatrixSeries[] }> = JSON.parse(text);
    const ms = performance.now() - t0;
    performance.mark('lv:parsed');
    const series = r.data.result.map((s, i) => {
      const values: (number | null)[] = new Array(n).fill(null);
      for (const [t, v] of s.values ?? []) {
        const k = grid(t);
        if (k >= 0 && k < n) values[k] = Number(v);
      }
      for (const [t, h] of s.histograms ?? []) {
        const k = grid(t);
        if (k >= 0 && k < n) values[k] = Number(h.sum) / Number(h.count || 1);
      }
      return new RangeSeries(s.metric, seriesColor(i), values);
    });
    out = { xs, series, warnings: r.warnings ?? [], infos: r.infos ?? [], ms, format: 'json' };
  }
  performance.mark('lv:shaped');
  return out;
}

export interface InstantResult {
  resultType: 'vector' | 'matrix' | 'scalar' | 'string';
  result: any;
  warnings: string[];
  infos: string[];
}

export async function queryInstant(expr: string, time: number, signal?: AbortSignal): Promise<InstantResult> {
  const q = instantRequest(expr, time);
  const r: PromResponse<{ resultType: InstantResult['resultType']; result: any }> = await request(q.path, { ...q.init, signal });
  return { ...r.data, warnings: r.warnings ?? [], infos: r.infos ?? [] };
}

/** mean of the non-null values whose time lies in [from, to). */
export function meanIn(xs: number[], values: Values, from: number, to: number): number | null {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < xs.length; i++) {
    const v = values[i];
    if (xs[i] >= from && xs[i] < to && v !== null && isFinite(v)) {
      sum += v;
      n++;
    }
  }
  return n ? sum / n : null;
}
