// Table.tsx: an instant query's result as a table, as Prometheus' UI shows it.
import type { InstantResult } from './data';
import { formatLabels } from '../format';
import { formatTime } from '../time';

export function ResultTable({ r }: { r: InstantResult }) {
  if (r.resultType === 'scalar' || r.resultType === 'string') {
    return (
      <table class="table" data-testid="result-table">
        <tbody>
          <tr>
            <th scope="row">{r.resultType}</th>
            <td class="num">{r.result[1]}</td>
          </tr>
        </tbody>
      </table>
    );
  }
  const rows = r.result as { metric: Record<string, string>; value?: [number, string]; values?: [number, string][]; histogram?: [number, any] }[];
  if (!rows.length) return <p class="muted">Empty query result.</p>;
  return (
    <table class="table" data-testid="result-table">
      <thead>
        <tr>
          <th scope="col">Series</th>
          <th scope="col" class="num">
            {r.resultType === 'matrix' ? 'Samples' : 'Value'}
          </th>
        </tr>
      </thead>
      <tbody>
        {rows.slice(0, 10000).map((s, i) => (
          <tr key={i}>
            <td class="mono">{formatLabels(s.metric)}</td>
            <td class="num mono">
              {s.value
                ? s.value[1]
                : s.histogram
                  ? `count ${s.histogram[1].count}, sum ${s.histogram[1].sum}`
                  : (s.values ?? []).map(([t, v]) => (
                      <div key={t}>
                        {v} <span class="muted">@{formatTime(t)}</span>
                      </div>
                    ))}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
