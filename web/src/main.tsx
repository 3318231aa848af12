// main.tsx: the console's shell: who is signed in, the navigation, and the
// page of the current URL.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './style.css';
import { whoami, onUnauthorized, ApiError, type Whoami } from './api';
import { setToken, getToken } from './auth';
import { useRoute, onLinkClick, navigate } from './router';
import { Session } from './session';
import { QueryPage } from './pages/Query';
import { ChangesPage } from './pages/Changes';
import { ChangePage } from './pages/Change';
import { AnalysesPage } from './pages/Analyses';
import { AnalysisPage } from './pages/Analysis';
import { StatusPage } from './pages/Status';
import { SignIn } from './pages/SignIn';

const nav = [
  ['/query', 'Query'],
  ['/changes', 'Changes'],
  ['/analyses', 'Analyses'],
  ['/status', 'Status'],
] as const;

const isQuery = (path: string) => path === '/' || path === '/query' || path === '/graph';

function Page({ path, search }: { path: string; search: string }) {
  if (isQuery(path)) return <QueryPage search={search} />;
  if (path === '/changes') return <ChangesPage search={search} />;
  if (path.startsWith('/changes/')) return <ChangePage id={decodeURIComponent(path.slice(9))} search={search} />;
  if (path === '/analyses') return <AnalysesPage />;
  if (path.startsWith('/analyses/')) return <AnalysisPage id={decodeURIComponent(path.slice(10))} />;
  if (path === '/status') return <StatusPage />;
  return (
    <section class="page">
      <h1>Not found</h1>
      <p>
        No page at {path}. <a href="/query">Open the query page</a>.
      </p>
    </section>
  );
}

// Asked as the bundle starts, not after the first paint: the page waits
// for it.
const firstWhoami = whoami();
firstWhoami.catch(() => {}); // handled in App; not an unhandled rejection meanwhile

function App() {
  const route = useRoute();
  const [who, setWho] = useState<Whoami | null>(null);
  const [needSignIn, setNeedSignIn] = useState<string | null>(null);
  const [fatal, setFatal] = useState('');

  useEffect(() => {
    firstWhoami
      .then(setWho)
      .catch((e) => {
        if (e instanceof ApiError && e.status === 401) setNeedSignIn(getToken() ? 'The saved token was refused; sign in again.' : '');
        else if (e instanceof ApiError && e.status === 403) setFatal(e.explain());
        else setFatal(e instanceof Error ? e.message : String(e));
      });
    return onUnauthorized(() => setNeedSignIn('Your token was refused (401); sign in again.'));
  }, []);

  const signOut = () => {
    setToken('');
    setWho(null);
    setNeedSignIn('Signed out.');
  };

  const active = route.path === '/' || route.path === '/graph' ? '/query' : '/' + route.path.split('/')[1];
  return (
    <Session.Provider value={who}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="/query">
          levitated
        </a>
        <nav aria-label="Pages">
          {nav.map(([href, label]) => (
            <a key={href} href={href} aria-current={active === href ? 'page' : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <div class="who" data-testid="who">
          {who && (
            <>
              <span title={`scopes: ${who.scopes.join(', ')}`}>
                tenant <b>{who.tenant}</b>
              </span>
              {who.auth_required && (
                <button type="button" class="link" onClick={signOut}>
                  Sign out
                </button>
              )}
            </>
          )}
        </div>
      </header>
      <main id="main" onClick={onLinkClick as any}>
        {fatal && <div class="alert error page">{fatal}</div>}
        {needSignIn !== null ? (
          <SignIn
            reason={needSignIn}
            onSignedIn={(w) => {
              setWho(w);
              setNeedSignIn(null);
              if (route.path === '/signin') navigate('/query');
            }}
          />
        ) : who || (!fatal && isQuery(route.path)) ? (
          // The query page does not depend on who is signed in (its
          // requests carry the token; a 401 brings the sign-in): it is
          // rendered without waiting for whoami, so that it takes the
          // answers boot.ts asked for as soon as the bundle runs. The
          // others (scopes decide what they offer) wait for it.
          <Page path={route.path} search={route.search} />
        ) : (
          !fatal && <p class="page muted">Loading…</p>
        )}
      </main>
    </Session.Provider>
  );
}

document.addEventListener('click', (e) => {
  if ((e.target as HTMLElement).closest('header')) onLinkClick(e);
});
// The first render in a task of its own, after the bundle's evaluation:
// the boot's answers that came in meanwhile are read in between, so the
// query's body goes to the boot's worker to be inflated while this renders
// and paints, not after.
setTimeout(() => render(<App />, document.getElementById('app')!), 0);
