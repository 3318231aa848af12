// url.ts: every view's state lives in the URL, so that a pasted link opens
// the same view. The query page uses the Prometheus UI's own parameter names
// (g0.expr, g0.tab, g0.range_input, g0.end_input, g0.step_input,
// g0.display_mode), so Prometheus' /graph?g0.expr=… links open here.

export interface QueryState {
  expr: string;
  tab: 'graph' | 'table' | 'explain';
  range: string; // a duration, "1h"
  end: string; // empty for now, else a time
  step: string; // empty for automatic, else a duration
  stacked: boolean;
  evName: string; // change events to draw: event name (empty for all)
  evMatch: string; // attribute matchers, `service="checkout"`
  hidden: string[]; // series hidden in the legend, by label set
}

export const defaultQuery: QueryState = {
  expr: '',
  tab: 'graph',
  range: '1h',
  end: '',
  step: '',
  stacked: false,
  evName: '',
  evMatch: '',
  hidden: [],
};

export function decodeQuery(search: string): QueryState {
  const p = new URLSearchParams(search);
  const tab = p.get('g0.tab');
  return {
    expr: p.get('g0.expr') ?? '',
    // The classic UI wrote 0 for the graph and 1 for the table.
    tab: tab === '1' || tab === 'table' ? 'table' : tab === 'explain' ? 'explain' : 'graph',
    range: p.get('g0.range_input') || '1h',
    end: p.get('g0.end_input') ?? '',
    step: p.get('g0.step_input') ?? '',
    stacked: p.get('g0.display_mode') === 'stacked' || p.get('g0.stacked') === '1',
    evName: p.get('ev.name') ?? '',
    evMatch: p.get('ev.match') ?? '',
    hidden: p.getAll('g0.hide'),
  };
}

export function encodeQuery(s: QueryState): string {
  const p = new URLSearchParams();
  p.set('g0.expr', s.expr);
  p.set('g0.tab', s.tab);
  p.set('g0.range_input', s.range);
  if (s.end) p.set('g0.end_input', s.end);
  if (s.step) p.set('g0.step_input', s.step);
  p.set('g0.display_mode', s.stacked ? 'stacked' : 'lines');
  if (s.evName) p.set('ev.name', s.evName);
  if (s.evMatch) p.set('ev.match', s.evMatch);
  for (const h of s.hidden) p.append('g0.hide', h);
  return p.toString();
}

/** ChangesState is the Changes page's filter. */
export interface ChangesState {
  name: string;
  match: string;
  range: string;
  openOnly: boolean;
}

export function decodeChanges(search: string): ChangesState {
  const p = new URLSearchParams(search);
  return { name: p.get('name') ?? '', match: p.get('match') ?? '', range: p.get('range') || '24h', openOnly: p.get('open') === '1' };
}

export function encodeChanges(s: ChangesState): string {
  const p = new URLSearchParams();
  if (s.name) p.set('name', s.name);
  if (s.match) p.set('match', s.match);
  p.set('range', s.range);
  if (s.openOnly) p.set('open', '1');
  return p.toString();
}
