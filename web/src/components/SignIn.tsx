// Sign-in for local use: pick a role and a name, and get a token from the
// server's development token endpoint. A host application passes its own
// token instead (see README.md).

import { useState, type FormEvent } from 'react';
import websocketConfig from '../config/websocket.config';
import { ApiError, fetchDevToken, type DevTokenRequest } from '../lib/api';
import type { Auth } from '../lib/auth';
import { slugify } from '../lib/ids';
import type { Role } from '../lib/types';

const ROLES: { role: Role; title: string; text: string }[] = [
  { role: 'customer', title: 'Customer', text: 'Start a chat with support' },
  { role: 'agent', title: 'Agent', text: 'Take chats from the queue and answer them' },
  { role: 'admin', title: 'Supervisor', text: 'Watch the live dashboard (admin)' },
];

export interface SignInProps {
  current: Auth | null;
  onSignedIn: (auth: Auth) => void;
  onContinue: () => void;
  onSignOut: () => void;
}

export function SignIn({ current, onSignedIn, onContinue, onSignOut }: SignInProps) {
  const [role, setRole] = useState<Role>('customer');
  const [name, setName] = useState('');
  const [userId, setUserId] = useState('');
  const [pools, setPools] = useState('default');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const derivedId = slugify(name) || 'guest';

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!name.trim() || busy) return;
    setBusy(true);
    setError(null);
    try {
      const poolList = pools
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean);
      const request: DevTokenRequest = {
        userId: userId.trim() || derivedId,
        name: name.trim(),
        role,
        ...(role !== 'customer' && poolList.length ? { pools: poolList } : {}),
      };
      const result = await fetchDevToken(websocketConfig.serverUrl, request);
      // Kept with the token, so that the UI can mint the next one before this one expires.
      onSignedIn({ token: result.token, user: result.user, dev: request });
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        setError('This server does not hand out development tokens (it has a JWT_SECRET). Open this page from your application with its own token.');
      } else {
        setError(err instanceof Error ? err.message : String(err));
      }
      setBusy(false);
    }
  };

  return (
    <main className="signin-page" id="main">
      <div className="signin-card">
        <h1 className="signin-title">Support chat</h1>
        <p className="muted">Sign in for local use: choose who you are.</p>
        {current && (
          <div className="notice notice-ok">
            <span>
              Signed in as <strong>{current.user.name}</strong> ({roleName(current.user.role)}).
            </span>
            <span className="notice-actions">
              <button type="button" className="btn btn-small btn-primary" onClick={onContinue}>
                Continue
              </button>
              <button type="button" className="btn btn-small" onClick={onSignOut}>
                Sign out
              </button>
            </span>
          </div>
        )}
        <form onSubmit={(e) => void submit(e)} className="stack">
          <fieldset className="role-picker">
            <legend className="field-label">Role</legend>
            {ROLES.map((r) => (
              <label key={r.role} className={`role-option ${role === r.role ? 'is-checked' : ''}`}>
                <input type="radio" name="role" value={r.role} checked={role === r.role} onChange={() => setRole(r.role)} />
                <span className="role-title">{r.title}</span>
                <span className="role-text">{r.text}</span>
              </label>
            ))}
          </fieldset>
          <label className="field">
            <span className="field-label">Your name</span>
            <input name="name" required autoComplete="name" value={name} onChange={(e) => setName(e.target.value)} placeholder="For example: Alex Morgan" />
          </label>
          <details className="more">
            <summary>More options</summary>
            <label className="field">
              <span className="field-label">User id</span>
              <input name="userId" value={userId} onChange={(e) => setUserId(e.target.value)} placeholder={derivedId} autoComplete="off" />
            </label>
            {role !== 'customer' && (
              <label className="field">
                <span className="field-label">Pools (comma separated)</span>
                <input name="pools" value={pools} onChange={(e) => setPools(e.target.value)} autoComplete="off" />
              </label>
            )}
          </details>
          {error && (
            <p className="inline-error" role="alert">
              {error}
            </p>
          )}
          <button type="submit" className="btn btn-primary btn-block" disabled={busy || !name.trim()}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
        </form>
      </div>
    </main>
  );
}

export function roleName(role: Role): string {
  return role === 'customer' ? 'customer' : role === 'agent' ? 'agent' : 'supervisor';
}
