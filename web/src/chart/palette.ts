// palette.ts: series and event colours, stable for a given key.
const series = ['#3b82f6', '#ef4444', '#10b981', '#f59e0b', '#8b5cf6', '#ec4899', '#14b8a6', '#f97316', '#6366f1', '#84cc16', '#06b6d4', '#d946ef'];
const events = ['#a855f7', '#0ea5e9', '#f59e0b', '#22c55e', '#ef4444', '#64748b', '#d946ef', '#14b8a6', '#eab308'];

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export function seriesColor(i: number): string {
  return series[i % series.length];
}

export function eventColor(name: string): string {
  return events[(hash(name) >>> 3) % events.length];
}
