// Who is signed in: a token and the user it names. Tokens come from the
// sign-in page (development token endpoint) or from a host application
// (`#token=<JWT>` in the page address, or the `token` prop of ChatApp).
// Kept in sessionStorage, so each browser tab can be a different user.

import type { DevTokenRequest } from './api';
import { decodeClaims } from './tokenSource';
import type { ChatUser, Role } from './types';

export interface Auth {
  token: string;
  user: ChatUser;
  /**
   * The development sign-in that gave the token: the UI mints a new token
   * with it before this one expires. Absent for a token handed over by a
   * host application, which then lasts as long as that token.
   */
  dev?: DevTokenRequest;
  /** A host application's way to get a new token for the same user (not kept across reloads). */
  mint?: () => Promise<string>;
}

const KEY = 'supportChat.auth';

function isRole(value: unknown): value is Role {
  return value === 'customer' || value === 'agent' || value === 'admin';
}

/** The user a JWT names, read from its claims (the server verifies it; this only displays). */
export function userFromToken(token: string): ChatUser | null {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
    const sub = typeof claims.sub === 'string' ? claims.sub : null;
    if (!sub || !isRole(claims.role)) return null;
    const pools = Array.isArray(claims.pools) ? claims.pools.filter((p): p is string => typeof p === 'string') : [];
    return {
      userId: sub,
      name: typeof claims.name === 'string' && claims.name.trim() ? claims.name : sub,
      role: claims.role,
      pools: claims.role === 'customer' ? [] : pools.length ? pools : ['default'],
    };
  } catch {
    return null;
  }
}

/** Seconds since epoch at which the token expires, if it says. */
export function tokenExpiry(token: string): number | null {
  return decodeClaims(token).exp;
}

export function loadAuth(storage: Storage | undefined = globalThis.sessionStorage): Auth | null {
  try {
    const raw = storage?.getItem(KEY);
    if (!raw) return null;
    const parsed = JSON.parse(raw) as Auth;
    if (typeof parsed.token !== 'string' || !parsed.user || !isRole(parsed.user.role)) return null;
    const exp = tokenExpiry(parsed.token);
    // An expired development sign-in is renewed on connecting; any other expired token is useless.
    if (exp !== null && exp * 1000 < Date.now() && !parsed.dev) return null;
    return parsed;
  } catch {
    return null;
  }
}

export function saveAuth(auth: Auth | null, storage: Storage | undefined = globalThis.sessionStorage): void {
  try {
    if (auth) storage?.setItem(KEY, JSON.stringify({ token: auth.token, user: auth.user, ...(auth.dev ? { dev: auth.dev } : {}) }));
    else storage?.removeItem(KEY);
  } catch {
    // Storage may be unavailable (private mode); the sign-in then lasts as long as the page.
  }
}

/** A token handed over in the address (`#token=…`), removed from the address once read. */
export function takeTokenFromLocation(win: Window): Auth | null {
  const hash = win.location.hash.replace(/^#/, '');
  if (!hash) return null;
  const params = new URLSearchParams(hash);
  const token = params.get('token');
  if (!token) return null;
  params.delete('token');
  const rest = params.toString();
  win.history.replaceState(win.history.state, '', `${win.location.pathname}${win.location.search}${rest ? `#${rest}` : ''}`);
  const user = userFromToken(token);
  return user ? { token, user } : null;
}

/** Where a role starts. */
export function homeOf(role: Role): string {
  return role === 'customer' ? '/support' : role === 'agent' ? '/console' : '/dashboard';
}
