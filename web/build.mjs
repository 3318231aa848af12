// build.mjs bundles the console: web/src -> ../pkg/console/dist (or the
// directory given as the first argument), deterministically, so that the
// committed bundle can be checked against its sources.
import * as esbuild from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { generateGrammar } from './grammar.mjs';

const here = new URL('.', import.meta.url).pathname;
const outdir = process.argv[2] ?? join(here, '../pkg/console/dist');
const lezer = generateGrammar();

// codemirror-promql's linter and type checker look functions up in a table
// keyed by grammar term id; this appends levitated's functions to it (see
// grammar.mjs), without changing anything else in the module.
const functionTable = {
  name: 'levitated-functions',
  setup(build) {
    build.onResolve({ filter: /^@prometheus-io\/lezer-promql$/ }, () => ({ path: join(lezer, 'index.js') }));
    build.onLoad({ filter: /codemirror-promql[\\/]dist[\\/]esm[\\/]types[\\/]function\.js$/ }, (args) => {
      const code = readFileSync(args.path, 'utf8');
      if (!code.includes('const promqlFunctions = {')) throw new Error('codemirror-promql: function table not found');
      return {
        contents: code + `\nimport { levitatedFunctions } from ${JSON.stringify(join(lezer, 'functions.js'))};\nObject.assign(promqlFunctions, levitatedFunctions);\n`,
        loader: 'js',
      };
    });
  },
};

// uPlot builds two Intl objects as its module is evaluated (a number format
// for its default value formatter, and a date format only to learn the
// local time zone's name): the first Intl object of a page initialises
// ICU's locale and time zone data, 20-30 ms of the main thread in Chromium
// before anything can be drawn. The console formats its own values and
// draws in UTC, so neither is used on its way to a first graph: this makes
// both lazy (built on first use), without changing anything else.
const uplotLazyIntl = {
  name: 'uplot-lazy-intl',
  setup(build) {
    build.onLoad({ filter: /uplot[\\/]dist[\\/]uPlot\.esm\.js$/ }, (args) => {
      const edits = [
        [
          "const numFormatter = new Intl.NumberFormat(domEnv ? nav.language : 'en-US');\nconst fmtNum = val => numFormatter.format(val);",
          "let numFormatter;\nconst fmtNum = val => (numFormatter ??= new Intl.NumberFormat(domEnv ? nav.language : 'en-US')).format(val);",
        ],
        ['const localTz = new Intl.DateTimeFormat().resolvedOptions().timeZone;', 'let localTz;'],
        ['\telse if (tz == localTz)', '\telse if (tz == (localTz ??= new Intl.DateTimeFormat().resolvedOptions().timeZone))'],
      ];
      let code = readFileSync(args.path, 'utf8');
      for (const [from, to] of edits) {
        if (code.split(from).length !== 2) throw new Error(`uPlot: ${JSON.stringify(from)} not found once`);
        code = code.replace(from, () => to);
      }
      if (/new Intl\./.test(code.replace(/\?\?= new Intl\./g, ''))) throw new Error('uPlot: an Intl object still built as the module is evaluated');
      return { contents: code, loader: 'js' };
    });
  },
};

// gen/lines.wasm: the many-series lines' raster (src/chart/wasmasm.ts),
// assembled here so that the app imports its bytes (wasmlines.ts) rather
// than assembling it in the page.
const asm = await esbuild.build({ entryPoints: [join(here, 'src/chart/wasmasm.ts')], bundle: true, format: 'esm', write: false, logLevel: 'warning' });
const { linesModule } = await import('data:text/javascript;base64,' + Buffer.from(asm.outputFiles[0].text).toString('base64'));
mkdirSync(join(here, 'gen'), { recursive: true });
writeFileSync(join(here, 'gen/lines.wasm'), linesModule());

// The output directory holds only what this build writes (its file names
// are fixed: pkg/server's route table lists them).
mkdirSync(outdir, { recursive: true });
for (const f of readdirSync(outdir)) rmSync(join(outdir, f), { recursive: true });
const common = {
  bundle: true,
  minify: true,
  target: ['chrome110', 'firefox115', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir,
  legalComments: 'none',
  sourcemap: false,
  metafile: true,
  logLevel: 'warning',
};
// The app, in chunks: app.js (the shell, the pages, uPlot), Editor.js
// (CodeMirror and codemirror-promql, imported by the query page once its
// graph is drawn) and shared.js (what both use).
const result = await esbuild.build({
  ...common,
  entryPoints: { app: join(here, 'src/main.tsx') },
  format: 'esm',
  splitting: true,
  entryNames: '[name]',
  chunkNames: '[name]',
  plugins: [functionTable, uplotLazyIntl],
  loader: { '.wasm': 'binary' },
});
// boot: a classic script inlined into index.html, which sends the page's
// first requests as soon as the HTML is parsed (src/boot.ts); pkg/console
// allows it in its Content-Security-Policy by its hash.
const boot = await esbuild.build({
  ...common,
  entryPoints: { boot: join(here, 'src/boot.ts') },
  format: 'iife',
  write: false,
});
const bootJS = boot.outputFiles[0].text.trim();
// worker.js: the boot's worker (src/worker.ts), a classic worker script that
// sends the page's first data requests and reads their bodies off the main
// thread.
const worker = await esbuild.build({
  ...common,
  entryPoints: { worker: join(here, 'src/worker.ts') },
  format: 'iife',
});
if (bootJS.includes('</script')) throw new Error('boot.js contains </script');
// index.html preloads the chunks app.js imports, so that they are fetched
// with it rather than after it.
const outputs = { ...result.metafile.outputs, ...worker.metafile.outputs };
const appOut = Object.entries(result.metafile.outputs).find(([, o]) => o.entryPoint?.endsWith('src/main.tsx'));
const preloads = appOut[1].imports
  .filter((i) => i.kind === 'import-statement')
  .map((i) => `    <link rel="modulepreload" href="/${i.path.split('/').pop()}" />\n`)
  .join('');
// V8's explicit compile hint: the magic comment at the top of app.js and
// the chunks it imports has Chromium compile all their functions as the
// files stream in, on a background thread, rather than each on the main
// thread when first called — and nearly all of them are called on the way
// to the first graph (uPlot, the chart, the query page, Preact). Not on
// Editor.js, loaded after the graph, most of which a page never calls.
const hint = '//# allFunctionsCalledOnLoad\n';
for (const f of [appOut[0], ...appOut[1].imports.filter((i) => i.kind === 'import-statement').map((i) => i.path)]) {
  const code = readFileSync(f, 'utf8');
  writeFileSync(f, hint + code);
  outputs[f].bytes += Buffer.byteLength(hint);
}
let index = readFileSync(join(here, 'src/index.html'), 'utf8');
if (!index.includes('<!-- preloads -->\n')) throw new Error('src/index.html: no <!-- preloads --> line');
if (!index.includes('    <!-- boot -->\n')) throw new Error('src/index.html: no <!-- boot --> line');
index = index.replace(/ *<!-- preloads -->\n/, preloads).replace('    <!-- boot -->\n', () => `    <script>${bootJS}</script>\n`);
writeFileSync(join(outdir, 'index.html'), index);
const sizes = Object.entries(outputs)
  .map(([f, o]) => `${f.split('/').pop()} ${o.bytes}`)
  .concat([`index.html ${Buffer.byteLength(index)}`])
  .sort();
writeFileSync(join(here, 'gen/sizes.txt'), sizes.join('\n') + '\n');
