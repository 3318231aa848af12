// NativeForm.tsx: run a native analysis (POST /api/v1/analysis) of a
// change window or the last period: baseline and canary matchers, the
// metrics as PromQL. It is offered only to tokens with the analysis scope,
// and it writes nothing (the judge reads metrics and answers).
import { useState } from 'preact/hooks';
import { request } from '../api';
import { fromNative, type Judgement } from './model';
import { JudgementView } from './JudgementView';
import { ErrorAlert } from '../ui/Alert';
import { Field } from '../ui/Field';

export interface NativeFormProps {
  eventId?: string; // judge this change window
  service?: string;
}

const defaultMetrics = (svc: string) => {
  const s = svc ? `service=${JSON.stringify(svc)}, ` : '';
  return [
    `error-ratio | increase | sum(rate(http_requests_total{${s}code=~"5.."}[1m])) / sum(rate(http_requests_total{${s.replace(/, $/, '')}}[1m]))`,
    `latency-p99 | increase | histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{${s.replace(/, $/, '')}}[1m])))`,
  ].join('\n');
};

export function NativeForm(p: NativeFormProps) {
  const [baseline, setBaseline] = useState('version="stable"');
  const [canary, setCanary] = useState('version="canary"');
  const [lookback, setLookback] = useState('30m');
  const [metrics, setMetrics] = useState(defaultMetrics(p.service ?? ''));
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<unknown>(null);
  const [res, setRes] = useState<Judgement | null>(null);

  const run = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    setRes(null);
    try {
      const body: any = {
        baseline,
        canary,
        metrics: metrics
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => {
            const [name, direction, ...q] = l.split('|');
            return { name: name.trim(), direction: direction.trim(), query: q.join('|').trim() };
          }),
      };
      if (p.eventId) body.window = { event_id: p.eventId };
      else body.lookback = lookback;
      const r = await request<any>('/api/v1/analysis', { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
      setRes(fromNative(r));
    } catch (x) {
      setErr(x);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="card native-form" onSubmit={run} aria-label="Native analysis">
      <div class="controls">
        <Field label="Baseline" value={baseline} onInput={setBaseline} width="14em" testid="na-baseline" />
        <Field label="Canary" value={canary} onInput={setCanary} width="14em" testid="na-canary" />
        {!p.eventId && <Field label="Last" value={lookback} onInput={setLookback} width="5em" />}
      </div>
      <label class="field block">
        <span>Metrics, one a line: name | direction (increase, decrease, either) | PromQL</span>
        <textarea rows={3} value={metrics} onInput={(e) => setMetrics((e.target as HTMLTextAreaElement).value)} data-testid="na-metrics" />
      </label>
      <button class="primary" type="submit" disabled={busy} data-testid="na-run">
        {busy ? 'Judging…' : p.eventId ? 'Judge this change' : 'Judge'}
      </button>
      <ErrorAlert err={err} />
      {res && <JudgementView j={res} />}
    </form>
  );
}
