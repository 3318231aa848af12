// wasmlines.ts: the many-series lines' raster as WebAssembly (assembled by
// wasmasm.ts at build time: gen/lines.wasm). The first chart of a page is
// drawn by cold code: lines.ts's own loop runs in V8's interpreter for
// much of its 240,000 segments (500 series × 481 steps), where a
// WebAssembly function is compiled to machine code (Liftoff) before its
// first call. The same pixels as lines.ts's drawSeries (web/e2e's
// TestQueryGraphLinesRaster compares them); lines.ts uses its own loop
// where WebAssembly cannot be compiled. The pages' Content-Security-Policy
// allows it ('wasm-unsafe-eval', pkg/console).
import bytes from '../../gen/lines.wasm';

export { gapHi, gapLo } from './wasmasm';

/** The module's exports. */
export interface Raster {
  draw(px: number, ys: number, n: number, buf: number, w: number, h: number, y0: number, ky: number, c: number, lw: number): void;
  mem: WebAssembly.Memory;
}

let instance: Raster | null | undefined;

/** raster is the module, instantiated on first use, or null where it cannot be compiled. */
export function raster(): Raster | null {
  if (instance !== undefined) return instance;
  try {
    const m = new WebAssembly.Module(bytes);
    instance = new WebAssembly.Instance(m, {}).exports as unknown as Raster;
  } catch {
    instance = null;
  }
  return instance;
}
