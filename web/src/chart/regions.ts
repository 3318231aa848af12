// regions.ts: change windows drawn on a uPlot chart as shaded regions (one
// absolutely positioned element per window in the plot's overlay, so that
// they can be seen, tested and hovered) and point events as markers, with a
// tooltip naming the event under the cursor.
import type uPlot from 'uplot';
import { type Span, describe } from '../events';
import { eventColor } from './palette';
import { formatTime } from '../time';

/**
 * regionsPlugin draws spans on the chart it is given to, at every draw;
 * its place (after init) places them again without redrawing the chart,
 * for new spans.
 */
export function regionsPlugin(getSpans: () => Span[], onOpen?: (s: Span) => void): uPlot.Plugin & { place: (u: uPlot) => void } {
  let layer: HTMLDivElement;
  let tip: HTMLDivElement;
  let first = true;
  const place = (u: uPlot) => {
    // BenchmarkConsoleGraph: from here to lv:drawn is placing the windows.
    if (first) performance.mark('lv:regions');
    first = false;
    const spans = getSpans();
    // BenchmarkConsoleGraph: when windows were first on the chart.
    if (spans.length && !layer.dataset.placedAt) {
      layer.dataset.placedAt = performance.now().toFixed(1);
      // On the screen with the next frame.
      requestAnimationFrame(() => (layer.dataset.paintedAt = performance.now().toFixed(1)));
    }
    const [xmin, xmax] = [u.scales.x.min ?? 0, u.scales.x.max ?? 0];
    // The plot's width as uPlot set it (CSS px): reading clientWidth here
    // would lay the page out once more in the middle of the first draw.
    const width = parseFloat(u.over.style.width) || u.over.clientWidth;
    layer.replaceChildren();
    for (const s of spans) {
      const end = s.end ?? s.start;
      if (end < xmin || s.start > xmax) continue;
      const el = document.createElement('div');
      const left = Math.max(0, u.valToPos(Math.max(s.start, xmin), 'x'));
      const right = Math.min(width, u.valToPos(Math.min(end, xmax), 'x'));
      el.className = s.end === undefined ? 'ev-marker' : s.start < xmin ? 'ev-region before-range' : 'ev-region';
      el.dataset.id = s.id;
      el.dataset.name = s.name;
      el.dataset.start = String(s.start);
      if (s.end !== undefined) el.dataset.end = String(s.end);
      el.style.setProperty('--ev', eventColor(s.name));
      el.style.left = `${left}px`;
      if (s.end !== undefined) el.style.width = `${Math.max(1, right - left)}px`;
      layer.appendChild(el);
    }
  };
  const under = (u: uPlot, x: number): Span[] => {
    const t = u.posToVal(x, 'x');
    const slack = u.posToVal(x + 4, 'x') - t;
    return getSpans().filter((s) => (s.end === undefined ? Math.abs(s.start - t) <= slack : s.start <= t && t < s.end));
  };
  return {
    // Before the chart's first draw (its scales unset) the draw places them.
    place: (u) => layer && u.scales.x.min != null && place(u),
    hooks: {
      init: (u) => {
        layer = document.createElement('div');
        layer.className = 'ev-layer';
        tip = document.createElement('div');
        tip.className = 'ev-tip';
        tip.setAttribute('role', 'tooltip');
        tip.hidden = true;
        u.over.appendChild(layer);
        u.over.appendChild(tip);
        // A click (not a drag to zoom) on a window opens its change page.
        let downX = -1;
        u.over.addEventListener('mousedown', (e) => (downX = e.clientX));
        u.over.addEventListener('click', (e) => {
          if (!onOpen || Math.abs(e.clientX - downX) > 3) return;
          const hit = under(u, e.clientX - u.over.getBoundingClientRect().left)[0];
          if (hit) onOpen(hit);
        });
      },
      draw: (u) => place(u),
      setCursor: (u) => {
        const x = u.cursor.left ?? -1;
        const hits = x < 0 ? [] : under(u, x);
        if (!hits.length) {
          tip.hidden = true;
          return;
        }
        tip.replaceChildren(...hits.slice(0, 4).map(tipItem));
        tip.hidden = false;
        const w = u.over.clientWidth;
        tip.style.left = x > w / 2 ? '' : `${x + 12}px`;
        tip.style.right = x > w / 2 ? `${w - x + 12}px` : '';
      },
    },
  };
}

function tipItem(s: Span): HTMLElement {
  const e = s.ev;
  const div = document.createElement('div');
  div.className = 'ev-tip-item';
  const head = document.createElement('div');
  head.innerHTML = '<span class="swatch"></span><b></b> <span class="muted"></span>';
  (head.querySelector('.swatch') as HTMLElement).style.background = eventColor(s.name);
  head.querySelector('b')!.textContent = s.name;
  head.querySelector('.muted')!.textContent = s.end === undefined ? 'point event' : s.open ? 'open window' : 'window';
  div.appendChild(head);
  const when = document.createElement('div');
  when.textContent = `${formatTime(s.start)}${s.end !== undefined ? ` → ${s.open ? 'now' : formatTime(s.end)}` : ''} UTC`;
  div.appendChild(when);
  const attrs = describe(e.attributes);
  if (attrs) div.appendChild(line(attrs, 'mono'));
  if (e.text) div.appendChild(line(e.text.length > 240 ? `${e.text.slice(0, 240)}…` : e.text));
  if (e.url) div.appendChild(line(e.url, 'link'));
  if (e.source) div.appendChild(line(`sent by ${e.source}`, 'muted'));
  return div;
}

function line(text: string, cls = ''): HTMLElement {
  const d = document.createElement('div');
  d.className = cls;
  d.textContent = text;
  return d;
}
