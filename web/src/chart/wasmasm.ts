// wasmasm.ts assembles the many-series lines' raster (lines.ts's
// drawSeries) as a small WebAssembly module from its instructions, with no
// toolchain (the module is 576 bytes). build.mjs runs it and writes
// gen/lines.wasm, which wasmlines.ts imports as bytes (esbuild's binary
// loader): the app does not assemble it.
//
// The module's memory holds, from 0: the steps' x positions (Int32, n),
// then one series' values (Float64, n; a gap is the NaN of gapHi:gapLo),
// then the w×h image (RGBA pixels, as an ImageData's). It exports
// draw(px, ys, n, buf, w, h, y0, ky, c, lw) — drawSeries, with byte
// offsets into its memory for px, ys and buf — and mem.

/** gapHi:gapLo: the bits of a NaN that stands for null (a gap) among the values. */
export const gapHi = 0x7ff4dead;
export const gapLo = 0x0badc0de;

// Opcodes (WebAssembly core spec 1.0 + non-trapping float-to-int).
const op = {
  block: 0x02, loop: 0x03, if: 0x04, else: 0x05, end: 0x0b, br: 0x0c, brIf: 0x0d, ret: 0x0f, call: 0x10, select: 0x1b,
  get: 0x20, set: 0x21, tee: 0x22,
  i32load: 0x28, f64load: 0x2b, i64load: 0x29, i32store: 0x36,
  i32const: 0x41, i64const: 0x42, f64const: 0x44,
  i32eqz: 0x45, i32eq: 0x46, i32ne: 0x47, i32ltS: 0x48, i32ltU: 0x49, i32geS: 0x4e, i32leS: 0x4c,
  i64eq: 0x51, f64lt: 0x63, f64gt: 0x64, f64ge: 0x66,
  i32add: 0x6a, i32sub: 0x6b, i32mul: 0x6c, i32and: 0x71, i32shl: 0x74,
  f64abs: 0x99, f64floor: 0x9c, f64add: 0xa0, f64sub: 0xa1, f64mul: 0xa2,
  f64convI32: 0xb7, i64reinterpretF64: 0xbd,
} as const;
const I32 = 0x7f;
const F64 = 0x7c;
const VOID = 0x40;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function sleb(n: bigint): number[] {
  const out: number[] = [];
  for (;;) {
    const b = Number(n & 0x7fn);
    n >>= 7n;
    if ((n === 0n && !(b & 0x40)) || (n === -1n && b & 0x40)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function f64(x: number): number[] {
  return Array.from(new Uint8Array(new Float64Array([x]).buffer));
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const name = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];

// line(buf, w, h, x0, y0, x1, y1, c, lw): lines.ts's hairline (lw = 1) and
// segment (lw > 1): Bresenham from (x0, y0) to (x1, y1), clipped to the
// w×h image at buf.
function lineBody(): number[] {
  const [buf, w, h, x0, y0, x1, y1, c, lw] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [dx, dy, sx, sy, err, e2, j, k, y, x] = [9, 10, 11, 12, 13, 14, 15, 16, 17, 18];
  const g = (l: number) => [op.get, l];
  const s = (l: number) => [op.set, l];
  const i32 = (n: number) => [op.i32const, ...sleb(BigInt(n))];
  // store c at pixel (xl, yl) if it is in the image (unsigned compares:
  // 0 <= v < bound).
  const plot = (xl: number, yl: number) => [
    ...g(xl), ...g(w), op.i32ltU, ...g(yl), ...g(h), op.i32ltU, op.i32and,
    op.if, VOID,
    ...g(buf), ...g(yl), ...g(w), op.i32mul, ...g(xl), op.i32add, ...i32(2), op.i32shl, op.i32add, ...g(c), op.i32store, 2, 0,
    op.end,
  ];
  return [
    ...vec([[10, I32]]),
    // dx = |x1 - x0|, dy = -|y1 - y0|, sx, sy, err = dx + dy
    ...g(x1), ...g(x0), op.i32sub, ...g(x0), ...g(x1), op.i32sub, ...g(x1), ...g(x0), op.i32geS, op.select, ...s(dx),
    ...g(y0), ...g(y1), op.i32sub, ...g(y1), ...g(y0), op.i32sub, ...g(y1), ...g(y0), op.i32geS, op.select, ...s(dy),
    ...i32(1), ...i32(-1), ...g(x0), ...g(x1), op.i32ltS, op.select, ...s(sx),
    ...i32(1), ...i32(-1), ...g(y0), ...g(y1), op.i32ltS, op.select, ...s(sy),
    ...g(dx), ...g(dy), op.i32add, ...s(err),
    op.loop, VOID,
    ...g(lw), ...i32(1), op.i32eq,
    op.if, VOID,
    ...plot(x0, y0),
    op.else,
    // the lw×lw square at (x0, y0)
    ...i32(0), ...s(j),
    op.block, VOID, op.loop, VOID,
    ...g(j), ...g(lw), op.i32geS, op.brIf, 1,
    ...g(y0), ...g(j), op.i32add, ...s(y),
    ...i32(0), ...s(k),
    op.block, VOID, op.loop, VOID,
    ...g(k), ...g(lw), op.i32geS, op.brIf, 1,
    ...g(x0), ...g(k), op.i32add, ...s(x),
    ...plot(x, y),
    ...g(k), ...i32(1), op.i32add, ...s(k),
    op.br, 0,
    op.end, op.end,
    ...g(j), ...i32(1), op.i32add, ...s(j),
    op.br, 0,
    op.end, op.end,
    op.end,
    // done at (x1, y1)
    ...g(x0), ...g(x1), op.i32eq, ...g(y0), ...g(y1), op.i32eq, op.i32and, op.if, VOID, op.ret, op.end,
    ...g(err), ...i32(1), op.i32shl, ...s(e2),
    ...g(e2), ...g(dy), op.i32geS, op.if, VOID, ...g(err), ...g(dy), op.i32add, ...s(err), ...g(x0), ...g(sx), op.i32add, ...s(x0), op.end,
    ...g(e2), ...g(dx), op.i32leS, op.if, VOID, ...g(err), ...g(dx), op.i32add, ...s(err), ...g(y0), ...g(sy), op.i32add, ...s(y0), op.end,
    op.br, 0,
    op.end,
    op.end,
  ];
}

// draw(px, ys, n, buf, w, h, y0, ky, c, lw): lines.ts's drawSeries. A gap
// (gapBits) lifts the pen; other NaNs and ±Inf are skipped over; y =
// Math.round(y0 - v*ky) (floor, plus one when the fraction is ≥ 0.5: half
// up, as Math.round), clamped to [-h, 2h].
function drawBody(): number[] {
  const [px, ys, n, buf, w, h, y0, ky, c, lw] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const [i, pen, lx, ly, xi, cy] = [10, 11, 12, 13, 14, 15];
  const [v, yf, r] = [16, 17, 18];
  const g = (l: number) => [op.get, l];
  const s = (l: number) => [op.set, l];
  const i32 = (x: number) => [op.i32const, ...sleb(BigInt(x))];
  const gap = (BigInt(gapHi) << 32n) | BigInt(gapLo);
  return [
    ...vec([[6, I32], [3, F64]]),
    op.block, VOID, op.loop, VOID,
    ...g(i), ...g(n), op.i32geS, op.brIf, 1,
    ...g(ys), ...g(i), ...i32(3), op.i32shl, op.i32add, op.f64load, 3, 0, ...s(v),
    ...g(v), op.i64reinterpretF64, op.i64const, ...sleb(gap), op.i64eq,
    op.if, VOID,
    ...i32(0), ...s(pen),
    op.else,
    ...g(v), op.f64abs, op.f64const, ...f64(Infinity), op.f64lt,
    op.if, VOID,
    // yf = y0 - v*ky; r = Math.round(yf)
    ...g(y0), ...g(v), ...g(ky), op.f64mul, op.f64sub, ...s(yf),
    ...g(yf), op.f64floor, ...s(r),
    ...g(yf), ...g(r), op.f64sub, op.f64const, ...f64(0.5), op.f64ge,
    op.if, VOID, ...g(r), op.f64const, ...f64(1), op.f64add, ...s(r), op.end,
    // clamped to [-h, 2h]
    ...g(r), ...i32(0), ...g(h), op.i32sub, op.f64convI32, op.f64lt,
    op.if, VOID, ...i32(0), ...g(h), op.i32sub, op.f64convI32, ...s(r), op.end,
    ...g(r), ...g(h), ...i32(1), op.i32shl, op.f64convI32, op.f64gt,
    op.if, VOID, ...g(h), ...i32(1), op.i32shl, op.f64convI32, ...s(r), op.end,
    ...g(r), 0xfc, 0x02, ...s(cy), // i32.trunc_sat_f64_s
    ...g(px), ...g(i), ...i32(2), op.i32shl, op.i32add, op.i32load, 2, 0, ...s(xi),
    ...g(pen), op.if, VOID,
    ...g(buf), ...g(w), ...g(h), ...g(lx), ...g(ly), ...g(xi), ...g(cy), ...g(c), ...g(lw), op.call, 1,
    op.end,
    ...g(xi), ...s(lx), ...g(cy), ...s(ly), ...i32(1), ...s(pen),
    op.end,
    op.end,
    ...g(i), ...i32(1), op.i32add, ...s(i),
    op.br, 0,
    op.end, op.end,
    op.end,
  ];
}

/** linesModule is the module's binary. */
export function linesModule(): Uint8Array {
  const drawType = [0x60, ...vec([[I32], [I32], [I32], [I32], [I32], [I32], [F64], [F64], [I32], [I32]]), ...vec([])];
  const lineType = [0x60, ...vec([[I32], [I32], [I32], [I32], [I32], [I32], [I32], [I32], [I32]]), ...vec([])];
  const code = (body: number[]) => [...uleb(body.length), ...body];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([drawType, lineType])),
    ...section(3, vec([[0], [1]])),
    ...section(5, vec([[0x00, 1]])),
    ...section(7, vec([[...name('draw'), 0x00, 0], [...name('mem'), 0x02, 0]])),
    ...section(10, vec([code(drawBody()), code(lineBody())])),
  ]);
}
