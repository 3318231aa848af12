// Strip.tsx: baseline against canary for one metric: each side's samples as
// a strip of dots (when known) over a box of min, mean ± std and max, on one
// shared axis.
import type { MetricVerdict, Stats } from './model';
import { formatValue } from '../format';

const W = 320;
const H = 56;

export function Strip({ m }: { m: MetricVerdict }) {
  const all = [...(m.baselineValues ?? []), ...(m.canaryValues ?? [])];
  for (const s of [m.baseline, m.canary]) if (s && s.count) all.push(s.min, s.max);
  if (!all.length) return <span class="muted small">no samples</span>;
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (lo === hi) (lo -= 1), (hi += 1);
  const x = (v: number) => 58 + ((v - lo) / (hi - lo)) * (W - 66);
  const row = (y: number, s: Stats | undefined, vals: number[] | undefined, cls: string) => (
    <g class={cls}>
      {s && s.count > 0 && (
        <>
          <line x1={x(s.min)} x2={x(s.max)} y1={y} y2={y} class="whisker" />
          <rect x={x(Math.max(s.min, s.mean - s.stddev))} y={y - 6} width={Math.max(1, x(Math.min(s.max, s.mean + s.stddev)) - x(Math.max(s.min, s.mean - s.stddev)))} height="12" class="box" />
          <line x1={x(s.mean)} x2={x(s.mean)} y1={y - 8} y2={y + 8} class="mean" />
        </>
      )}
      {(vals ?? []).slice(0, 2000).map((v, i) => (
        <circle key={i} cx={x(v)} cy={y + ((i * 7919) % 9) - 4} r="1.3" class="dot" />
      ))}
    </g>
  );
  return (
    <svg class="strip" viewBox={`0 0 ${W} ${H}`} width={W} height={H} role="img" aria-label={`${m.name}: baseline mean ${formatValue(m.baseline?.mean)}, canary mean ${formatValue(m.canary?.mean)}`}>
      <text x="2" y="21" class="strip-label">baseline</text>
      {row(18, m.baseline, m.baselineValues, 'side-baseline')}
      <text x="2" y="47" class="strip-label">canary</text>
      {row(44, m.canary, m.canaryValues, 'side-canary')}
    </svg>
  );
}
