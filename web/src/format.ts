// format.ts: numbers and label sets as the console shows them.

/** formatValue writes a sample value compactly (1.5k, 2.3M, 0.0123). */
export function formatValue(v: number | null | undefined): string {
  if (v === null || v === undefined) return '—';
  if (!isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e15 || a < 1e-4) return v.toExponential(2);
  for (const [n, s] of [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']] as const) {
    if (a >= n) return `${trim((v / n).toPrecision(3))}${s}`;
  }
  return trim(v.toPrecision(4));
}

function trim(s: string): string {
  return s.includes('.') && !s.includes('e') ? s.replace(/\.?0+$/, '') : s;
}

/** formatLabels writes a label set as PromQL does: name{a="b", …}. */
export function formatLabels(m: Record<string, string>): string {
  // A loop rather than entries, sort and map: a graph formats every
  // series' labels before it is drawn (500 series: 500 calls, cold).
  let name = '';
  const keys: string[] = [];
  for (const k of Object.keys(m)) {
    if (k === '__name__') name = m[k] ?? '';
    else keys.push(k);
  }
  for (let i = 1; i < keys.length; i++) {
    if (keys[i - 1] > keys[i]) {
      keys.sort();
      break;
    }
  }
  let inner = '';
  for (let i = 0; i < keys.length; i++) inner += (i ? ', ' : '') + keys[i] + '=' + JSON.stringify(m[keys[i]]);
  return inner ? `${name}{${inner}}` : name || '{}';
}
