// lines.ts: many series drawn at once. uPlot strokes each series on its
// own, inside a clip of its own (save, clip, stroke, restore), converting
// each point through its scale functions; for hundreds of series that is
// most of a chart's first draw. linesPlugin draws them in one pass instead:
// the x positions once for all series, one path per colour, one clip. The
// series it draws are given paths that draw nothing to uPlot (noPaths),
// which keeps everything else of them: scales, cursor, hover values.
import type uPlot from 'uplot';

/** noPaths is the path builder of a series linesPlugin draws. */
export const noPaths: uPlot.Series.PathBuilder = () => null;

/** linesPlugin draws the chart's shown series as 1 px lines (width: CSS px). */
export function linesPlugin(width = 1): uPlot.Plugin {
  return {
    hooks: {
      draw: (u) => {
        const ctx = u.ctx;
        const { left, top, width: w, height: h } = u.bbox; // canvas px
        const xs = u.data[0];
        const sx = u.scales.x;
        if (sx.min == null || sx.max == null || xs.length === 0) return;
        // The x of every step, once.
        const kx = w / (sx.max - sx.min || 1);
        const px = new Float64Array(xs.length);
        for (let i = 0; i < xs.length; i++) px[i] = Math.round(left + (xs[i] - sx.min) * kx);
        const paths = new Map<string, Path2D>();
        for (let si = 1; si < u.series.length; si++) {
          const s = u.series[si];
          if (!s.show) continue;
          const sy = u.scales[s.scale ?? 'y'];
          if (sy.min == null || sy.max == null) continue;
          const ky = h / (sy.max - sy.min || 1);
          const y0 = top + h + sy.min * ky;
          const color = typeof s.stroke === 'function' ? String(s.stroke(u, si)) : String(s.stroke ?? '#888');
          let p = paths.get(color);
          if (!p) paths.set(color, (p = new Path2D()));
          const ys = u.data[si] as ArrayLike<number | null | undefined>;
          let pen = false;
          for (let i = 0; i < ys.length; i++) {
            const v = ys[i];
            // A gap breaks the line; NaN and ±Inf are skipped over, as
            // uPlot's own lines do.
            if (v == null) {
              pen = false;
              continue;
            }
            if (!isFinite(v)) continue;
            const y = Math.round(y0 - v * ky);
            if (pen) p.lineTo(px[i], y);
            else p.moveTo(px[i], y);
            pen = true;
          }
        }
        const lw = Math.max(1, Math.round(width * devicePixelRatio));
        const off = (lw % 2) / 2; // odd widths on pixel centres
        ctx.save();
        const clip = new Path2D();
        clip.rect(left, top, w, h);
        ctx.clip(clip);
        ctx.translate(off, off);
        ctx.lineWidth = lw;
        ctx.lineJoin = 'round';
        for (const [color, p] of paths) {
          ctx.strokeStyle = color;
          ctx.stroke(p);
        }
        ctx.restore();
      },
    },
  };
}
