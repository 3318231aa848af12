// red.ts: the RED signals of the service a change names.
//
// The join: a change's attribute `service` is matched to the label
// `service` of the metrics (as PromQL's event-window functions join a
// window to the series that share its labels). The queries are the
// conventional names of Prometheus' HTTP instrumentation:
// http_requests_total{code} and http_request_duration_seconds_bucket.
export interface Signal {
  key: string;
  title: string;
  query: string;
  unit: string;
}

/** selectorFor builds the label matchers of a change: service="…" (else nothing). */
export function selectorFor(attrs: Record<string, string> = {}): string {
  return attrs.service ? `service=${JSON.stringify(attrs.service)}` : '';
}

export function redSignals(sel: string): Signal[] {
  const s = sel ? `{${sel}}` : '';
  const and = (extra: string) => `{${[sel, extra].filter(Boolean).join(', ')}}`;
  return [
    { key: 'rate', title: 'Requests per second', query: `sum(rate(http_requests_total${s}[1m]))`, unit: 'req/s' },
    {
      key: 'errors',
      title: 'Error ratio (5xx)',
      query: `sum(rate(http_requests_total${and('code=~"5.."')}[1m])) / sum(rate(http_requests_total${s}[1m]))`,
      unit: '',
    },
    {
      key: 'p99',
      title: 'p99 latency',
      query: `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket${s}[1m])))`,
      unit: 's',
    },
  ];
}
