// Explain.tsx: the query's syntax tree from /api/v1/parse_query, one node a
// line, so that a person sees how levitated reads the query.
import { useEffect, useState } from 'preact/hooks';
import { prom, ApiError } from '../api';

interface Node {
  type: string;
  [k: string]: any;
}

function label(n: Node): string {
  switch (n.type) {
    case 'aggregation':
      return `${n.op}${n.grouping?.length || n.without ? ` ${n.without ? 'without' : 'by'} (${(n.grouping ?? []).join(', ')})` : ''}`;
    case 'binaryExpr':
      return `${n.op}${n.bool ? ' bool' : ''}${n.matching?.card && n.matching.card !== 'one-to-one' ? ` ${n.matching.card}` : ''}`;
    case 'call':
      return `${n.func?.name ?? '?'}()`;
    case 'vectorSelector':
      return `${n.name ?? ''}{${(n.matchers ?? [])
        .filter((m: any) => m.name !== '__name__')
        .map((m: any) => `${m.name}${m.type}${JSON.stringify(m.value)}`)
        .join(', ')}}${n.offset ? ` offset ${n.offset / 1000}s` : ''}`;
    case 'matrixSelector':
      return `[${n.range / 1000}s]`;
    case 'subquery':
      return `[${n.range / 1000}s:${n.step ? n.step / 1000 + 's' : ''}]`;
    case 'numberLiteral':
      return String(n.val);
    case 'stringLiteral':
      return JSON.stringify(n.val);
    case 'parenExpr':
      return '( … )';
    case 'unaryExpr':
      return n.op;
  }
  return n.type;
}

function children(n: Node): Node[] {
  const out: Node[] = [];
  for (const k of ['param', 'expr', 'lhs', 'rhs']) if (n[k] && typeof n[k] === 'object' && n[k].type) out.push(n[k]);
  for (const a of n.args ?? []) out.push(a);
  return out;
}

function Tree({ n }: { n: Node }) {
  const kids = children(n);
  return (
    <li>
      <span class="muted">{n.type}</span> <code>{label(n)}</code>
      {kids.length > 0 && (
        <ul>
          {kids.map((c, i) => (
            <Tree key={i} n={c} />
          ))}
        </ul>
      )}
    </li>
  );
}

export function Explain({ expr }: { expr: string }) {
  const [tree, setTree] = useState<Node | null>(null);
  const [err, setErr] = useState('');
  useEffect(() => {
    setTree(null);
    setErr('');
    if (!expr.trim()) return;
    prom<Node>('/api/v1/parse_query', { query: expr })
      .then((r) => setTree(r.data))
      .catch((e) => setErr(e instanceof ApiError ? e.explain() : String(e)));
  }, [expr]);
  if (err) return <div class="alert error">{err}</div>;
  if (!tree) return <p class="muted">{expr.trim() ? 'Parsing…' : 'Enter an expression.'}</p>;
  return (
    <ul class="tree" data-testid="explain">
      <Tree n={tree} />
    </ul>
  );
}
