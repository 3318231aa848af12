// Analyses.tsx: the canary judgements: Kayenta-compatible executions with
// score, verdict, thresholds and time, and a native analysis on demand.
import { useEffect, useState } from 'preact/hooks';
import { kayentaExecutions, fromKayenta, type Judgement } from '../analyses/model';
import { VerdictBadge } from '../analyses/JudgementView';
import { NativeForm } from '../analyses/NativeForm';
import { useSession, can } from '../session';
import { ErrorAlert } from '../ui/Alert';
import { formatTime } from '../time';

export function AnalysesPage() {
  const who = useSession();
  const allowed = can(who, 'analysis');
  const [list, setList] = useState<Judgement[] | null>(null);
  const [err, setErr] = useState<unknown>(null);
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
      {allowed && (
        <details>
          <summary>Run a native analysis</summary>
          <NativeForm />
        </details>
      )}
    </section>
  );
}
