// Alert.tsx: errors, warnings and notes as the API gives them.
import { ApiError } from '../api';

export function ErrorAlert({ err }: { err: unknown }) {
  if (!err) return null;
  const msg = err instanceof ApiError ? err.explain() : err instanceof Error ? err.message : String(err);
  return (
    <div class="alert error" role="alert" data-testid="error">
      {msg}
    </div>
  );
}

export function Notes({ warnings = [], infos = [] }: { warnings?: string[]; infos?: string[] }) {
  return (
    <>
      {warnings.map((w) => (
        <div class="alert warning" role="status" key={w}>
          Warning: {w}
        </div>
      ))}
      {infos.map((w) => (
        <div class="alert info" role="status" key={w}>
          {w}
        </div>
      ))}
    </>
  );
}
