// completion.ts: codemirror-promql's completion and linting, extended with
// levitated's event-window functions and MetricsQL's WITH.
//
// The grammar itself knows the functions (build.mjs regenerates the parser
// from functions.json), so they parse and are type-checked like rate();
// this adds them to the function names offered, with their documentation.
import type { Completion, CompletionContext, CompletionResult } from '@codemirror/autocomplete';
import { PromQLExtension } from '@prometheus-io/codemirror-promql';
import type { EditorView } from '@codemirror/view';
import functions from '../../functions.json';
import { authHeaders } from '../api';

const levitatedFunctions: Completion[] = functions.map((f) => ({
  label: f.name,
  type: 'function',
  detail: 'levitated',
  info: f.doc,
}));

const withKeyword: Completion = {
  label: 'WITH',
  type: 'keyword',
  detail: 'MetricsQL',
  info: 'WITH (name = expr, …) expr: common subexpressions, expanded by the server',
  apply: 'WITH (\n  x = \n) ',
};

/** isWith tells a MetricsQL WITH expression, which the PromQL linter cannot read. */
export function isWith(text: string): boolean {
  return /^\s*with\s*\(/i.test(text);
}

interface Strategy {
  promQL(ctx: CompletionContext): Promise<CompletionResult | null> | CompletionResult | null;
  destroy?(): void;
}

/** promqlExtension builds the editor's PromQL support, talking to this server's API. */
export function promqlExtension(): PromQLExtension {
  const ext = new PromQLExtension().setComplete({
    remote: {
      url: '',
      // The completer asks /api/v1/labels, /label/…/values, /series and
      // /metadata; every call carries the signed-in token.
      fetchFn: (input: RequestInfo | URL, init?: RequestInit) => fetch(input, { ...init, headers: authHeaders(init?.headers) }),
      lookbackInterval: 12 * 60 * 60 * 1000,
      httpMethod: 'GET',
    },
    maxMetricsMetadata: 10000,
  } as any);
  const base = ext.getComplete() as Strategy;
  const wrapped: Strategy = {
    async promQL(ctx) {
      const r = await base.promQL(ctx);
      const word = ctx.matchBefore(/[A-Za-z_][A-Za-z0-9_]*/);
      if (r && r.options.some((o) => o.label === 'rate')) {
        return { ...r, options: [...r.options, ...levitatedFunctions] };
      }
      // At the start of an empty query, offer WITH too.
      if (word && ctx.state.doc.sliceString(0, word.from).trim() === '' && /^w/i.test(word.text)) {
        return { from: word.from, options: [withKeyword, ...(r?.options ?? [])] };
      }
      return r;
    },
    destroy: () => base.destroy?.(),
  };
  (ext as any).complete = wrapped;
  const lint = ext.getLinter() as { promQL(): (view: EditorView) => any[] };
  ext.setLinter({
    promQL() {
      const f = lint.promQL();
      return (view: EditorView) => (isWith(view.state.doc.toString()) ? [] : f(view));
    },
  } as any);
  return ext;
}
