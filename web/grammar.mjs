// grammar.mjs regenerates the PromQL parser with levitated's functions.
//
// @prometheus-io/lezer-promql hard-codes PromQL's function names in its
// grammar, so a query using increase_since(...) would be shown as a syntax
// error. This takes that grammar, adds every function of functions.json to
// FunctionIdentifier, and generates parser.js and parser.terms.js with
// @lezer/generator into gen/lezer-promql, next to a copy of the package's
// tokens.js and highlight.js. build.mjs points every import of
// @prometheus-io/lezer-promql there.
import { buildParserFile } from '@lezer/generator';
import { mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';

const pkgDir = new URL('./node_modules/@prometheus-io/lezer-promql', import.meta.url).pathname;
const src = join(pkgDir, 'src');
const out = new URL('./gen/lezer-promql/', import.meta.url).pathname;
const functions = JSON.parse(readFileSync(new URL('./functions.json', import.meta.url), 'utf8'));

export function generateGrammar() {
  let grammar = readFileSync(join(src, 'promql.grammar'), 'utf8');
  const anchor = 'FunctionIdentifier {\n';
  if (!grammar.includes(anchor)) throw new Error('lezer-promql grammar: no "FunctionIdentifier {" rule to extend');
  grammar = grammar.replace(anchor, anchor + functions.map((f) => `  ${f.term} |\n`).join(''));
  const defs = '  // FunctionIdentifier definitions\n';
  if (!grammar.includes(defs)) throw new Error('lezer-promql grammar: no function definitions to extend');
  grammar = grammar.replace(defs, defs + functions.map((f) => `  ${f.term} { condFn<"${f.name}"> }\n`).join(''));

  const { parser, terms } = buildParserFile(grammar, { fileName: 'promql.grammar', moduleStyle: 'es' });
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'parser.js'), parser);
  writeFileSync(join(out, 'parser.terms.js'), terms);
  copyFileSync(join(src, 'tokens.js'), join(out, 'tokens.js'));
  copyFileSync(join(src, 'highlight.js'), join(out, 'highlight.js'));
  writeFileSync(join(out, 'index.js'), "export { parser } from './parser.js';\nexport * from './parser.terms.js';\n");
  // The table codemirror-promql's linter reads: term id -> signature.
  const table = functions.map((f) => `  [t.${f.term}]: { name: ${JSON.stringify(f.name)}, argTypes: ${JSON.stringify(f.args)}, variadic: ${f.variadic}, returnType: 'vector' },`);
  writeFileSync(join(out, 'functions.js'), `import * as t from './parser.terms.js';\nexport const levitatedFunctions = {\n${table.join('\n')}\n};\n`);
  return out;
}
