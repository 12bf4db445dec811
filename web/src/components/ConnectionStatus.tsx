// The connection status, shown at all times: a compact pill for the header
// and a banner that explains any trouble and offers a retry once automatic
// reconnection has given up.

import { useConnection, useChatClient } from '../chat/ChatContext';
import type { ConnectionInfo } from '../chat/ChatClient';
import { useNow } from '../lib/hooks';

const LABELS: Record<ConnectionInfo['status'], string> = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
  failed: 'Disconnected',
  unauthorized: 'Signed out',
};

/** ChatClient's lastError once a sign-in that cannot be renewed has run out. */
const SESSION_EXPIRED = 'Your session has expired.';

export function statusTone(status: ConnectionInfo['status']): 'ok' | 'warn' | 'bad' {
  if (status === 'connected') return 'ok';
  if (status === 'connecting' || status === 'reconnecting') return 'warn';
  return 'bad';
}

export function ConnectionPill() {
  const connection = useConnection();
  return (
    <span className={`pill pill-${statusTone(connection.status)}`} role="status" aria-live="polite" data-testid="connection-status" data-status={connection.status}>
      <span className="dot" aria-hidden="true" />
      <span className="pill-text">{connection.status === 'unauthorized' && connection.lastError === SESSION_EXPIRED ? 'Session expired' : LABELS[connection.status]}</span>
    </span>
  );
}

export function ConnectionBanner({ onSignIn }: { onSignIn?: () => void }) {
  const connection = useConnection();
  const client = useChatClient();
  const waiting = connection.status === 'reconnecting' && connection.retryAt !== null;
  const now = useNow(500, waiting);
  if (connection.status === 'connected' || connection.status === 'idle' || connection.status === 'connecting') return null;

  let text: string;
  let action: { label: string; run: () => void } | null = null;
  switch (connection.status) {
    case 'reconnecting': {
      const seconds = connection.retryAt ? Math.max(0, Math.ceil((connection.retryAt - now) / 1000)) : 0;
      text = connection.retryAt
        ? `Connection lost. Reconnecting in ${seconds} s (attempt ${connection.attempt} of ${connection.maxAttempts})…`
        : `Connection lost. Reconnecting (attempt ${Math.max(1, connection.attempt)} of ${connection.maxAttempts})…`;
      action = { label: 'Retry now', run: () => client.retryConnection() };
      break;
    }
    case 'offline':
      text = 'You are offline. Messages you write are kept and sent when the network is back.';
      break;
    case 'failed':
      text = `Could not reach the chat server after ${connection.maxAttempts} attempts${connection.lastError ? ` (${connection.lastError})` : ''}. Your unsent messages are kept.`;
      action = { label: 'Retry', run: () => client.retryConnection() };
      break;
    case 'unauthorized':
      text = `${connection.lastError ?? 'The server did not accept your sign-in.'} Sign in again to continue.`;
      if (onSignIn) action = { label: 'Sign in again', run: onSignIn };
      break;
  }
  const tone = connection.status === 'reconnecting' ? 'warn' : 'bad';
  return (
    <div className={`banner banner-${tone}`} role={tone === 'bad' ? 'alert' : 'status'} data-testid="connection-banner">
      <span>{text}</span>
      {action && (
        <button type="button" className="btn btn-small" onClick={action.run}>
          {action.label}
        </button>
      )}
    </div>
  );
}
