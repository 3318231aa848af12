// ForChange.tsx: the judgements of a change: Kayenta executions whose
// canary scope overlaps the change window, and (for tokens with the
// analysis scope) a native analysis of the window on demand.
import { useEffect, useState } from 'preact/hooks';
import { listEvents, analysisEventName, analysisSourceTitle, newestFirst, signalList, type ChangeEvent } from '../events';
import { formatTime } from '../time';
import { kayentaExecutions, fromKayenta, type Judgement } from './model';
import { VerdictBadge } from './JudgementView';
import { NativeForm } from './NativeForm';
import { useSession, can } from '../session';
import { ApiError } from '../api';

export function KayentaForChange({ ev, start, end }: { ev: ChangeEvent; start: number; end: number }) {
  const who = useSession();
  const allowed = can(who, 'analysis');
  const [list, setList] = useState<Judgement[] | null>(null);
  const [recorded, setRecorded] = useState<ChangeEvent[] | null>(null);
  const [err, setErr] = useState('');
  // The analyses recorded of this change (change_analysis events naming
  // it: native analyses, Flagger webhooks, Kayenta executions), newest
  // first; recorded once they end, so not before the change began.
  useEffect(() => {
    const ac = new AbortController();
    setRecorded(null);
    listEvents({ start: start - 60, name: analysisEventName, match: [`change_id="${ev.id}"`] }, 200, ac.signal)
      .then((xs) => setRecorded(newestFirst(xs)))
      .catch((e) => !ac.signal.aborted && setErr(e instanceof ApiError ? e.explain() : String(e)));
    return () => ac.abort();
  }, [ev.id, start]);
  useEffect(() => {
    if (!allowed) return;
    kayentaExecutions(200)
      .then((xs) =>
        setList(
          xs.map((x) => fromKayenta(x)).filter((j) => {
            const a = j.start ? Date.parse(j.start) / 1000 : NaN;
            const b = j.end ? Date.parse(j.end) / 1000 : NaN;
            return a < Math.max(end, start + 1) && b > start;
          }),
        ),
      )
      .catch((e) => setErr(e instanceof ApiError ? e.explain() : String(e)));
  }, [ev.id, allowed]);
  return (
    <>
      <h2>Judgements</h2>
      {!allowed && <p class="muted">This token has no analysis scope: Kayenta executions covering this change are not shown.</p>}
      {err && <div class="alert error">{err}</div>}
      {recorded && recorded.length > 0 && (
        <ul class="plain" data-testid="recorded-analyses">
          {recorded.map((a) => (
            <li key={a.id} data-id={a.id}>
              <VerdictBadge v={a.attributes?.verdict} /> {analysisSourceTitle(a.attributes?.source)}, score {a.attributes?.score ?? '—'}
              {a.attributes?.failing_signals && <span class="small"> · failing: {signalList(a.attributes.failing_signals)}</span>}{' '}
              <span class="muted small">· recorded {formatTime(Date.parse(a.timestamp) / 1000)}</span>
            </li>
          ))}
        </ul>
      )}
      {list && list.length === 0 && <p class="muted">No Kayenta execution covers this change.</p>}
      {list && list.length > 0 && (
        <ul class="plain">
          {list.map((j) => (
            <li key={j.id}>
              <VerdictBadge v={j.verdict} /> <a href={`/analyses/${j.id}`}>{j.title}</a> score {j.score ?? '—'} <span class="muted small">{j.start} → {j.end}</span>
            </li>
          ))}
        </ul>
      )}
      {allowed && ev.state === 'start' && (
        <details>
          <summary>Judge this change with the native judge</summary>
          <NativeForm eventId={ev.id} service={ev.attributes?.service} />
        </details>
      )}
    </>
  );
}
