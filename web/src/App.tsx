// The application: sign-in, then the screens of the signed-in user's role
// under one shared connection — `/support` (customer widget), `/console`
// (agent console), `/dashboard` (supervisor dashboard) — with the header,
// the connection status and the notifications around them.

import { useCallback, useEffect, useState, type ReactNode } from 'react';
import { ChatProvider, useChatClient } from './chat/ChatContext';
import { ChatManagement } from './components/ChatManagement';
import { ChatNotification } from './components/ChatNotification';
import { ChatSupport } from './components/ChatSupport';
import { ConnectionBanner, ConnectionPill } from './components/ConnectionStatus';
import { SignIn, roleName } from './components/SignIn';
import { SupportDashboard } from './components/SupportDashboard';
import { homeOf, loadAuth, saveAuth, takeTokenFromLocation, type Auth } from './lib/auth';
import { navigate, useLocation } from './lib/router';
import { setSoundEnabled, soundEnabled } from './lib/sound';
import type { Role } from './lib/types';

const SCREENS: { path: string; label: string; roles: Role[] }[] = [
  { path: '/support', label: 'Support', roles: ['customer'] },
  { path: '/console', label: 'Console', roles: ['agent', 'admin'] },
  { path: '/dashboard', label: 'Dashboard', roles: ['agent', 'admin'] },
];

export interface AppProps {
  /** A token from a host application; it replaces the sign-in page. */
  initialAuth?: Auth | null;
}

export function App({ initialAuth }: AppProps) {
  const [auth, setAuth] = useState<Auth | null>(() => initialAuth ?? takeTokenFromLocation(window) ?? loadAuth());
  const { path, query } = useLocation();

  const signIn = useCallback((next: Auth) => {
    saveAuth(next);
    setAuth(next);
  }, []);
  const signOut = useCallback(() => {
    saveAuth(null);
    setAuth(null);
    navigate('/');
  }, []);

  if (path === '/' || !auth) {
    const target = query.get('next');
    const go = (a: Auth) => navigate(target && target.startsWith('/') && !target.startsWith('//') ? target : homeOf(a.user.role));
    if (path !== '/' && !auth) {
      // Not signed in on a screen: sign in first, then come back.
      return <Redirect to={`/?next=${encodeURIComponent(path + window.location.search)}`} />;
    }
    return (
      <SignIn
        current={auth}
        onSignedIn={(a) => {
          signIn(a);
          go(a);
        }}
        onContinue={() => auth && go(auth)}
        onSignOut={signOut}
      />
    );
  }

  return (
    <ChatProvider auth={auth} onTokenRenewed={saveAuth}>
      <Shell auth={auth} path={path} onSignOut={signOut}>
        <Screen path={path} role={auth.user.role} />
      </Shell>
    </ChatProvider>
  );
}

function Redirect({ to }: { to: string }) {
  useEffect(() => navigate(to, { replace: true }), [to]);
  return null;
}

function Screen({ path, role }: { path: string; role: Role }) {
  const screen = SCREENS.find((s) => s.path === path);
  if (!screen) {
    return (
      <Message title="Page not found">
        <button type="button" className="btn btn-primary" onClick={() => navigate(homeOf(role))}>
          Go to my screen
        </button>
      </Message>
    );
  }
  if (!screen.roles.includes(role)) {
    return (
      <Message title={`The ${screen.label.toLowerCase()} is not for ${roleName(role)}s`}>
        <p className="muted">Sign in with another role to open it.</p>
        <button type="button" className="btn btn-primary" onClick={() => navigate(homeOf(role))}>
          Go to my screen
        </button>
      </Message>
    );
  }
  if (path === '/support') return <ChatSupport />;
  if (path === '/console') return <ChatManagement />;
  return <SupportDashboard />;
}

function BellIcon({ off }: { off: boolean }) {
  return (
    <svg width="18" height="18" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round" aria-hidden="true">
      <path d="M6 8a6 6 0 0 1 12 0c0 7 3 9 3 9H3s3-2 3-9" />
      <path d="M10.3 21a1.94 1.94 0 0 0 3.4 0" />
      {off && <path d="M3 3l18 18" />}
    </svg>
  );
}

function Message({ title, children }: { title: string; children: ReactNode }) {
  return (
    <main className="empty-state page-message" id="main">
      <h1>{title}</h1>
      {children}
    </main>
  );
}

function Shell({ auth, path, onSignOut, children }: { auth: Auth; path: string; onSignOut: () => void; children: ReactNode }) {
  const client = useChatClient();
  const [sound, setSound] = useState(soundEnabled);
  const links = SCREENS.filter((s) => s.roles.includes(auth.user.role));
  const openSession = useCallback(
    (id: string) => navigate(client.user.role === 'customer' ? '/support' : `/console?chat=${encodeURIComponent(id)}`),
    [client],
  );
  const openQueue = useCallback(() => navigate('/console'), []);

  return (
    <div className={`app app-${auth.user.role}`}>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <a
          className="brand"
          href={homeOf(auth.user.role)}
          onClick={(e) => {
            e.preventDefault();
            navigate(homeOf(auth.user.role));
          }}
        >
          <span className="brand-mark" aria-hidden="true">
            ●
          </span>
          Support chat
        </a>
        {links.length > 1 && (
          <nav aria-label="Screens" className="nav">
            {links.map((link) => (
              <a
                key={link.path}
                href={link.path}
                className={`nav-link ${path === link.path ? 'is-active' : ''}`}
                aria-current={path === link.path ? 'page' : undefined}
                onClick={(e) => {
                  e.preventDefault();
                  navigate(link.path);
                }}
              >
                {link.label}
              </a>
            ))}
          </nav>
        )}
        <div className="topbar-right">
          {auth.user.role !== 'customer' && <ConnectionPill />}
          <button
            type="button"
            className="icon-btn"
            aria-pressed={sound}
            aria-label={sound ? 'Notification sound on' : 'Notification sound off'}
            title={sound ? 'Sound on' : 'Sound off'}
            onClick={() => {
              setSoundEnabled(!sound);
              setSound(!sound);
            }}
          >
            <BellIcon off={!sound} />
          </button>
          <span className="user-chip" title={`${auth.user.userId} · ${roleName(auth.user.role)}`}>
            <span className="user-name">{auth.user.name}</span>
            <span className="user-role">{roleName(auth.user.role)}</span>
          </span>
          <button type="button" className="btn btn-small btn-ghost sign-out" onClick={onSignOut} aria-label="Sign out" title="Sign out">
            <span className="sign-out-text">Sign out</span>
            <svg className="sign-out-icon" width="18" height="18" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round" aria-hidden="true">
              <path d="M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4" />
              <path d="M16 17l5-5-5-5" />
              <path d="M21 12H9" />
            </svg>
          </button>
        </div>
      </header>
      <ConnectionBanner onSignIn={onSignOut} />
      <div className="content">{children}</div>
      <ChatNotification onOpenSession={openSession} onOpenQueue={openQueue} />
    </div>
  );
}
