// Status.tsx: who the console acts for, the build, the flags in force
// (limits among them), the runtime, and the TSDB's statistics (top metrics
// and label cardinality) from /api/v1/status/tsdb.
import { useEffect, useState } from 'preact/hooks';
import { request, type PromResponse } from '../api';
import { useSession } from '../session';
import { ErrorAlert } from '../ui/Alert';
import { formatTime } from '../time';

function useProm<T>(path: string): [T | null, unknown] {
  const [d, setD] = useState<T | null>(null);
  const [e, setE] = useState<unknown>(null);
  useEffect(() => {
    request<PromResponse<T>>(path)
      // An answer without data (flags of a server started without
      // them) is shown as empty, not as loading.
      .then((r) => setD(r.data ?? ({} as T)))
      .catch(setE);
  }, [path]);
  return [d, e];
}

function KV({ data }: { data: Record<string, any> }) {
  return (
    <dl class="facts">
      {Object.entries(data).map(([k, v]) => (
        <>
          <dt key={k}>{k}</dt>
          <dd class="mono small">{typeof v === 'object' ? JSON.stringify(v) : String(v)}</dd>
        </>
      ))}
    </dl>
  );
}

function Top({ title, rows }: { title: string; rows?: { name: string; value: number }[] }) {
  if (!rows?.length) return null;
  const max = Math.max(...rows.map((r) => r.value));
  return (
    <figure class="card">
      <figcaption>{title}</figcaption>
      <table class="table compact">
        <tbody>
          {rows.map((r) => (
            <tr key={r.name}>
              <td class="mono small">{r.name}</td>
              <td class="num">{r.value}</td>
              <td class="bar-cell">
                <span class="bar" style={{ width: `${(100 * r.value) / (max || 1)}%` }} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}

export function StatusPage() {
  const who = useSession();
  const [build, bErr] = useProm<Record<string, string>>('/api/v1/status/buildinfo');
  const [rt, rErr] = useProm<Record<string, any>>('/api/v1/status/runtimeinfo');
  const [flags, fErr] = useProm<Record<string, string>>('/api/v1/status/flags');
  const [tsdb, tErr] = useProm<any>('/api/v1/status/tsdb?limit=10');
  const [filter, setFilter] = useState('');
  return (
    <section class="page" aria-labelledby="status-h">
      <h1 id="status-h">Status</h1>
      <div class="grid2">
        <figure class="card">
          <figcaption>This session</figcaption>
          {who && (
            <KV
              data={{
                tenant: who.tenant,
                credential: who.subject,
                scopes: who.scopes.join(', ') || '(none)',
                'authentication required': who.auth_required ? 'yes' : 'no (loopback, no tokens)',
              }}
            />
          )}
          <p class="muted small">A token acts for one tenant: the console shows that tenant's data only.</p>
        </figure>
        <figure class="card">
          <figcaption>Build and runtime</figcaption>
          <ErrorAlert err={bErr ?? rErr} />
          {(build || rt) && (
            // One list, so that both halves share their columns.
            <KV
              data={{
                ...(build ? { levitated: who?.version || build.revision, 'Prometheus API': build.version, go: build.goVersion } : {}),
                ...(rt
                  ? {
                      started: formatTime(Date.parse(rt.startTime) / 1000) + ' UTC',
                      'storage retention': rt.storageRetention,
                      goroutines: rt.goroutineCount,
                      GOMAXPROCS: rt.GOMAXPROCS,
                    }
                  : {}),
              }}
            />
          )}
        </figure>
      </div>
      <h2>TSDB</h2>
      <ErrorAlert err={tErr} />
      {tsdb && (
        <>
          <p>
            <b>{tsdb.headStats?.numSeries}</b> series, <b>{tsdb.headStats?.numLabelPairs}</b> label pairs
            {tsdb.headStats?.numSeries > 0 && tsdb.headStats?.minTime > 0 && tsdb.headStats?.maxTime < 8.64e15 && (
              <>
                , from {formatTime(tsdb.headStats.minTime / 1000)} to {formatTime(tsdb.headStats.maxTime / 1000)} UTC
              </>
            )}
            .
          </p>
          <div class="grid2">
            <Top title="Series by metric name" rows={tsdb.seriesCountByMetricName} />
            <Top title="Values by label name (cardinality)" rows={tsdb.labelValueCountByLabelName} />
            <Top title="Series by label pair" rows={tsdb.seriesCountByLabelValuePair} />
            <Top title="Bytes of values by label name" rows={tsdb.memoryInBytesByLabelName} />
          </div>
        </>
      )}
      <h2>Flags and limits</h2>
      <ErrorAlert err={fErr} />
      {flags && Object.keys(flags).length === 0 && <p class="muted">The server reports no flags.</p>}
      {flags && Object.keys(flags).length > 0 && (
        <>
          <label class="field">
            <span>Filter</span>
            <input type="search" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} placeholder="limit" />
          </label>
          <table class="table compact" data-testid="flags">
            <tbody>
              {Object.entries(flags)
                .filter(([k]) => !filter || k.includes(filter))
                .sort()
                .map(([k, v]) => (
                  <tr key={k}>
                    <td class="mono small">--{k}</td>
                    <td class="mono small">{v}</td>
                  </tr>
                ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
