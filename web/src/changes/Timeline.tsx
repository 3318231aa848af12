// Timeline.tsx: change windows and point events on one time axis, a row
// per event name; each links to its change page.
import type { Span } from '../events';
import { eventColor } from '../chart/palette';
import { formatTime } from '../time';

export function Timeline({ spans, start, end }: { spans: Span[]; start: number; end: number }) {
  const names = [...new Set(spans.map((s) => s.name))].sort();
  const W = 1000;
  const row = 22;
  const x = (t: number) => ((Math.min(Math.max(t, start), end) - start) / (end - start || 1)) * W;
  const ticks = Array.from({ length: 5 }, (_, i) => start + ((end - start) * i) / 4);
  return (
    <svg class="timeline" viewBox={`0 0 ${W} ${names.length * row + 18}`} preserveAspectRatio="none" role="img" aria-label={`Timeline of ${spans.length} changes`}>
      {names.map((n, i) => (
        <g key={n}>
          <line x1="0" x2={W} y1={i * row + row / 2} y2={i * row + row / 2} class="tl-row" />
          {spans
            .filter((s) => s.name === n)
            .map((s) => (
              <a key={s.id} href={`/changes/${s.id}`}>
                <title>{`${s.name} ${formatTime(s.start)}${s.end !== undefined ? ` → ${s.open ? 'now' : formatTime(s.end)}` : ''}`}</title>
                {s.end === undefined ? (
                  <circle cx={x(s.start)} cy={i * row + row / 2} r="4" fill={eventColor(n)} />
                ) : (
                  <rect x={x(s.start)} y={i * row + 4} width={Math.max(2, x(s.end) - x(s.start))} height={row - 8} rx="2" fill={eventColor(n)} opacity={s.open ? 0.55 : 0.85} />
                )}
              </a>
            ))}
          <text x="4" y={i * row + row / 2 + 4} class="tl-label">
            {n}
          </text>
        </g>
      ))}
      {ticks.map((t, i) => (
        <text key={i} x={Math.min(x(t), W - 110)} y={names.length * row + 14} class="tl-tick">
          {formatTime(t).slice(5, 16)}
        </text>
      ))}
    </svg>
  );
}
