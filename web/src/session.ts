// session.ts: who the console acts for (GET /api/v1/status/whoami), shared
// with every page so that they offer only what the token's scopes allow.
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Whoami } from './api';

export const Session = createContext<Whoami | null>(null);

export function useSession(): Whoami | null {
  return useContext(Session);
}

export function can(w: Whoami | null, scope: string): boolean {
  return !!w && w.scopes.includes(scope);
}
