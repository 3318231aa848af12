// model.ts: judgements as the console shows them, from either API: the
// native AnalyzeResponse (POST /api/v1/analysis) and Kayenta's execution
// status (GET /canary/{id}) with its metric set pairs.
import { request } from '../api';

export interface Stats {
  count: number;
  mean: number;
  min: number;
  max: number;
  stddev: number;
}

export interface MetricVerdict {
  name: string;
  labels: Record<string, string>;
  classification: string;
  explanation: string;
  critical: boolean;
  weight?: number;
  baseline?: Stats;
  canary?: Stats;
  ratio?: number;
  shift?: number;
  shiftLower?: number;
  shiftUpper?: number;
  band?: number;
  baselineValues?: number[];
  canaryValues?: number[];
}

export interface Judgement {
  kind: 'native' | 'kayenta';
  id: string;
  title: string;
  status: string; // Kayenta: running, succeeded, terminal; native: succeeded
  score?: number;
  verdict?: string; // Pass, Marginal, Fail
  reason?: string;
  pass?: number;
  marginal?: number;
  start?: string;
  end?: string;
  at?: string;
  metrics: MetricVerdict[];
  error?: string;
}

/** fromNative reads an AnalyzeResponse. */
export function fromNative(r: any, title = 'native analysis'): Judgement {
  return {
    kind: 'native',
    id: r.window?.start_id ?? '',
    title,
    status: 'succeeded',
    score: r.score,
    verdict: r.verdict,
    reason: r.reason,
    pass: r.thresholds?.pass,
    marginal: r.thresholds?.marginal,
    start: r.start,
    end: r.end,
    metrics: (r.metrics ?? []).map((m: any) => ({
      name: m.name,
      labels: m.labels ?? {},
      classification: m.classification,
      explanation: m.explanation,
      critical: !!m.critical,
      weight: m.weight,
      baseline: m.baseline,
      canary: m.canary,
      ratio: m.ratio,
      shift: m.shift,
      shiftLower: m.shift_lower,
      shiftUpper: m.shift_upper,
      band: m.tolerance_band,
    })),
  };
}

function kstats(m: any): Stats | undefined {
  const s = m?.stats;
  return s ? { count: s.count, mean: s.mean, min: s.min, max: s.max, stddev: s.std } : undefined;
}

/** verdictOf maps Kayenta's score classification to Pass / Marginal / Fail. */
function verdictOf(c?: string): string | undefined {
  return c === 'Pass' ? 'Pass' : c === 'Marginal' ? 'Marginal' : c === 'Fail' || c === 'Nodata' ? 'Fail' : c;
}

/** fromKayenta reads Kayenta's execution status, and its pairs when given. */
export function fromKayenta(s: any, pairs: any[] = []): Judgement {
  const jr = s.result?.judgeResult;
  const req = s.canaryExecutionRequest ?? {};
  const scope: any = Object.values(req.scopes ?? {})[0] ?? {};
  const byId = new Map(pairs.map((p) => [p.id, p]));
  return {
    kind: 'kayenta',
    id: s.pipelineId,
    title: `${s.config?.name ?? 'Kayenta execution'} (${s.application ?? 'ad-hoc'})`,
    status: s.status,
    score: jr?.score?.score,
    verdict: verdictOf(jr?.score?.classification),
    reason: jr?.score?.classificationReason,
    pass: req.thresholds?.pass,
    marginal: req.thresholds?.marginal,
    start: scope.experimentScope?.start,
    end: scope.experimentScope?.end,
    at: s.endTimeIso ?? s.startTimeIso ?? s.buildTimeIso,
    error: s.exception?.details?.error ?? (s.exception ? JSON.stringify(s.exception) : undefined),
    metrics: (jr?.results ?? []).map((r: any) => {
      const p = byId.get(r.id);
      return {
        name: r.name,
        labels: r.tags ?? {},
        classification: r.classification,
        explanation: r.classificationReason ?? '',
        critical: !!r.critical,
        baseline: kstats(r.controlMetadata),
        canary: kstats(r.experimentMetadata),
        ratio: r.resultMetadata?.ratio,
        baselineValues: p?.values?.control?.filter((v: any) => typeof v === 'number'),
        canaryValues: p?.values?.experiment?.filter((v: any) => typeof v === 'number'),
      };
    }),
  };
}

/** kayentaExecutions lists the executions of the applications that have configs, and ad-hoc ones. */
export async function kayentaExecutions(limit = 50): Promise<any[]> {
  const configs = await request<{ applications?: string[] }[]>('/canaryConfig');
  const apps = new Set<string>(['ad-hoc']);
  for (const c of configs ?? []) for (const a of c.applications ?? []) apps.add(a);
  const lists = await Promise.all([...apps].map((a) => request<any[]>(`/canary/executions?application=${encodeURIComponent(a)}&limit=${limit}`)));
  return lists.flat().sort((a, b) => (b.buildTimeMillis ?? 0) - (a.buildTimeMillis ?? 0));
}

export async function kayentaJudgement(id: string): Promise<Judgement> {
  const s = await request<any>(`/canary/${encodeURIComponent(id)}`);
  let pairs: any[] = [];
  if (s.metricSetPairListId) {
    pairs = await request<any[]>(`/metricSetPairList/${encodeURIComponent(s.metricSetPairListId)}`).catch(() => []);
  }
  return fromKayenta(s, pairs);
}
