// The supervisor's part of the dashboard, for admins: a live table of the
// open chats (waiting and active) with Open, Transfer (active ones) and
// Close with a reason, and a table of the agents with their status, load
// and first responses of the day.
// Both are drawn from `GET /api/chat/supervisor`, polled (lib/supervisor);
// durations tick every second on the server's clock.

import { useEffect, useState, type FormEvent } from 'react';
import { toErrorBody } from '../chat/ChatClient';
import { useAgentDesk, useChatClient } from '../chat/ChatContext';
import { duration, timeOfDay, timeWithSeconds } from '../lib/format';
import { useNow, usePageVisible } from '../lib/hooks';
import { navigate } from '../lib/router';
import {
  agentRows,
  chatRows,
  clockDuration,
  fetchSupervisorView,
  isStale,
  knownPools,
  Poller,
  serverNow,
  stillHidden,
  type ChatRow,
  type SupervisedAgentStatus,
  type SupervisorSnapshot,
} from '../lib/supervisor';
import { MAX_REASON_CHARS, type Session } from '../lib/types';
import { Modal } from './Modal';
import { TransferDialog } from './TransferDialog';

const STATUS_LABEL: Record<SupervisedAgentStatus, string> = { online: 'Online', away: 'Away', offline: 'Offline' };
const STATUS_TONE: Record<SupervisedAgentStatus, string> = { online: 'pill-ok', away: 'pill-warn', offline: 'pill-muted' };

export function SupervisorView() {
  const client = useChatClient();
  const desk = useAgentDesk();
  // '' is every pool.
  const [pool, setPool] = useState('');
  const [snapshot, setSnapshot] = useState<SupervisorSnapshot | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [pools, setPools] = useState<string[]>(() => [...client.user.pools].sort());
  const [hidden, setHidden] = useState<ReadonlySet<string>>(() => new Set());
  const [closing, setClosing] = useState<ChatRow | null>(null);
  const [transferring, setTransferring] = useState<Session | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const visible = usePageVisible();
  const localNow = useNow(1000, visible);

  useEffect(() => {
    setSnapshot(null);
    setError(null);
    const poller = new Poller({
      visible: () => document.visibilityState === 'visible',
      load: async (signal) => {
        try {
          const view = await fetchSupervisorView(client.config.serverUrl, client.tokens, pool || null, signal);
          if (signal.aborted) return;
          setSnapshot({ view, receivedAt: Date.now() });
          setError(null);
          setPools((known) => knownPools(known, view));
          setHidden((ids) => (ids.size ? stillHidden(ids, view) : ids));
        } catch (err) {
          if (!signal.aborted) setError(toErrorBody(err).message);
        }
      },
    });
    poller.start();
    const onVisibility = () => poller.visibilityChanged();
    document.addEventListener('visibilitychange', onVisibility);
    return () => {
      document.removeEventListener('visibilitychange', onVisibility);
      poller.stop();
    };
  }, [client, pool]);

  const now = snapshot ? serverNow(snapshot, localNow) : localNow;
  const rows = snapshot ? chatRows(snapshot.view.chats, now, hidden) : [];
  const agents = snapshot ? agentRows(snapshot.view.agents) : [];
  const stale = isStale(snapshot?.receivedAt ?? null, localNow);
  const staleSeconds = snapshot ? Math.round((localNow - snapshot.receivedAt) / 1000) : 0;
  const waiting = rows.filter((r) => r.state === 'waiting').length;

  const close = async (row: ChatRow, reason: string): Promise<string | null> => {
    if (!desk) return 'Closing chats needs the agent desk of this sign-in.';
    const result = await desk.close(row.id, reason);
    if (!result.ok) return result.message;
    setHidden((ids) => new Set(ids).add(row.id));
    setClosing(null);
    setNotice(`The chat with ${row.customer} is closed.`);
    return null;
  };

  const transferred = (session: Session) =>
    setNotice(
      session.status === 'pending'
        ? `The chat with ${session.customerName} is back in the ${session.pool} queue.`
        : `The chat with ${session.customerName} is now with ${session.agentName ?? session.agentId}.`,
    );

  return (
    <section className="supervisor" aria-labelledby="supervisor-title">
      <header className="supervisor-header">
        <div>
          <h2 id="supervisor-title" className="supervisor-title">
            Supervision
          </h2>
          <p className="muted small" data-testid="supervisor-updated">
            {snapshot ? `Updated ${timeWithSeconds(snapshot.view.updatedAt)}` : error ? '' : 'Loading…'}
            {stale && (
              <span className="pill pill-warn supervisor-stale" data-testid="supervisor-stale" role="status">
                <span className="dot" aria-hidden="true" />
                Stale: no update for {staleSeconds} s
              </span>
            )}
          </p>
        </div>
        <label className="field field-inline">
          <span className="field-label">Pool</span>
          <select value={pool} onChange={(e) => setPool(e.target.value)} data-testid="supervisor-pool">
            <option value="">All pools</option>
            {pools.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </label>
      </header>
      {error && (
        <p className="inline-error" role="alert" data-testid="supervisor-error">
          The supervisor view could not be updated: {error}
        </p>
      )}
      {notice && (
        <div className="notice notice-ok" role="status" data-testid="supervisor-notice">
          <span>{notice}</span>
          <button type="button" className="icon-btn" aria-label="Dismiss" onClick={() => setNotice(null)}>
            ×
          </button>
        </div>
      )}

      <div className="supervisor-table-wrap">
        <table className="supervisor-table" data-testid="supervisor-chats">
          <caption>
            Open chats{snapshot ? `: ${rows.length} (${waiting} waiting)` : ''}
            {pool ? ` in ${pool}` : ''}
          </caption>
          <thead>
            <tr>
              <th scope="col">Customer</th>
              <th scope="col">Agent</th>
              <th scope="col">Pool</th>
              <th scope="col">For</th>
              <th scope="col">Last message</th>
              <th scope="col" className="supervisor-num">
                Unread by agent
              </th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {snapshot && rows.length === 0 && (
              <tr>
                <td colSpan={7} className="muted supervisor-empty">
                  No open chats.
                </td>
              </tr>
            )}
            {rows.map((row) => (
              <tr key={row.id} data-testid="supervisor-chat-row" data-session-id={row.id} data-state={row.state}>
                <th scope="row">
                  <span className="supervisor-customer">{row.customer}</span>
                  {row.subject && <span className="supervisor-subject">{row.subject}</span>}
                </th>
                <td data-testid="supervisor-chat-agent">{row.agent ?? <span className="tag tag-pending">waiting</span>}</td>
                <td>{row.pool}</td>
                <td data-testid="supervisor-chat-for" className="supervisor-for">
                  <span className="supervisor-for-label">{row.state === 'waiting' ? 'waiting for' : 'active for'}</span> {clockDuration(row.seconds)}
                </td>
                <td title={row.lastMessageAt ? timeWithSeconds(row.lastMessageAt) : undefined}>{row.lastMessageAt ? timeOfDay(row.lastMessageAt) : '—'}</td>
                <td className="supervisor-num" data-testid="supervisor-chat-unread">
                  {row.unreadByAgent === null ? '—' : row.unreadByAgent}
                </td>
                <td className="supervisor-actions">
                  <a
                    className="btn btn-small"
                    href={`/console?chat=${encodeURIComponent(row.id)}`}
                    aria-label={`Open the chat with ${row.customer}`}
                    onClick={(e) => {
                      e.preventDefault();
                      navigate(`/console?chat=${encodeURIComponent(row.id)}`);
                    }}
                  >
                    Open
                  </a>
                  {row.state === 'active' && (
                    <button type="button" className="btn btn-small" aria-label={`Transfer the chat with ${row.customer}`} onClick={() => setTransferring(row.session)}>
                      Transfer
                    </button>
                  )}
                  <button type="button" className="btn btn-small btn-danger" aria-label={`Close the chat with ${row.customer}`} onClick={() => setClosing(row)}>
                    Close
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>

      <div className="supervisor-table-wrap">
        <table className="supervisor-table" data-testid="supervisor-agents">
          <caption>Agents{snapshot ? `: ${agents.filter((a) => a.status !== 'offline').length} connected of ${agents.length}` : ''}</caption>
          <thead>
            <tr>
              <th scope="col">Agent</th>
              <th scope="col">Status</th>
              <th scope="col" className="supervisor-num">
                Open chats / capacity
              </th>
              <th scope="col" className="supervisor-num">
                Answered today
              </th>
              <th scope="col" className="supervisor-num">
                Avg first response
              </th>
            </tr>
          </thead>
          <tbody>
            {snapshot && agents.length === 0 && (
              <tr>
                <td colSpan={5} className="muted supervisor-empty">
                  No agent has connected{pool ? ` to ${pool}` : ''} yet.
                </td>
              </tr>
            )}
            {agents.map((agent) => (
              <tr key={agent.id} data-testid="supervisor-agent-row" data-agent-id={agent.id} data-status={agent.status}>
                <th scope="row">
                  <span className="supervisor-customer">{agent.name}</span>
                  <span className="supervisor-subject">{agent.pools.join(', ')}</span>
                </th>
                <td>
                  <span className={`pill ${STATUS_TONE[agent.status] ?? 'pill-muted'}`} data-testid="supervisor-agent-status">
                    {STATUS_LABEL[agent.status] ?? agent.status}
                  </span>
                </td>
                <td className={`supervisor-num ${agent.openChats >= agent.capacity && agent.capacity > 0 ? 'supervisor-full' : ''}`} data-testid="supervisor-agent-load">
                  {agent.openChats} / {agent.capacity}
                </td>
                <td className="supervisor-num" data-testid="supervisor-agent-answered">
                  {agent.answeredToday}
                </td>
                <td className="supervisor-num">{duration(agent.avgFirstResponseSeconds)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>

      {transferring && <TransferDialog session={transferring} onClose={() => setTransferring(null)} onTransferred={transferred} />}
      {closing && <CloseChatDialog row={closing} onCancel={() => setClosing(null)} onClose={(reason) => close(closing, reason)} />}
    </section>
  );
}

/** Asks for the reason (the customer sees it) before a supervisor closes someone's chat. */
function CloseChatDialog({ row, onCancel, onClose }: { row: ChatRow; onCancel: () => void; onClose: (reason: string) => Promise<string | null> }) {
  const [reason, setReason] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!reason.trim()) {
      setError('Say why the chat is closed: the customer sees it.');
      return;
    }
    setBusy(true);
    setError(null);
    const message = await onClose(reason);
    setBusy(false);
    if (message) setError(message);
  };
  return (
    <Modal title={`Close the chat with ${row.customer}?`} onClose={onCancel}>
      <form className="stack" onSubmit={(e) => void submit(e)}>
        <p className="muted small">
          {row.agent ? `${row.agent} is handling it.` : 'It is still waiting for an agent.'} The customer can no longer write in it.
        </p>
        <label className="field">
          <span className="field-label">Reason (the customer sees it)</span>
          <textarea rows={3} value={reason} maxLength={MAX_REASON_CHARS} onChange={(e) => setReason(e.target.value)} placeholder="For example: question answered" />
        </label>
        {error && (
          <p className="inline-error" role="alert">
            {error}
          </p>
        )}
        <div className="modal-actions">
          <button type="button" className="btn btn-ghost" onClick={onCancel}>
            Cancel
          </button>
          <button type="submit" className="btn btn-danger" disabled={busy}>
            {busy ? 'Closing…' : 'Close chat'}
          </button>
        </div>
      </form>
    </Modal>
  );
}
