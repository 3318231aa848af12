// matrix.ts: levitated's binary encoding of range-query answers
// (pkg/matrixcodec), which query_range sends when Accept asks for it.
// Layout, little-endian: "LVMATRX1", a uint32 header length, the JSON
// header, zero padding to a multiple of 8, then per series n float64
// timestamps (Unix ms) and n float64 values.

export const matrixType = 'application/vnd.levitated.matrix';
const magic = 'LVMATRX1';

export interface MatrixHeader {
  status: string;
  warnings?: string[];
  infos?: string[];
  resultType: string;
  series: { metric: Record<string, string>; points: number }[];
}

export interface DecodedSeries {
  metric: Record<string, string>;
  timestamps: Float64Array; // Unix ms
  values: Float64Array;
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** decodeMatrix reads a body; it throws on one that is cut short or not of this kind. */
export function decodeMatrix(buf: ArrayBuffer): { warnings?: string[]; infos?: string[]; series: DecodedSeries[] } {
  const dv = new DataView(buf);
  const text = new TextDecoder();
  if (buf.byteLength < 12 || text.decode(new Uint8Array(buf, 0, 8)) !== magic) throw new Error('query_range: not a levitated matrix body');
  const hlen = dv.getUint32(8, true);
  if (12 + hlen > buf.byteLength) throw new Error('query_range: matrix header cut short');
  const h: MatrixHeader = JSON.parse(text.decode(new Uint8Array(buf, 12, hlen)));
  let off = (12 + hlen + 7) & ~7;
  const floats = (n: number): Float64Array => {
    if (off + 8 * n > buf.byteLength) throw new Error('query_range: matrix body cut short');
    let a: Float64Array;
    if (littleEndian) a = new Float64Array(buf, off, n);
    else {
      a = new Float64Array(n);
      for (let i = 0; i < n; i++) a[i] = dv.getFloat64(off + 8 * i, true);
    }
    off += 8 * n;
    return a;
  };
  const series = h.series.map((s) => ({ metric: s.metric, timestamps: floats(s.points), values: floats(s.points) }));
  return { warnings: h.warnings, infos: h.infos, series };
}
