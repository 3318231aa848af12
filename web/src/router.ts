// router.ts: the path and query string are the app's state; navigate()
// pushes a new entry, replace() updates the current one (for inputs).
import { useEffect, useState } from 'preact/hooks';

export interface Route {
  path: string;
  search: string;
}

const listeners = new Set<() => void>();

function current(): Route {
  return { path: location.pathname, search: location.search };
}

export function navigate(to: string): void {
  history.pushState(null, '', to);
  listeners.forEach((f) => f());
  window.scrollTo(0, 0);
}

export function replace(to: string): void {
  if (to === location.pathname + location.search) return;
  history.replaceState(null, '', to);
  listeners.forEach((f) => f());
}

export function useRoute(): Route {
  const [r, setR] = useState(current());
  useEffect(() => {
    const f = () => setR(current());
    listeners.add(f);
    window.addEventListener('popstate', f);
    return () => {
      listeners.delete(f);
      window.removeEventListener('popstate', f);
    };
  }, []);
  return r;
}

/** onLinkClick turns a plain click on an <a href> into navigate(). */
export function onLinkClick(e: MouseEvent): void {
  const a = (e.target as HTMLElement).closest('a');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
}
