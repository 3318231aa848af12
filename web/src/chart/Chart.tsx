// Chart.tsx: a uPlot time-series chart with change windows drawn over it.
import { useLayoutEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { Span } from '../events';
import { regionsPlugin } from './regions';
import { linesPlugin, noPaths } from './lines';
import { formatValue } from '../format';
import type { Values } from '../query/data';

export interface ChartSeries {
  label: string;
  color: string;
  values: Values;
}

export interface ChartProps {
  xs: number[]; // Unix seconds
  series: ChartSeries[];
  spans: Span[];
  stacked?: boolean;
  height?: number;
  /** Called with a new [start, end] when the user drags to zoom. */
  onZoom?: (start: number, end: number) => void;
  onOpenSpan?: (s: Span) => void;
  title?: string;
}

/** Above this many series a chart draws hairlines and no hover dots. */
const manySeries = 50;

/** stack adds each series to the ones before it (for a stacked chart). */
function stack(series: ChartSeries[]): (number | null)[][] {
  const acc: number[] = [];
  return series.map((s) =>
    Array.from(s.values, (v, i) => {
      if (v === null || !isFinite(v)) return null;
      acc[i] = (acc[i] ?? 0) + v;
      return acc[i];
    }),
  );
}

/**
 * standIn is a series of n steps whose only values are the least and the
 * greatest finite values of all the series (null elsewhere), or null when
 * they have none.
 */
function standIn(values: Values[], n: number): (number | null)[] | null {
  const r = [Infinity, -Infinity];
  // A function per series, called for each: V8 optimises it after a few
  // series, where one loop over all of them ran unoptimised for most of
  // its 240k values (500 series: 10-20 ms cold).
  for (const vs of values) {
    if (vs instanceof Float64Array) rangeOf(vs, r);
    else rangeOfNullable(vs, r);
  }
  if (r[0] > r[1]) return null;
  const a: (number | null)[] = new Array(n).fill(null);
  a[0] = r[0];
  a[n - 1] = r[1];
  return a;
}

/** rangeOf widens r ([least, greatest]) to the finite values of vs (NaN fails both tests). */
function rangeOf(vs: Float64Array, r: number[]): void {
  let lo = r[0];
  let hi = r[1];
  for (let i = 0; i < vs.length; i++) {
    const v = vs[i];
    if (v < lo && v !== -Infinity) lo = v;
    if (v > hi && v !== Infinity) hi = v;
  }
  r[0] = lo;
  r[1] = hi;
}

/** rangeOfNullable is rangeOf for values with gaps (null). */
function rangeOfNullable(vs: (number | null)[], r: number[]): void {
  let lo = r[0];
  let hi = r[1];
  for (let i = 0; i < vs.length; i++) {
    const v = vs[i];
    if (v === null || !isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  r[0] = lo;
  r[1] = hi;
}

/** cssVar reads a colour of the theme (canvas cannot use var()). */
function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

export function Chart(p: ChartProps) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const placeRegions = useRef<((u: uPlot) => void) | null>(null);
  const spans = useRef(p.spans);
  spans.current = p.spans;
  const cb = useRef(p);
  cb.current = p;

  // A layout effect: the chart is built in the same task as the render that
  // mounts it, not after the next frame has painted the page without it.
  useLayoutEffect(() => {
    const el = host.current!;
    // Many series: 1 px lines and no hover dot per series (uPlot keeps an
    // element per series for them and moves each on every mouse move),
    // drawn in one pass (lines.ts) unless stacked.
    const many = p.series.length > manySeries;
    const onePass = many && !p.stacked;
    const fg = cssVar('--fg-muted');
    const grid = cssVar('--grid');
    const values = p.stacked ? stack(p.series) : p.series.map((s) => s.values);
    // Drawn in one pass, the series need not be uPlot's: it is given one
    // series instead, a stand-in holding their least and greatest values
    // (the same y range; uPlot's constructor and first draw then set up
    // and range one series, not hundreds).
    const stand = onePass && p.xs.length > 1 ? standIn(values, p.xs.length) : null;
    const regions = regionsPlugin(() => spans.current, (s) => cb.current.onOpenSpan?.(s));
    placeRegions.current = regions.place;
    const opts: uPlot.Options = {
      width: el.clientWidth || 800,
      height: p.height ?? 320,
      legend: { show: false },
      cursor: { drag: { x: true, y: false }, points: { size: 6, show: !many } },
      scales: { x: { time: true } },
      // The time axis in UTC and 24-hour time, as the range inputs, the
      // tooltips and the API's timestamps are.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      fmtDate: (tpl) => uPlot.fmtDate(utcTemplate(tpl)),
      axes: [
        { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid } },
        { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid }, size: 64, values: (_u, vs) => vs.map((v) => formatValue(v)) },
      ],
      series: [
        {},
        ...(stand ? [{ label: 'range', stroke: 'transparent', paths: noPaths, points: { show: false } }] : []),
        ...(stand ? [] : p.series).map((s) => ({
          label: s.label,
          stroke: s.color,
          width: many ? 1 : 1.25,
          fill: p.stacked ? s.color + '55' : undefined,
          spanGaps: false,
          points: { show: p.xs.length < 60 },
          paths: onePass ? noPaths : undefined,
        })),
      ],
      bands: p.stacked ? p.series.slice(1).map((_, i) => ({ series: [i + 2, i + 1] as [number, number] })) : undefined,
      plugins: [...(onePass ? [linesPlugin(1, stand ? () => p.series : undefined)] : []), regions],
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width < 5) return;
            const a = u.posToVal(u.select.left, 'x');
            const b = u.posToVal(u.select.left + u.select.width, 'x');
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            cb.current.onZoom?.(a, b);
          },
        ],
      },
    };
    // For the benchmark: when the chart was first drawn (ms since the
    // navigation started) and how long building and drawing it took
    // (uPlot draws in a microtask after its constructor). uPlot runs the
    // plugins' hooks after the options' own, in order: this one is last.
    const t0 = performance.now();
    performance.mark('lv:chart');
    let first = true;
    opts.plugins!.push({
      hooks: {
        draw: () => {
          if (!first) return;
          first = false;
          const t1 = performance.now();
          performance.mark('lv:drawn');
          el.dataset.drawMs = (t1 - t0).toFixed(1);
          el.dataset.drawnAt = t1.toFixed(1);
          // The frame that shows it: the next animation frame (the
          // drawing above is in the canvas, not yet on the screen).
          requestAnimationFrame(() => (el.dataset.paintedAt = performance.now().toFixed(1)));
        },
      },
    });
    const u = new uPlot(opts, [p.xs, ...(stand ? [stand] : values)] as uPlot.AlignedData, el);
    performance.mark('lv:built');
    plot.current = u;
    // The browser tests compare what is drawn with the API's answer
    // (and, for a chart whose series are not uPlot's, with its lines).
    (el as HTMLDivElement & { uplot?: uPlot }).uplot = u;
    (el as HTMLDivElement & { lines?: ChartSeries[] }).lines = stand ? p.series : undefined;
    el.dataset.xmin = String(u.scales.x.min);
    el.dataset.xmax = String(u.scales.x.max);
    // Observing starts with a call for the size the chart was built at:
    // redrawing then would draw every series again for nothing.
    const ro = new ResizeObserver(() => {
      if (el.clientWidth !== u.width) u.setSize({ width: el.clientWidth, height: p.height ?? 320 });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [p.xs, p.series, p.stacked, p.height]);

  // New windows are placed over the chart as it is drawn (they are
  // elements over the canvas), in the same task: no redraw of the series.
  useLayoutEffect(() => {
    if (plot.current) placeRegions.current?.(plot.current);
  }, [p.spans]);

  return <div class="chart" ref={host} role="img" aria-label={p.title ?? 'graph'} />;
}

/** utcTemplate turns uPlot's 12-hour, US-ordered axis templates into 24-hour ISO ones. */
function utcTemplate(tpl: string): string {
  return tpl
    .replace('{h}{aa}', '{HH}:00')
    .replace(/\{h\}/g, '{HH}')
    .replace(/\{aa\}|\{AA\}|\{a\}/g, '')
    .replace('{M}/{D}/{YY}', '{YYYY}-{MM}-{DD}')
    .replace('{M}/{D}', '{MM}-{DD}');
}
