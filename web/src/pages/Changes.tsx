// Changes.tsx: the change events and windows of a time range, searchable by
// name, attribute matchers and open-only, kept live by the events tail.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { listEvents, tailEvents, spans as toSpans, splitMatchers, describe, impactMarks, analysisMarks, analysisSourceTitle, withoutJudgements, type ChangeEvent } from '../events';
import { VerdictBadge } from '../analyses/JudgementView';
import { decodeChanges, encodeChanges, type ChangesState } from '../url';
import { replace } from '../router';
import { parseDuration, formatTime, formatDuration, ago } from '../time';
import { Timeline } from '../changes/Timeline';
import { ErrorAlert } from '../ui/Alert';
import { Field } from '../ui/Field';
import { eventColor } from '../chart/palette';
import { useDebounced } from '../debounce';

export function ChangesPage({ search }: { search: string }) {
  const st = useMemo(() => decodeChanges(search), [search]);
  const [evs, setEvs] = useState<ChangeEvent[] | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [live, setLive] = useState<'connecting' | 'live' | 'off'>('connecting');
  const [tick, setTick] = useState(0);
  const set = (p: Partial<ChangesState>) => replace(`/changes?${encodeChanges({ ...st, ...p })}`);
  const name = useDebounced(st.name);
  const match = useDebounced(st.match);
  const rangeSec = parseDuration(useDebounced(st.range));
  const now = Date.now() / 1000;

  useEffect(() => {
    if (!(rangeSec > 0)) return;
    const ac = new AbortController();
    setErr(null);
    listEvents({ start: Date.now() / 1000 - rangeSec, name: name || undefined, match: splitMatchers(match), openOnly: st.openOnly }, 5000, ac.signal)
      .then(setEvs)
      .catch((e) => !ac.signal.aborted && setErr(e));
    return () => ac.abort();
  }, [name, match, rangeSec, st.openOnly, tick]);

  // Live: any new matching event re-reads the list (a stop changes its window).
  const pending = useRef<number>();
  // The status is the tail's own: live once the server has subscribed it,
  // not live once it fails or ends.
  useEffect(() => {
    const ac = new AbortController();
    setLive('connecting');
    tailEvents(
      { name: name || undefined, match: splitMatchers(match) },
      () => {
        clearTimeout(pending.current);
        pending.current = window.setTimeout(() => setTick((t) => t + 1), 250);
      },
      ac.signal,
      () => setLive('live'),
    ).then(
      () => !ac.signal.aborted && setLive('off'),
      () => !ac.signal.aborted && setLive('off'),
    );
    return () => ac.abort();
  }, [name, match]);

  // Judgements (change_impact, change_analysis) are shown on the change
  // they judge, not as changes of their own.
  const spans = useMemo(() => toSpans(withoutJudgements(evs ?? [], name)).sort((a, b) => b.start - a.start), [evs, name]);
  const marks = useMemo(() => impactMarks(evs ?? []), [evs]);
  const analyses = useMemo(() => analysisMarks(evs ?? []), [evs]);

  return (
    <section class="page" aria-labelledby="changes-h">
      <div class="page-head">
        <h1 id="changes-h">Changes</h1>
        <span class={`live ${live}`} role="status" data-testid="changes-live" data-state={live}>
          {live === 'live' ? '● live' : live === 'connecting' ? '○ connecting' : '○ not live'}
        </span>
      </div>
      <div class="controls" role="search">
        <Field label="Event name" value={st.name} placeholder="all" testid="changes-name" onInput={(v) => set({ name: v })} />
        <Field label="Attributes" value={st.match} placeholder={'service="checkout", env=~"prod.*"'} width="18em" testid="changes-match" onInput={(v) => set({ match: v })} />
        <Field label="Last" value={st.range} width="5em" onInput={(v) => set({ range: v })} />
        <label class="check">
          <input type="checkbox" checked={st.openOnly} onChange={(e) => set({ openOnly: (e.target as HTMLInputElement).checked })} /> Open only
        </label>
      </div>
      {!(rangeSec > 0) && <div class="alert error">Last: "{st.range}" is not a duration such as 24h.</div>}
      <ErrorAlert err={err} />
      {evs && spans.length > 0 && <Timeline spans={spans} start={now - rangeSec} end={now} />}
      {evs && (
        <table class="table" data-testid="changes">
          <caption class="sr-only">Change events</caption>
          <thead>
            <tr>
              <th scope="col">Change</th>
              <th scope="col">Attributes</th>
              <th scope="col">Started (UTC)</th>
              <th scope="col">Duration</th>
              <th scope="col">Source</th>
            </tr>
          </thead>
          <tbody>
            {spans.map((s) => (
              <tr key={s.id} data-id={s.id}>
                <td>
                  <span class="swatch" style={{ background: eventColor(s.name) }} />
                  <a href={`/changes/${s.id}`}>{s.name}</a> {s.open && <span class="badge open">open</span>}
                  {s.end === undefined && <span class="badge">point</span>}
                  {marks.has(s.id) && (
                    <>
                      <span class="muted small">impact </span>
                      <span data-testid="impact-mark" title={`automatic impact verdict, score ${marks.get(s.id)!.score ?? '—'}${marks.get(s.id)!.failing ? `; failing: ${marks.get(s.id)!.failing}` : ''}`}>
                        <VerdictBadge v={marks.get(s.id)!.verdict} />
                      </span>
                    </>
                  )}
                  {analyses.has(s.id) && (
                    <span
                      data-testid="analysis-mark"
                      title={`${analysisSourceTitle(analyses.get(s.id)!.source)}, score ${analyses.get(s.id)!.score ?? '—'}${analyses.get(s.id)!.failing ? `; failing: ${analyses.get(s.id)!.failing}` : ''}`}
                    >
                      {' '}
                      <span class="muted small">analysis</span> <VerdictBadge v={analyses.get(s.id)!.verdict} />
                    </span>
                  )}
                  {s.ev.text && <div class="muted small clamp">{s.ev.text}</div>}
                </td>
                <td class="mono small">{describe(s.ev.attributes)}</td>
                <td title={ago(s.start)}>{formatTime(s.start)}</td>
                <td>{s.end === undefined ? '—' : s.open ? `${formatDuration(Math.round(now - s.start))} so far` : formatDuration(Math.round(s.end - s.start))}</td>
                <td class="muted small">{s.ev.source ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {evs && spans.length === 0 && <p class="muted">No changes in the last {st.range}.</p>}
    </section>
  );
}
