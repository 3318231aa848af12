// Legend.tsx: the series of a chart; a click shows or hides one, the filter
// narrows the list (and the chart) to the series that contain the text.
import { useState } from 'preact/hooks';

export interface LegendProps {
  items: { label: string; color: string }[];
  hidden: Set<string>;
  onToggle: (label: string, only: boolean) => void;
  filter: string;
  onFilter: (f: string) => void;
}

export function Legend(p: LegendProps) {
  const [limit, setLimit] = useState(200);
  const shown = p.items.filter((i) => !p.filter || i.label.includes(p.filter));
  return (
    <div class="legend">
      <label class="legend-filter">
        <span class="sr-only">Filter series</span>
        <input type="search" placeholder="Filter series" value={p.filter} onInput={(e) => p.onFilter((e.target as HTMLInputElement).value)} />
        <span class="muted">
          {shown.length} of {p.items.length} series
        </span>
      </label>
      <ul>
        {shown.slice(0, limit).map((i) => (
          <li key={i.label}>
            <button
              type="button"
              class={p.hidden.has(i.label) ? 'legend-item off' : 'legend-item'}
              aria-pressed={!p.hidden.has(i.label)}
              title="Click: show or hide. Alt+click: show only this one."
              onClick={(e) => p.onToggle(i.label, e.altKey)}
            >
              <span class="swatch" style={{ background: i.color }} />
              <span class="mono">{i.label}</span>
            </button>
          </li>
        ))}
        {shown.length > limit && (
          <li>
            <button type="button" class="link" onClick={() => setLimit(limit + 500)}>
              {shown.length - limit} more…
            </button>
          </li>
        )}
      </ul>
    </div>
  );
}
