// lines.ts: many series drawn at once. uPlot strokes each series on its
// own, inside a clip of its own (save, clip, stroke, restore), converting
// each point through its scale functions; for hundreds of series that is
// most of a chart's first draw, and even one path per colour costs a call
// into the canvas per point (500 series × 481 steps: ~60 ms of lineTo).
// linesPlugin draws them in one pass instead, into pixels: the x positions
// once for all series, each segment rasterised (Bresenham) into an RGBA
// buffer the size of the plot, which is put as it is on a canvas of its
// own over the plot. The lines are hairlines of whole device pixels without
// anti-aliasing. The series it draws are not uPlot's: Chart.tsx gives
// uPlot one series instead, standing in for their range (its least and
// greatest values; a path that draws nothing: noPaths), so that uPlot sets
// up, ranges and walks one series rather than hundreds. The raster is a
// small WebAssembly module where the page can compile one (wasmlines.ts:
// the first chart's 240,000 segments are otherwise drawn by cold code),
// else drawSeries below; the same pixels either way.
import type uPlot from 'uplot';
import { raster, gapHi, gapLo } from './wasmlines';

/** noPaths is the path builder of a series linesPlugin draws. */
export const noPaths: uPlot.Series.PathBuilder = () => null;

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

let probe: CanvasRenderingContext2D | null = null;
const rgbaCache = new Map<string, number>();

/** rgba is a CSS colour as a pixel of an ImageData's Uint32Array view. */
export function rgba(color: string): number {
  let px = rgbaCache.get(color);
  if (px !== undefined) return px;
  // #rrggbb (the palette's) read directly: the canvas' first read-back
  // cost ~10 ms of a chart's first draw.
  if (/^#[0-9a-f]{6}$/i.test(color)) {
    const v = parseInt(color.slice(1), 16);
    const [r, g, b, a] = [v >> 16, (v >> 8) & 255, v & 255, 255];
    px = littleEndian ? ((a << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | a) >>> 0;
    rgbaCache.set(color, px);
    return px;
  }
  // The canvas parses any CSS colour; fillRect + getImageData reads it
  // back as bytes.
  probe ??= document.createElement('canvas').getContext('2d', { willReadFrequently: true })!;
  probe.clearRect(0, 0, 1, 1);
  probe.fillStyle = '#888';
  probe.fillStyle = color;
  probe.fillRect(0, 0, 1, 1);
  const [r, g, b, a] = probe.getImageData(0, 0, 1, 1).data;
  px = littleEndian ? ((a << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | a) >>> 0;
  rgbaCache.set(color, px);
  return px;
}

/** hairline is segment for lw = 1 (the usual case): the same pixels, a tighter loop. */
function hairline(buf: Uint32Array, w: number, h: number, x0: number, y0: number, x1: number, y1: number, c: number): void {
  const dx = Math.abs(x1 - x0);
  const dy = -Math.abs(y1 - y0);
  const sx = x0 < x1 ? 1 : -1;
  const sy = y0 < y1 ? 1 : -1;
  let err = dx + dy;
  for (;;) {
    if (x0 >= 0 && x0 < w && y0 >= 0 && y0 < h) buf[y0 * w + x0] = c;
    if (x0 === x1 && y0 === y1) return;
    const e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

/**
 * segment draws the line from (x0, y0) to (x1, y1) (whole pixels) into
 * buf, a w×h image, clipped to it, lw pixels thick (lw > 1: hairline
 * draws 1-pixel lines).
 */
function segment(buf: Uint32Array, w: number, h: number, x0: number, y0: number, x1: number, y1: number, c: number, lw: number): void {
  const dx = Math.abs(x1 - x0);
  const dy = -Math.abs(y1 - y0);
  const sx = x0 < x1 ? 1 : -1;
  const sy = y0 < y1 ? 1 : -1;
  let err = dx + dy;
  for (;;) {
    for (let j = 0; j < lw; j++) {
      const y = y0 + j;
      if (y < 0 || y >= h) continue;
      for (let i = 0; i < lw; i++) {
        const x = x0 + i;
        if (x >= 0 && x < w) buf[y * w + x] = c;
      }
    }
    if (x0 === x1 && y0 === y1) return;
    const e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

/**
 * drawSeries draws one series' values ys at the steps' x positions px into
 * buf, a w×h image: y = y0 - v*ky, lw pixels wide. A function per series
 * rather than a loop inside the plugin's draw: called once per series, V8
 * optimises it after a few of them (the first chart's lines are drawn
 * before anything else has warmed it up).
 */
function drawSeries(buf: Uint32Array, w: number, h: number, px: Int32Array, ys: ArrayLike<number | null | undefined>, y0: number, ky: number, c: number, lw: number): void {
  let pen = false;
  let lx = 0;
  let ly = 0;
  for (let i = 0; i < ys.length; i++) {
    const v = ys[i];
    // A gap breaks the line; NaN and ±Inf are skipped over, as uPlot's own
    // lines do.
    if (v == null) {
      pen = false;
      continue;
    }
    if (!isFinite(v)) continue;
    const y = Math.round(y0 - v * ky);
    // Far outside the plot (a zoomed y): clamped, so that the loop stays
    // short; the clip drops what is outside.
    const cy = y < -h ? -h : y > 2 * h ? 2 * h : y;
    if (pen) {
      if (lw === 1) hairline(buf, w, h, lx, ly, px[i], cy, c);
      else segment(buf, w, h, lx, ly, px[i], cy, c, lw);
    }
    lx = px[i];
    ly = cy;
    pen = true;
  }
}

/**
 * linesPlugin draws the chart's shown series as lines width CSS px wide,
 * or, given lines, those (on the chart's y scale).
 */
export function linesPlugin(width = 1, lines?: () => { values: ArrayLike<number | null>; color: string }[]): uPlot.Plugin {
  // The lines' own canvas, over uPlot's (its axes and grid) and under
  // everything else over the plot (the windows, the cursor, the
  // selection): the pixels are put on it as they are, with no second
  // image to composite onto uPlot's canvas.
  let layer: HTMLCanvasElement;
  return {
    hooks: {
      init: (u) => {
        layer = document.createElement('canvas');
        layer.className = 'u-lines';
        u.over.prepend(layer);
      },
      draw: (u) => {
        const { width: bw, height: bh } = u.bbox; // canvas px
        const w = Math.round(bw);
        const h = Math.round(bh);
        if (layer.width !== w || layer.height !== h) {
          layer.width = w;
          layer.height = h;
        } else layer.getContext('2d')!.clearRect(0, 0, w, h);
        layer.style.width = `${w / devicePixelRatio}px`;
        layer.style.height = `${h / devicePixelRatio}px`;
        const xs = u.data[0];
        const sx = u.scales.x;
        if (sx.min == null || sx.max == null || xs.length === 0 || w <= 0 || h <= 0) return;
        const lw = Math.max(1, Math.round(width * devicePixelRatio));
        const n = xs.length;
        // The WebAssembly raster (wasmlines.ts), where it compiles: its
        // memory holds the x positions, one series' values at a time and
        // the image.
        const wasm = littleEndian ? raster() : null;
        const ysAt = (n * 4 + 7) & ~7;
        const bufAt = ysAt + n * 8;
        if (wasm && wasm.mem.buffer.byteLength < bufAt + w * h * 4) wasm.mem.grow(Math.ceil((bufAt + w * h * 4 - wasm.mem.buffer.byteLength) / 65536));
        // The x of every step (in the plot's pixels), once.
        const kx = w / (sx.max - sx.min || 1);
        const px = wasm ? new Int32Array(wasm.mem.buffer, 0, n) : new Int32Array(n);
        for (let i = 0; i < n; i++) px[i] = Math.round((xs[i] - sx.min) * kx);
        let img: ImageData;
        if (wasm) {
          const bytes = new Uint8ClampedArray(wasm.mem.buffer, bufAt, w * h * 4);
          bytes.fill(0);
          img = new ImageData(bytes, w, h);
        } else img = new ImageData(w, h);
        const buf = new Uint32Array(img.data.buffer, img.data.byteOffset, w * h);
        const vals = wasm ? new Float64Array(wasm.mem.buffer, ysAt, n) : null;
        const words = wasm ? new Uint32Array(wasm.mem.buffer, ysAt, 2 * n) : null;
        layer.dataset.raster = wasm ? 'wasm' : 'js';
        // The series: the ones given (not uPlot's, which then has a
        // stand-in for their range: Chart.tsx), on the y scale, or
        // uPlot's own.
        const given = lines?.();
        const count = given ? given.length : u.series.length - 1;
        for (let k = 0; k < count; k++) {
          const si = k + 1;
          const s = given ? undefined : u.series[si];
          if (s && !s.show) continue;
          const sy = u.scales[s?.scale ?? 'y'];
          if (sy.min == null || sy.max == null) continue;
          const ky = h / (sy.max - sy.min || 1);
          const y0 = h + sy.min * ky;
          const c = rgba(given ? given[k].color : typeof s!.stroke === 'function' ? String(s!.stroke(u, si)) : String(s!.stroke ?? '#888'));
          const ys = (given ? given[k].values : u.data[si]) as ArrayLike<number | null | undefined>;
          if (!wasm) {
            drawSeries(buf, w, h, px, ys, y0, ky, c, lw);
            continue;
          }
          const m = Math.min(ys.length, n);
          if (ys instanceof Float64Array) vals!.set(m === ys.length ? ys : ys.subarray(0, m));
          else
            for (let i = 0; i < m; i++) {
              const v = ys[i];
              if (v == null) {
                words![2 * i] = gapLo;
                words![2 * i + 1] = gapHi;
              } else vals![i] = v;
            }
          wasm.draw(0, ysAt, m, bufAt, w, h, y0, ky, c, lw);
        }
        // Odd widths are centred on the pixel the value falls on.
        const off = -Math.floor(lw / 2);
        layer.getContext('2d')!.putImageData(img, off, off);
      },
    },
  };
}
