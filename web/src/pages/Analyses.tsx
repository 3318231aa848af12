// Analyses.tsx: the canary judgements: Kayenta-compatible executions with
// score, verdict, thresholds and time, and a native analysis on demand.
import { useEffect, useState } from 'preact/hooks';
import { kayentaExecutions, fromKayenta, type Judgement } from '../analyses/model';
import { VerdictBadge } from '../analyses/JudgementView';
import { NativeForm } from '../analyses/NativeForm';
import { useSession, can } from '../session';
import { ErrorAlert } from '../ui/Alert';
import { formatTime } from '../time';
import { listEvents, analysisEventName, analysisSourceTitle, newestFirst, signalList, type ChangeEvent } from '../events';

export function AnalysesPage() {
  const who = useSession();
  const allowed = can(who, 'analysis');
  const [list, setList] = useState<Judgement[] | null>(null);
  const [err, setErr] = useState<unknown>(null);
  // The other analyses recorded (native, Flagger webhooks; Kayenta's are
  // the executions above): their change_analysis events of the last week.
  const [recorded, setRecorded] = useState<ChangeEvent[] | null>(null);
  const [recErr, setRecErr] = useState<unknown>(null);
  useEffect(() => {
    const ac = new AbortController();
    listEvents({ start: Date.now() / 1000 - 7 * 86400, name: analysisEventName, match: ['source!="kayenta"'] }, 200, ac.signal)
      .then((xs) => setRecorded(newestFirst(xs).slice(0, 100)))
      .catch((e) => !ac.signal.aborted && setRecErr(e));
    return () => ac.abort();
  }, []);
  useEffect(() => {
    if (!allowed) return;
    kayentaExecutions(100)
      .then((xs) => setList(xs.map((x) => fromKayenta(x))))
      .catch(setErr);
  }, [allowed]);
  return (
    <section class="page" aria-labelledby="analyses-h">
      <h1 id="analyses-h">Analyses</h1>
      {!allowed && (
        <div class="alert info">
          This token ({who?.subject}) has no <code>analysis</code> scope, which canary judgements need: ask for a token with <code>--scope read,analysis</code>.
        </div>
      )}
      <ErrorAlert err={err} />
      {list && (
        <table class="table" data-testid="analyses">
          <caption class="sr-only">Kayenta-compatible executions</caption>
          <thead>
            <tr>
              <th scope="col">Execution</th>
              <th scope="col">Verdict</th>
              <th scope="col" class="num">
                Score
              </th>
              <th scope="col">Thresholds</th>
              <th scope="col">Canary period</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {list.map((j) => (
              <tr key={j.id} data-id={j.id}>
                <td>
                  <a href={`/analyses/${j.id}`}>{j.title}</a>
                  <div class="mono small muted">{j.id}</div>
                </td>
                <td>
                  <VerdictBadge v={j.verdict} />
                </td>
                <td class="num">{j.score ?? '—'}</td>
                <td class="small">
                  pass {j.pass ?? '—'}, marginal {j.marginal ?? '—'}
                </td>
                <td class="small">{j.start ? `${formatTime(Date.parse(j.start) / 1000)} → ${formatTime(Date.parse(j.end ?? j.start) / 1000)}` : '—'}</td>
                <td class="small">{j.status}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {list && list.length === 0 && <p class="muted">No Kayenta executions yet.</p>}
      <h2>Other analyses recorded</h2>
      <p class="muted small">Native analyses and Flagger webhooks of the last 7 days, newest first, as their change_analysis events record them.</p>
      <ErrorAlert err={recErr} />
      {recorded && recorded.length === 0 && <p class="muted">None.</p>}
      {recorded && recorded.length > 0 && (
        <table class="table" data-testid="recorded-analyses">
          <caption class="sr-only">Native analyses and Flagger webhooks</caption>
          <thead>
            <tr>
              <th scope="col">Analysis</th>
              <th scope="col">Verdict</th>
              <th scope="col" class="num">
                Score
              </th>
              <th scope="col">Failing</th>
              <th scope="col">Change judged</th>
              <th scope="col">Recorded (UTC)</th>
            </tr>
          </thead>
          <tbody>
            {recorded.map((e) => {
              const a = e.attributes ?? {};
              return (
                <tr key={e.id} data-id={e.id}>
                  <td>
                    {analysisSourceTitle(a.source)}
                    <div class="mono small muted">{a.analysis_id ?? e.id}</div>
                  </td>
                  <td>
                    <VerdictBadge v={a.verdict} />
                  </td>
                  <td class="num">{a.score ?? '—'}</td>
                  <td class="small">{a.failing_signals ? signalList(a.failing_signals) : '—'}</td>
                  <td class="small">
                    {a.change_id ? <a href={`/changes/${a.change_id}`}>{[a.change_name, a.change_service].filter(Boolean).join(' · ') || a.change_id}</a> : '—'}
                    {a.change_start && <div class="muted">from {formatTime(Number(a.change_start))}</div>}
                  </td>
                  <td class="small">{formatTime(Date.parse(e.timestamp) / 1000)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {allowed && (
        <details>
          <summary>Run a native analysis</summary>
          <NativeForm />
        </details>
      )}
    </section>
  );
}
