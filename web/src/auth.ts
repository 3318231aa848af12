// auth.ts: the token lives in session storage, for this tab only, and is
// sent as Authorization: Bearer by api.ts.
const key = 'levitated.token';

export function getToken(): string {
  try {
    return sessionStorage.getItem(key) ?? '';
  } catch {
    return '';
  }
}

export function setToken(tok: string): void {
  if (tok) sessionStorage.setItem(key, tok);
  else sessionStorage.removeItem(key);
}
