// matrix.ts: levitated's binary encoding of range-query answers
// (pkg/matrixcodec, which documents the layout), which query_range sends
// when Accept asks for it. Little-endian: "LVMATRX2", a uint32 header
// length, the JSON header, zero padding to a multiple of 8, then per
// series: with a grid, its values (all steps present) or a bitmap of the
// steps present padded to 8 bytes and their values; without a grid, its
// timestamps (Unix ms) and its values, all float64.

export const matrixType = 'application/vnd.levitated.matrix';
/** The same body gzip-compressed by the server (pkg/matrixcodec.MediaTypeGzip). */
export const matrixGzipType = 'application/vnd.levitated.matrix+gzip';
const magic = 'LVMATRX2';
const maxGridSteps = 11000; // pkg/matrixcodec.MaxGridSteps

/** Grid: step k of a body is at start + k*step (Unix ms), for k < steps. */
export interface Grid {
  start: number;
  step: number;
  steps: number;
}

export interface MatrixHeader {
  status: string;
  warnings?: string[];
  infos?: string[];
  resultType: string;
  grid?: Grid;
  series: { metric: Record<string, string>; points: number }[];
}

export interface DecodedSeries {
  metric: Record<string, string>;
  values: Float64Array;
  /** Without a grid: the values' times (Unix ms). */
  timestamps?: Float64Array;
  /** With a grid and fewer values than steps: bit k set for each step present. */
  mask?: Uint8Array;
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** decodeMatrix reads a body; it throws on one that is cut short or not of this kind. */
export function decodeMatrix(buf: ArrayBuffer): { warnings?: string[]; infos?: string[]; grid?: Grid; series: DecodedSeries[] } {
  const dv = new DataView(buf);
  const text = new TextDecoder();
  if (buf.byteLength < 12 || text.decode(new Uint8Array(buf, 0, 8)) !== magic) throw new Error('query_range: not a levitated matrix body');
  const hlen = dv.getUint32(8, true);
  if (12 + hlen > buf.byteLength) throw new Error('query_range: matrix header cut short');
  const h: MatrixHeader = JSON.parse(text.decode(new Uint8Array(buf, 12, hlen)));
  const g = h.grid;
  if (g && !(g.steps >= 1 && g.steps <= maxGridSteps && g.step >= 1)) throw new Error('query_range: matrix grid out of bounds');
  let off = (12 + hlen + 7) & ~7;
  const room = (n: number) => {
    if (off + n > buf.byteLength) throw new Error('query_range: matrix body cut short');
  };
  const floats = (n: number): Float64Array => {
    room(8 * n);
    let a: Float64Array;
    if (littleEndian) a = new Float64Array(buf, off, n);
    else {
      a = new Float64Array(n);
      for (let i = 0; i < n; i++) a[i] = dv.getFloat64(off + 8 * i, true);
    }
    off += 8 * n;
    return a;
  };
  const series = h.series.map((s): DecodedSeries => {
    if (!g) return { metric: s.metric, timestamps: floats(s.points), values: floats(s.points) };
    if (s.points > g.steps) throw new Error('query_range: matrix series with more points than steps');
    if (s.points === 0 || s.points === g.steps) return { metric: s.metric, values: floats(s.points) };
    const n = (((g.steps + 7) >> 3) + 7) & ~7;
    room(n);
    const mask = new Uint8Array(buf, off, n);
    off += n;
    return { metric: s.metric, mask, values: floats(s.points) };
  });
  if (off !== buf.byteLength) throw new Error('query_range: matrix body has bytes after its last series');
  return { warnings: h.warnings, infos: h.infos, grid: g, series };
}
