// A tiny client-side router on the History API: the current path and query,
// and `navigate` to change them. The gateway serves index.html for any page
// path, so deep links and reloads work.

import { useSyncExternalStore } from 'react';

export interface Location {
  path: string;
  query: URLSearchParams;
}

const listeners = new Set<() => void>();
let snapshot: { href: string; location: Location } | null = null;

function read(): Location {
  const href = window.location.pathname + window.location.search;
  if (!snapshot || snapshot.href !== href) {
    snapshot = { href, location: { path: window.location.pathname.replace(/\/+$/, '') || '/', query: new URLSearchParams(window.location.search) } };
  }
  return snapshot.location;
}

function notify(): void {
  for (const listener of listeners) listener();
}

if (typeof window !== 'undefined') window.addEventListener('popstate', notify);

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  const current = window.location.pathname + window.location.search;
  if (to === current) return;
  if (options.replace) window.history.replaceState(null, '', to);
  else window.history.pushState(null, '', to);
  notify();
}

export function useLocation(): Location {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    read,
    read,
  );
}
