// Query.tsx: the query page. A PromQL editor, a graph with the change windows
// drawn over it, a table and the explain tree. Its whole state is in the
// URL (url.ts): running a query pushes a history entry.
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { JSX } from 'preact';
import type { EditorProps } from '../query/Editor';
import { Chart } from '../chart/Chart';
import { Legend } from '../chart/Legend';
import { ResultTable } from '../query/Table';
import { Explain } from '../query/Explain';
import { queryRange, queryInstant, type RangeResult, type InstantResult } from '../query/data';
import { spansIn, splitMatchers, type Span } from '../events';
import { decodeQuery, encodeQuery, type QueryState } from '../url';
import { navigate, replace } from '../router';
import { formatDuration, formatTime } from '../time';
import { view, graphRange, eventsRange, runs } from '../query/view';
import { bootNow } from '../prefetch';
import { ErrorAlert, Notes } from '../ui/Alert';
import { Field } from '../ui/Field';
import { useDebounced } from '../debounce';

const ranges = ['5m', '15m', '30m', '1h', '2h', '6h', '12h', '1d', '2d', '1w'];

// The editor is CodeMirror, the larger part of the bundle: it is a chunk of
// its own, loaded when the page's first answer is drawn (or at once when
// there is none), so that evaluating it does not delay the graph. Until
// then the expression is shown as text where the editor will be.
type EditorComponent = (p: EditorProps) => JSX.Element;
let editorChunk: Promise<EditorComponent> | null = null;
const editorWaiters = new Set<(e: EditorComponent) => void>();
let loadedEditor: EditorComponent | null = null;

function loadEditor(): void {
  editorChunk ??= import('../query/Editor').then((m) => {
    loadedEditor = m.Editor;
    editorWaiters.forEach((f) => f(m.Editor));
    return m.Editor;
  });
}

function useEditor(): EditorComponent {
  const [e, setE] = useState<EditorComponent | null>(loadedEditor);
  useEffect(() => {
    if (e) return;
    const f = (x: EditorComponent) => setE(() => x);
    editorWaiters.add(f);
    return () => void editorWaiters.delete(f);
  }, []);
  return e ?? EditorText;
}

function EditorText(p: EditorProps) {
  return (
    <div class="editor" aria-busy="true">
      <div class="editor-text">{p.value}</div>
    </div>
  );
}

export function QueryPage({ search }: { search: string }) {
  const st = useMemo(() => decodeQuery(search), [search]);
  const Editor = useEditor();
  const [draft, setDraft] = useState(st.expr);
  const [range, setRange] = useState<RangeResult | null>(null);
  const [inst, setInst] = useState<InstantResult | null>(null);
  const [spans, setSpans] = useState<Span[]>([]);
  const [err, setErr] = useState<unknown>(null);
  const [evErr, setEvErr] = useState<unknown>(null);
  const [loading, setLoading] = useState(false);
  const [filter, setFilter] = useState('');
  // The graph's element: data-total-ms (the query asked to the frame after
  // its answer) is written on it directly, not by rendering the page again
  // in that frame.
  const graphEl = useRef<HTMLDivElement>(null);
  useEffect(() => setDraft(st.expr), [st.expr]);
  const endInput = useDebounced(st.end);
  const stepInput = useDebounced(st.step);
  const evName = useDebounced(st.evName);
  const evMatch = useDebounced(st.evMatch);

  const set = (patch: Partial<QueryState>, push = false) => {
    const to = `${location.pathname === '/graph' ? '/query' : location.pathname}?${encodeQuery({ ...st, ...patch })}`;
    push ? navigate(to) : replace(to);
  };
  const run = () => set({ expr: draft }, true);

  // The time range of the view (query/view.ts; boot.ts sends the first
  // page's requests from the same functions).
  const v = view(st.range, endInput, stepInput);
  const { rangeSec, endSec, stepSec, badRange, badEnd, badStep } = v;

  // Layout effects: the query and the events are asked for when the page
  // is rendered (boot.ts has sent the first ones already).
  useLayoutEffect(() => {
    setErr(null);
    setRange(null);
    setInst(null);
    if (!runs(st, v)) {
      loadEditor();
      return;
    }
    const ac = new AbortController();
    const [start, end] = graphRange(v, bootNow('query'));
    setLoading(true);
    const t0 = performance.now();
    const q = st.tab === 'graph' ? queryRange(st.expr, start, end, stepSec, ac.signal).then(setRange) : queryInstant(st.expr, end, ac.signal).then(setInst);
    q.catch((e) => !ac.signal.aborted && setErr(e))
      .finally(() => {
        setLoading(false);
        requestAnimationFrame(() => graphEl.current?.setAttribute('data-total-ms', (performance.now() - t0).toFixed(1)));
        // The editor (CodeMirror, its own chunk) after the graph is drawn.
        setTimeout(loadEditor, 0);
      });
    return () => ac.abort();
  }, [st.expr, st.range, endInput, stepInput, st.tab]);

  // Change windows of the view's range, drawn on the graph.
  useLayoutEffect(() => {
    setEvErr(null);
    if (badRange || badEnd || st.tab !== 'graph') return;
    const ac = new AbortController();
    const now = bootNow('events');
    const [from, to] = eventsRange(v, now);
    spansIn({ name: evName || undefined, match: splitMatchers(evMatch) }, from, to, ac.signal, now / 1000)
      .then(setSpans)
      .catch((e) => !ac.signal.aborted && (setSpans([]), setEvErr(e)));
    return () => ac.abort();
  }, [st.range, endInput, evName, evMatch, st.tab, st.expr]);

  // The legend (a button per series, up to 200) is rendered after the
  // chart of a new answer has been drawn and painted: in a task after the
  // next frame. Rendering and laying out hundreds of entries in the same
  // task as the chart delayed the graph by as much again. (Not useEffect:
  // preact runs effects on a 35 ms timer when that comes before the frame,
  // as it does after the long task that draws a large chart, and the
  // legend was then laid out in the frame that first shows the chart.)
  const [legendOf, setLegendOf] = useState<RangeResult | null>(null);
  useLayoutEffect(() => {
    let timer = 0;
    const show = () => (timer = window.setTimeout(() => setLegendOf(range)));
    // A hidden page has no frames.
    const frame = document.hidden ? (show(), 0) : requestAnimationFrame(show);
    return () => {
      cancelAnimationFrame(frame);
      clearTimeout(timer);
    };
  }, [range]);

  const hidden = useMemo(() => new Set(st.hidden), [st.hidden]);
  const visible = useMemo(
    // Nothing hidden or filtered (a page's first graph): the series as
    // they are, without writing their labels (RangeSeries).
    () => (!range ? [] : hidden.size === 0 && !filter ? range.series : range.series.filter((s) => !hidden.has(s.label) && (!filter || s.label.includes(filter)))),
    [range, hidden, filter],
  );

  const zoom = (a: number, b: number) => set({ range: formatDuration(Math.max(1, Math.round(b - a))), end: formatTime(Math.round(b)) }, true);
  const shift = (dir: number) => {
    const end = (isNaN(endSec) ? Date.now() / 1000 : endSec) + (dir * rangeSec) / 2;
    set({ end: end >= Date.now() / 1000 ? '' : formatTime(Math.round(end)) }, true);
  };

  return (
    <section class="page" aria-labelledby="query-h">
      <h1 id="query-h" class="sr-only">
        Query
      </h1>
      <div class="query-bar">
        <Editor value={draft} onChange={setDraft} onRun={run} />
        <button class="primary" type="button" onClick={run} data-testid="run">
          {loading ? 'Running…' : 'Execute'}
        </button>
      </div>
      <div class="controls" role="group" aria-label="Time range and display">
        <div class="tabs" role="tablist" aria-label="Result view">
          {(['graph', 'table', 'explain'] as const).map((t) => (
            <button key={t} role="tab" type="button" aria-selected={st.tab === t} class={st.tab === t ? 'tab active' : 'tab'} onClick={() => set({ tab: t }, true)}>
              {t[0].toUpperCase() + t.slice(1)}
            </button>
          ))}
        </div>
        {st.tab !== 'explain' && (
          <>
            {st.tab === 'graph' && (
              <label class="field">
                <span>Range</span>
                <select value={ranges.includes(st.range) ? st.range : ''} onChange={(e) => set({ range: (e.target as HTMLSelectElement).value }, true)}>
                  {!ranges.includes(st.range) && <option value="">{st.range}</option>}
                  {ranges.map((r) => (
                    <option key={r} value={r}>
                      {r}
                    </option>
                  ))}
                </select>
              </label>
            )}
            <div class="field-group">
              {st.tab === 'graph' && (
                <button type="button" aria-label="Earlier" title="Earlier" onClick={() => shift(-1)}>
                  ‹
                </button>
              )}
              <Field label="End (UTC)" value={st.end} placeholder="now" width="12.5em" testid="end" onInput={(v) => set({ end: v })} />
              {st.tab === 'graph' && (
                <button type="button" aria-label="Later" title="Later" onClick={() => shift(1)}>
                  ›
                </button>
              )}
            </div>
            {st.tab === 'graph' && (
              <>
                <Field label="Step" value={st.step} placeholder={`${formatDuration(stepSec)} (auto)`} width="7em" testid="step" onInput={(v) => set({ step: v })} />
                <label class="check">
                  <input type="checkbox" checked={st.stacked} onChange={(e) => set({ stacked: (e.target as HTMLInputElement).checked }, true)} /> Stacked
                </label>
                <Field label="Changes: event" value={st.evName} placeholder="all" width="8em" testid="ev-name" onInput={(v) => set({ evName: v })} />
                <Field label="attributes" value={st.evMatch} placeholder={'service="checkout"'} width="12em" testid="ev-match" onInput={(v) => set({ evMatch: v })} />
              </>
            )}
          </>
        )}
      </div>
      {badRange && <div class="alert error">Range: "{st.range}" is not a duration such as 1h or 30m.</div>}
      {badEnd && <div class="alert error">End: "{endInput}" is not a time (2026-01-15 12:00:00, RFC 3339 or Unix seconds).</div>}
      {badStep && st.tab === 'graph' && <div class="alert error">Step: "{stepInput}" is not a duration such as 15s.</div>}
      <ErrorAlert err={err} />
      {evErr ? <div class="alert warning">Change events could not be read: {String((evErr as Error).message ?? evErr)}</div> : null}
      {st.tab === 'graph' && range && (
        <>
          <Notes warnings={range.warnings} infos={range.infos} />
          {range.series.length === 0 ? (
            <p class="muted">Empty query result.</p>
          ) : (
            <div data-testid="graph" data-series={range.series.length} data-api-ms={range.ms.toFixed(1)} data-format={range.format} data-inflated={range.inflated ?? ''} ref={graphEl}>
              <Chart
                xs={range.xs}
                series={visible}
                spans={spans}
                stacked={st.stacked}
                title={`Graph of ${st.expr}`}
                onZoom={zoom}
                onOpenSpan={(s) => navigate(`/changes/${s.ev.window?.start_id ?? s.id}`)}
              />
              <p class="muted small">
                {spans.length} change{spans.length === 1 ? '' : 's'} drawn · drag to zoom · click a window to open it · query {range.ms.toFixed(0)} ms
              </p>
              {legendOf === range && (
              <Legend
                items={range.series}
                hidden={hidden}
                filter={filter}
                onFilter={setFilter}
                onToggle={(l, only) => {
                  const h = only ? range.series.map((s) => s.label).filter((x) => x !== l) : hidden.has(l) ? st.hidden.filter((x) => x !== l) : [...st.hidden, l];
                  set({ hidden: h });
                }}
              />
              )}
            </div>
          )}
        </>
      )}
      {st.tab === 'table' && inst && (
        <>
          <Notes warnings={inst.warnings} infos={inst.infos} />
          <ResultTable r={inst} />
        </>
      )}
      {st.tab === 'explain' && <Explain expr={st.expr} />}
      {!st.expr.trim() && <p class="muted">Enter a PromQL expression — levitated's event-window functions (increase_since, after_before_ratio, …) and MetricsQL WITH work too.</p>}
    </section>
  );
}
