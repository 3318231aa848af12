// Change.tsx: one change. Its window over the RED signals of the service it
// names, the before / during / after figures, and the judgements of it.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { getEvent, spans as toSpans, describe, type ChangeEvent } from '../events';
import { queryRange, meanIn, type RangeResult } from '../query/data';
import { Chart } from '../chart/Chart';
import { redSignals, selectorFor } from '../changes/red';
import { navigate, replace } from '../router';
import { formatTime, formatDuration, defaultStep, isoTime } from '../time';
import { formatValue } from '../format';
import { ErrorAlert } from '../ui/Alert';
import { Field } from '../ui/Field';
import { encodeQuery, defaultQuery } from '../url';
import { KayentaForChange } from '../analyses/ForChange';
import { ImpactVerdict } from '../analyses/Impact';

export function ChangePage({ id, search }: { id: string; search: string }) {
  const [ev, setEv] = useState<ChangeEvent | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const sp = new URLSearchParams(search);
  useEffect(() => {
    setEv(null);
    setErr(null);
    getEvent(id)
      .then((e) => {
        // A stop that closed a window shows its window.
        if (e.state === 'stop' && e.window?.start_id && e.window.start_id !== id) navigate(`/changes/${e.window.start_id}`);
        else setEv(e);
      })
      .catch(setErr);
  }, [id]);

  if (err) return <section class="page"><h1>Change</h1><ErrorAlert err={err} /></section>;
  if (!ev) return <section class="page"><p class="muted">Loading…</p></section>;

  const span = toSpans([ev])[0];
  const start = span.start;
  const end = span.end ?? start;
  const sel = sp.get('sel') ?? selectorFor(ev.attributes);
  return (
    <section class="page" aria-labelledby="change-h">
      <p class="crumbs">
        <a href="/changes">Changes</a> ›
      </p>
      <h1 id="change-h">
        {ev.name} {span.open && <span class="badge open">open</span>}
      </h1>
      <dl class="facts" data-testid="change-facts">
        <dt>When (UTC)</dt>
        <dd>
          {formatTime(start)}
          {span.end !== undefined && ` → ${span.open ? 'now' : formatTime(end)} (${formatDuration(Math.round(end - start))}${span.open ? ' so far' : ''})`}
          {span.end === undefined && ' (point event)'}
        </dd>
        {describe(ev.attributes) && (
          <>
            <dt>Attributes</dt>
            <dd class="mono">{describe(ev.attributes)}</dd>
          </>
        )}
        {ev.text && (
          <>
            <dt>Text</dt>
            <dd>{ev.text}</dd>
          </>
        )}
        {ev.url && (
          <>
            <dt>Link</dt>
            <dd>
              <a href={ev.url} target="_blank" rel="noopener noreferrer">
                {ev.url}
              </a>
            </dd>
          </>
        )}
        {ev.source && (
          <>
            <dt>Sent by</dt>
            <dd>{ev.source}</dd>
          </>
        )}
        <dt>Id</dt>
        <dd class="mono small">{ev.id}</dd>
      </dl>
      <Field
        label="Series of this change (label matchers; from its service attribute)"
        value={sel}
        width="24em"
        testid="change-sel"
        onInput={(v) => {
          const p = new URLSearchParams(search);
          p.set('sel', v);
          replace(`/changes/${id}?${p}`);
        }}
      />
      <RedFigures ev={ev} start={start} end={end} sel={sel} />
      <ImpactVerdict id={ev.id} />
      <KayentaForChange ev={ev} start={start} end={end} />
    </section>
  );
}

/**
 * RedFigures: the RED signals over [start − D, end + D], D the window's
 * length (at least 5 minutes), with the mean before, during and after.
 */
function RedFigures({ ev, start, end, sel }: { ev: ChangeEvent; start: number; end: number; sel: string }) {
  const now = Date.now() / 1000;
  const d = Math.max(300, end - start);
  const from = Math.floor(start - d);
  const to = Math.min(Math.ceil(end + d), Math.floor(now));
  const step = defaultStep(to - from);
  const signals = useMemo(() => redSignals(sel), [sel]);
  const [res, setRes] = useState<Record<string, RangeResult | Error>>({});
  useEffect(() => {
    setRes({});
    const ac = new AbortController();
    for (const s of signals) {
      queryRange(s.query, from, to, step, ac.signal)
        .then((r) => setRes((m) => ({ ...m, [s.key]: r })))
        .catch((e) => !ac.signal.aborted && setRes((m) => ({ ...m, [s.key]: e })));
    }
    return () => ac.abort();
  }, [signals, from, to, step]);
  const spanList = useMemo(() => toSpans([ev]), [ev]);
  const periods: [string, number, number][] = [
    ['before', start - d, start],
    ['during', start, end],
    ['after', end, end + d],
  ];
  return (
    <>
      <h2>Before, during and after</h2>
      <p class="muted small">
        Means over {formatDuration(Math.round(d))} before the change, the change itself, and {formatDuration(Math.round(d))} after it, at a {step}s step.
      </p>
      <table class="table figures" data-testid="figures" data-from={from} data-to={to} data-step={step}>
        <thead>
          <tr>
            <th scope="col">Signal</th>
            {periods.map(([n]) => (
              <th scope="col" class="num" key={n}>
                {n}
              </th>
            ))}
            <th scope="col" class="num">
              during ÷ before
            </th>
          </tr>
        </thead>
        <tbody>
          {signals.map((s) => {
            const r = res[s.key];
            const data = r && !(r instanceof Error) ? r : null;
            const vals = periods.map(([, a, b]) => (data && data.series[0] && b <= now ? meanIn(data.xs, data.series[0].values, a, b) : null));
            const ratio = vals[0] && vals[1] !== null ? vals[1] / vals[0] : null;
            return (
              <tr key={s.key} data-signal={s.key}>
                <th scope="row">
                  <a href={`/query?${encodeQuery({ ...defaultQuery, expr: s.query, range: formatDuration(to - from), end: formatTime(to), evName: ev.name })}`}>{s.title}</a>
                </th>
                {vals.map((v, i) => (
                  <td class="num mono" key={i} data-period={periods[i][0]} data-value={v ?? ''}>
                    {r instanceof Error ? '!' : formatValue(v)}
                    {v !== null && s.unit ? ` ${s.unit}` : ''}
                  </td>
                ))}
                <td class={`num mono ${ratio !== null && ratio > 1.2 ? 'worse' : ''}`}>{ratio === null ? '—' : `${ratio.toFixed(2)}×`}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <div class="grid3">
        {signals.map((s) => {
          const r = res[s.key];
          return (
            <figure key={s.key} class="card">
              <figcaption>{s.title}</figcaption>
              {r instanceof Error ? (
                <ErrorAlert err={r} />
              ) : !r ? (
                <p class="muted">Loading…</p>
              ) : r.series.length === 0 ? (
                <p class="muted small">No data for {s.query}</p>
              ) : (
                <Chart xs={r.xs} series={r.series} spans={spanList} height={180} title={s.title} />
              )}
            </figure>
          );
        })}
      </div>
      <p class="muted small">Window: {isoTime(start)} → {isoTime(end)}.</p>
    </>
  );
}
