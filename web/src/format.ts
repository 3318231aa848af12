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
  const { __name__: name = '', ...rest } = m;
  const inner = Object.entries(rest)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(', ');
  return inner ? `${name}{${inner}}` : name || '{}';
}
