// css.d.ts: esbuild bundles imported stylesheets into app.css.
declare module '*.css';
