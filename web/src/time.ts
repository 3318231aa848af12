// time.ts: Prometheus durations and times, as the query page's inputs and
// URLs write them.
const units: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };

/** parseDuration reads "1h30m", "15s", "2d" (or plain seconds) into seconds; NaN if invalid. */
export function parseDuration(s: string): number {
  s = s.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const re = /(\d+)(ms|s|m|h|d|w|y)/y;
  let total = 0;
  let i = 0;
  while (i < s.length) {
    re.lastIndex = i;
    const m = re.exec(s);
    if (!m) return NaN;
    total += Number(m[1]) * units[m[2]];
    i = re.lastIndex;
  }
  return s.length ? total : NaN;
}

/** formatDuration writes seconds as a Prometheus duration ("1h30m"). */
export function formatDuration(sec: number): string {
  if (!isFinite(sec) || sec <= 0) return '0s';
  if (sec < 1) return `${Math.round(sec * 1000)}ms`;
  let out = '';
  for (const [u, n] of [['w', 604800], ['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (sec >= n) {
      const q = Math.floor(sec / n);
      out += `${q}${u}`;
      sec -= q * n;
    }
  }
  return out;
}

/** parseTime reads RFC 3339, "2026-01-15 12:00:00" (UTC) or Unix seconds into Unix seconds; NaN if invalid. */
export function parseTime(s: string): number {
  s = s.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const iso = /^\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(s) ? s.replace(' ', 'T') + 'Z' : s;
  const ms = Date.parse(iso);
  return isNaN(ms) ? NaN : ms / 1000;
}

/** formatTime writes Unix seconds as "2026-01-15 12:00:00" UTC. */
export function formatTime(sec: number): string {
  if (!isFinite(sec) || Math.abs(sec) > 8.64e12) return '—';
  return new Date(sec * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '').replace('Z', '');
}

/** isoTime writes Unix seconds as RFC 3339. */
export function isoTime(sec: number): string {
  if (!isFinite(sec) || Math.abs(sec) > 8.64e12) return '—';
  return new Date(sec * 1000).toISOString();
}

/** defaultStep picks Prometheus UI's step: range / 250, at least 1s, rounded. */
export function defaultStep(rangeSec: number): number {
  return Math.max(1, Math.round(rangeSec / 250));
}

/** ago writes how long before now t was ("3m ago"). */
export function ago(sec: number, now = Date.now() / 1000): string {
  const d = now - sec;
  if (d < 0) return `in ${formatDuration(-d)}`;
  if (d < 1) return 'just now';
  const f = formatDuration(Math.round(d));
  return `${f.match(/^\d+[a-z]+/)?.[0] ?? f} ago`;
}
