// css.d.ts: esbuild bundles imported stylesheets into app.css.
declare module '*.css';
// esbuild's binary loader gives a .wasm file's bytes.
declare module '*.wasm' {
  const bytes: Uint8Array<ArrayBuffer>;
  export default bytes;
}
