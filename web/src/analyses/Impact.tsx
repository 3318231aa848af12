// Impact.tsx: the automatic impact verdict of a change, as
// GET /api/v1/events/{id}/impact gives it (docs/impact.md): verdict, score,
// failing signals and the judge's sentences, then per comparison (after
// against before; canary against baseline) each signal's classification,
// the means of both sides, their ratio and the confidence interval of the
// shift against the tolerance band.
import { useEffect, useState } from 'preact/hooks';
import { request, ApiError } from '../api';
import { VerdictBadge } from './JudgementView';
import { formatValue } from '../format';
import { formatTime } from '../time';

export interface ImpactSignal {
  signal: string;
  labels?: Record<string, string>;
  classification: string;
  judged: boolean;
  critical: boolean;
  explanation: string;
  ratio?: number;
  baseline_count: number;
  canary_count: number;
  baseline_mean?: number;
  canary_mean?: number;
  shift?: number;
  shift_lower?: number;
  shift_upper?: number;
  tolerance_band?: number;
  query?: string;
}

export interface ImpactComparison {
  kind: string;
  verdict: string;
  score: number;
  start: string;
  end: string;
  baseline_start: string;
  baseline_end: string;
  baseline?: string;
  canary?: string;
  signals: ImpactSignal[];
}

export interface ImpactJudgement {
  verdict: string;
  score?: number;
  failing_signals: string[];
  explanation: string[];
  comparisons: ImpactComparison[];
  judged_at: string;
  event_id?: string;
}

export function getImpact(id: string, signal?: AbortSignal): Promise<ImpactJudgement> {
  return request<ImpactJudgement>(`/api/v1/events/${encodeURIComponent(id)}/impact`, { signal });
}

const kinds: Record<string, [string, string]> = {
  before_after: ['After against before', 'before'],
  canary_baseline: ['Canary against baseline', 'baseline'],
};

const when = (s: string) => formatTime(Date.parse(s) / 1000);

function shiftText(s: ImpactSignal): string {
  if (s.shift === undefined) return '—';
  const sign = (v: number) => (v >= 0 ? '+' : '') + formatValue(v);
  const ci = s.shift_lower !== undefined && s.shift_upper !== undefined ? ` [${sign(s.shift_lower)}, ${sign(s.shift_upper)}]` : '';
  const band = s.tolerance_band !== undefined ? ` ± band ${formatValue(s.tolerance_band)}` : '';
  return `${sign(s.shift)}${ci}${band}`;
}

/** ImpactVerdict reads and shows the change's automatic verdict. */
export function ImpactVerdict({ id }: { id: string }) {
  const [j, setJ] = useState<ImpactJudgement | null>(null);
  const [none, setNone] = useState('');
  const [err, setErr] = useState('');
  useEffect(() => {
    setJ(null);
    setNone('');
    setErr('');
    const ac = new AbortController();
    getImpact(id, ac.signal)
      .then(setJ)
      .catch((e) => {
        if (ac.signal.aborted) return;
        // 404: not judged (yet), with the server's reason.
        if (e instanceof ApiError && e.status === 404) setNone(e.message);
        else setErr(e instanceof ApiError ? e.explain() : String(e));
      });
    return () => ac.abort();
  }, [id]);
  return (
    <section aria-labelledby="impact-h" data-testid="impact" data-verdict={j?.verdict ?? ''} data-score={j?.score ?? ''}>
      <h2 id="impact-h">Automatic impact verdict</h2>
      {err && (
        <div class="alert error" role="alert">
          {err}
        </div>
      )}
      {none && (
        <p class="muted" data-testid="impact-none">
          No verdict: {none}
        </p>
      )}
      {!j && !none && !err && <p class="muted">Loading…</p>}
      {j && (
        <>
          <div class="score-line">
            <span class="score">{j.score === undefined ? '—' : formatValue(j.score)}</span>
            <VerdictBadge v={j.verdict} />
            <span class="muted">
              judged {when(j.judged_at)} UTC
              {j.failing_signals.length > 0 && (
                <>
                  {' '}
                  · failing: <span data-testid="impact-failing">{j.failing_signals.join(', ')}</span>
                </>
              )}
            </span>
          </div>
          {/* The judge's sentences: each comparison's, which repeat the
              signals' below; folded. */}
          <details class="impact-sentences">
            <summary>The judge's sentences</summary>
            {j.explanation.map((s, i) => (
              <p key={i} class="explanation" data-testid="impact-explanation">
                {s}
              </p>
            ))}
          </details>
          {j.comparisons.map((c) => {
            const [title, base] = kinds[c.kind] ?? [c.kind, 'baseline'];
            const other = base === 'before' ? 'after' : 'canary';
            return (
              <div key={c.kind} class="impact-comparison" data-comparison={c.kind}>
                <h3>
                  {title} <VerdictBadge v={c.verdict} /> <span class="muted small">score {formatValue(c.score)}</span>
                </h3>
                <p class="muted small">
                  {base} {when(c.baseline_start)} → {when(c.baseline_end)}, {other} {when(c.start)} → {when(c.end)} UTC
                  {c.baseline && ` · baseline ${c.baseline}, canary ${c.canary}`}
                </p>
                <div class="table-wrap">
                  <table class="table metrics">
                    <thead>
                      <tr>
                        <th scope="col">Signal</th>
                        <th scope="col">Classification</th>
                        <th scope="col" class="num">
                          {base} (n)
                        </th>
                        <th scope="col" class="num">
                          {other} (n)
                        </th>
                        <th scope="col" class="num">
                          Ratio
                        </th>
                        <th scope="col">Shift (CI)</th>
                      </tr>
                    </thead>
                    <tbody>
                      {c.signals.map((s, i) => (
                        <>
                          <tr key={`${i}a`} class={`metric-row ${s.judged ? '' : 'not-judged'}`} data-signal={s.signal} data-classification={s.classification} data-ratio={s.ratio ?? ''}>
                            <th scope="row">
                              {s.query ? <span title={s.query}>{s.signal}</span> : s.signal}
                              {s.critical && <span class="badge crit">critical</span>}
                              {s.labels && Object.keys(s.labels).length > 0 && <div class="mono small muted">{JSON.stringify(s.labels)}</div>}
                            </th>
                            <td>
                              <span class={`badge cls-${s.classification.toLowerCase()}`}>{s.classification}</span>
                              {!s.judged && <span class="muted small"> not judged</span>}
                            </td>
                            <td class="num mono">
                              {formatValue(s.baseline_mean)} ({s.baseline_count})
                            </td>
                            <td class="num mono">
                              {formatValue(s.canary_mean)} ({s.canary_count})
                            </td>
                            <td class="num mono">{s.ratio === undefined ? '—' : `${s.ratio.toFixed(3)}×`}</td>
                            <td class="mono small">{shiftText(s)}</td>
                          </tr>
                          <tr key={`${i}b`} class="explain-row">
                            <td colSpan={6} class="explanation">
                              {s.explanation || <span class="muted">No explanation given.</span>}
                            </td>
                          </tr>
                        </>
                      ))}
                    </tbody>
                  </table>
                </div>
              </div>
            );
          })}
        </>
      )}
    </section>
  );
}
