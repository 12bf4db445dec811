// The console's presence panel: the signed-in agent's own status (online or
// away, sent with `set-status` and shown as the server acknowledged it) and
// the directory of the agent's pools, each agent with status and open
// chats over capacity, kept live by `agent-updated`.

import { useState } from 'react';
import { useChatClient, useConnection } from '../chat/ChatContext';
import { toErrorBody } from '../chat/ChatClient';
import { useDirectory } from '../chat/useDirectory';
import type { AgentEntry, AgentStatus } from '../lib/types';

const STATUS_TEXT: Record<AgentStatus, string> = { online: 'Online', away: 'Away', offline: 'Offline' };

export function StatusControl({ me }: { me: AgentEntry | null }) {
  const client = useChatClient();
  const connection = useConnection();
  // What the server last acknowledged; the directory's entry until then.
  const [acked, setAcked] = useState<AgentStatus | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const current = me?.status && me.status !== 'offline' ? me.status : (acked ?? 'online');

  const choose = async (status: 'online' | 'away') => {
    if (busy || status === current) return;
    setBusy(true);
    setError(null);
    try {
      const agent = await client.setStatus(status);
      setAcked(agent.status);
    } catch (err) {
      setError(`Your status could not be changed: ${toErrorBody(err).message}`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="status-control" data-testid="status-control" data-status={current}>
      <span className="field-label" id="my-status-label">
        My status
      </span>
      <div className="segmented" role="radiogroup" aria-labelledby="my-status-label">
        {(['online', 'away'] as const).map((status) => (
          <button
            key={status}
            type="button"
            role="radio"
            aria-checked={current === status}
            className={`segment segment-${status} ${current === status ? 'is-on' : ''}`}
            disabled={busy || connection.status !== 'connected'}
            onClick={() => void choose(status)}
          >
            <span className={`status-dot status-${status}`} aria-hidden="true" />
            {STATUS_TEXT[status]}
          </button>
        ))}
      </div>
      {error && (
        <p className="inline-error small" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

export function AgentPresence() {
  const client = useChatClient();
  const directory = useDirectory();
  const me = directory.agents.find((a) => a.id === client.user.userId) ?? null;
  return (
    <section className="list-section presence" aria-labelledby="agents-heading">
      {client.user.role === 'agent' && <StatusControl me={me} />}
      <h2 id="agents-heading" className="list-heading">
        Agents <span className="count">{directory.agents.filter((a) => a.status === 'online').length} online</span>
      </h2>
      {directory.error && !directory.loaded ? (
        <p className="inline-error small">The agents could not be loaded.</p>
      ) : directory.agents.length === 0 ? (
        <p className="muted small">{directory.loaded ? 'No agent has signed in yet.' : 'Loading…'}</p>
      ) : (
        <ul className="agent-list" data-testid="agent-directory">
          {directory.agents.map((a) => (
            <li key={a.id} className="agent-item" data-testid="directory-agent" data-agent-id={a.id} data-status={a.status}>
              <span className={`status-dot status-${a.status}`} aria-hidden="true" />
              <span className="agent-name">
                {a.name}
                {a.id === client.user.userId && <span className="muted"> (you)</span>}
              </span>
              <span className="agent-status">{STATUS_TEXT[a.status] ?? a.status}</span>
              <span className="agent-load" data-testid="agent-load" title="Open chats / capacity">
                {a.openChats}/{a.capacity}
              </span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
