// build.mjs bundles the console: web/src -> ../pkg/console/dist (or the
// directory given as the first argument), deterministically, so that the
// committed bundle can be checked against its sources.
import * as esbuild from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
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

mkdirSync(outdir, { recursive: true });
const result = await esbuild.build({
  entryPoints: { app: join(here, 'src/main.tsx') },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome110', 'firefox115', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir,
  legalComments: 'none',
  sourcemap: false,
  metafile: true,
  logLevel: 'warning',
  plugins: [functionTable],
});
copyFileSync(join(here, 'src/index.html'), join(outdir, 'index.html'));
const sizes = Object.entries(result.metafile.outputs).map(([f, o]) => `${f.split('/').pop()} ${o.bytes}`);
writeFileSync(join(here, 'gen/sizes.txt'), sizes.join('\n') + '\n');
