// Analysis.tsx: one Kayenta-compatible execution, judged metric by metric.
import { useEffect, useState } from 'preact/hooks';
import { kayentaJudgement, type Judgement } from '../analyses/model';
import { JudgementView } from '../analyses/JudgementView';
import { ErrorAlert } from '../ui/Alert';

export function AnalysisPage({ id }: { id: string }) {
  const [j, setJ] = useState<Judgement | null>(null);
  const [err, setErr] = useState<unknown>(null);
  useEffect(() => {
    let stop = false;
    const load = () =>
      kayentaJudgement(id)
        .then((x) => {
          if (stop) return;
          setJ(x);
          // Follow a running execution.
          if (x.status === 'running' || x.status === 'not_started') setTimeout(load, 1000);
        })
        .catch(setErr);
    load();
    return () => {
      stop = true;
    };
  }, [id]);
  return (
    <section class="page" aria-labelledby="analysis-h">
      <p class="crumbs">
        <a href="/analyses">Analyses</a> ›
      </p>
      <h1 id="analysis-h">{j?.title ?? 'Analysis'}</h1>
      <ErrorAlert err={err} />
      {j && <JudgementView j={j} />}
    </section>
  );
}
