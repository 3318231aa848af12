// SignIn.tsx: the token form. The token is checked against the server
// (whoami) before it is kept, and a refusal is explained on the page.
import { useState } from 'preact/hooks';
import { setToken, getToken } from '../auth';
import { whoami, ApiError, type Whoami } from '../api';

export function SignIn({ onSignedIn, reason }: { onSignedIn: (w: Whoami) => void; reason?: string }) {
  const [tok, setTok] = useState('');
  const [err, setErr] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setErr('');
    const before = getToken();
    setToken(tok.trim());
    try {
      onSignedIn(await whoami());
    } catch (x) {
      setToken(before);
      setErr(x instanceof ApiError ? x.explain() : String(x));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="page signin" aria-labelledby="signin-h">
      <form class="card" onSubmit={submit}>
        <h1 id="signin-h">Sign in to levitated</h1>
        <p class="muted">
          This server requires a token. Create one with <code>levitated token create --tenant NAME --scope read</code>. It is kept for this tab only
          (session storage) and sent as <code>Authorization: Bearer</code>.
        </p>
        {reason && !err && <div class="alert info">{reason}</div>}
        <label class="field block">
          <span>API token</span>
          <input type="password" autocomplete="off" value={tok} onInput={(e) => setTok((e.target as HTMLInputElement).value)} data-testid="token" required />
        </label>
        <button class="primary" type="submit" disabled={busy} data-testid="signin">
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        {err && (
          <div class="alert error" role="alert" data-testid="signin-error">
            {err}
          </div>
        )}
      </form>
    </section>
  );
}
