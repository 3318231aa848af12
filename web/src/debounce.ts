// debounce.ts: a value that follows another after it stops changing, so
// that typing in a filter does not send a request per key.
import { useEffect, useState } from 'preact/hooks';

export function useDebounced<T>(v: T, ms = 300): T {
  const [d, setD] = useState(v);
  useEffect(() => {
    const t = setTimeout(() => setD(v), ms);
    return () => clearTimeout(t);
  }, [v, ms]);
  return d;
}
