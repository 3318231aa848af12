// ForChange.tsx: the judgements of a change: Kayenta executions whose
// canary scope overlaps the change window, and (for tokens with the
// analysis scope) a native analysis of the window on demand.
import { useEffect, useState } from 'preact/hooks';
import type { ChangeEvent } from '../events';
import { kayentaExecutions, fromKayenta, type Judgement } from './model';
import { VerdictBadge } from './JudgementView';
import { NativeForm } from './NativeForm';
import { useSession, can } from '../session';
import { ApiError } from '../api';

export function KayentaForChange({ ev, start, end }: { ev: ChangeEvent; start: number; end: number }) {
  const who = useSession();
  const allowed = can(who, 'analysis');
  const [list, setList] = useState<Judgement[] | null>(null);
  const [err, setErr] = useState('');
  useEffect(() => {
    if (!allowed) return;
    kayentaExecutions(200)
      .then((xs) =>
        setList(
          xs.map((x) => fromKayenta(x)).filter((j) => {
            const a = j.start ? Date.parse(j.start) / 1000 : NaN;
            const b = j.end ? Date.parse(j.end) / 1000 : NaN;
            return a < Math.max(end, start + 1) && b > start;
          }),
        ),
      )
      .catch((e) => setErr(e instanceof ApiError ? e.explain() : String(e)));
  }, [ev.id, allowed]);
  return (
    <>
      <h2>Judgements</h2>
      {!allowed && <p class="muted">This token has no analysis scope: judgements of this change are not shown.</p>}
      {err && <div class="alert error">{err}</div>}
      {list && list.length === 0 && <p class="muted">No Kayenta execution covers this change.</p>}
      {list && list.length > 0 && (
        <ul class="plain">
          {list.map((j) => (
            <li key={j.id}>
              <VerdictBadge v={j.verdict} /> <a href={`/analyses/${j.id}`}>{j.title}</a> score {j.score ?? '—'} <span class="muted small">{j.start} → {j.end}</span>
            </li>
          ))}
        </ul>
      )}
      {allowed && ev.state === 'start' && (
        <details>
          <summary>Judge this change with the native judge</summary>
          <NativeForm eventId={ev.id} service={ev.attributes?.service} />
        </details>
      )}
    </>
  );
}
