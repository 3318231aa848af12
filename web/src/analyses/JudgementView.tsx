// JudgementView.tsx: a judgement: score, verdict and thresholds, then per
// metric its classification, the two sides' distributions, the ratio, the
// confidence interval of the shift against the tolerance band, and the
// judge's sentence.
import type { Judgement, MetricVerdict } from './model';
import { Strip } from './Strip';
import { formatValue } from '../format';

export function VerdictBadge({ v }: { v?: string }) {
  if (!v) return <span class="badge">—</span>;
  return <span class={`badge verdict-${v.toLowerCase()}`}>{v}</span>;
}

function interval(m: MetricVerdict): string {
  if (m.shift === undefined) return '—';
  const sign = (v: number) => (v >= 0 ? '+' : '') + formatValue(v);
  return `${sign(m.shift)} [${sign(m.shiftLower ?? m.shift)}, ${sign(m.shiftUpper ?? m.shift)}] ± band ${formatValue(m.band)}`;
}

export function JudgementView({ j }: { j: Judgement }) {
  return (
    <div class="judgement" data-testid="judgement">
      <div class="score-line">
        <span class="score" data-testid="score">
          {j.score === undefined ? '—' : j.score}
        </span>
        <VerdictBadge v={j.verdict} />
        <span class="muted">
          thresholds: pass ≥ {j.pass ?? 95}, marginal ≥ {j.marginal ?? 75} · {j.kind === 'native' ? 'native judge' : 'Kayenta-compatible execution'} · {j.status}
        </span>
      </div>
      {j.reason && <div class="alert warning">{j.reason}</div>}
      {j.error && <div class="alert error">{j.error}</div>}
      {j.start && (
        <p class="muted small">
          Canary analysed {j.start} → {j.end}
        </p>
      )}
      <table class="table metrics" data-testid="metric-verdicts">
        <thead>
          <tr>
            <th scope="col">Metric</th>
            <th scope="col">Classification</th>
            <th scope="col">Baseline vs canary</th>
            <th scope="col" class="num">
              Ratio
            </th>
            <th scope="col">Shift (CI)</th>
          </tr>
        </thead>
        <tbody>
          {j.metrics.map((m, i) => (
            <>
              <tr key={`${i}a`} data-metric={m.name} class="metric-row">
                <th scope="row">
                  {m.name}
                  {m.critical && <span class="badge crit">critical</span>}
                  {Object.keys(m.labels).length > 0 && <div class="mono small muted">{JSON.stringify(m.labels)}</div>}
                </th>
                <td>
                  <span class={`badge cls-${m.classification.toLowerCase()}`} data-testid="classification">
                    {m.classification}
                  </span>
                </td>
                <td>
                  <Strip m={m} />
                  <div class="small muted">
                    mean {formatValue(m.baseline?.mean)} ({m.baseline?.count ?? 0}) vs {formatValue(m.canary?.mean)} ({m.canary?.count ?? 0})
                  </div>
                </td>
                <td class="num mono">{m.ratio === undefined || m.ratio === null ? '—' : `${m.ratio.toFixed(3)}×`}</td>
                <td class="mono small">{interval(m)}</td>
              </tr>
              <tr key={`${i}b`} class="explain-row">
                <td colSpan={5} class="explanation">
                  {m.explanation || <span class="muted">No explanation given.</span>}
                </td>
              </tr>
            </>
          ))}
        </tbody>
      </table>
    </div>
  );
}
