// The agent console: the live queue of pending chats, the agent's own chats
// with unread counts, and the selected conversation with its actions (take,
// transfer to an agent or back to a queue, close with a reason). On narrow
// screens the lists and the conversation take turns.

import { useEffect, useState, type FormEvent, type ReactNode } from 'react';
import type { ActionResult } from '../chat/AgentDesk';
import { useAgentDesk, useChatClient, useDeskState } from '../chat/ChatContext';
import { useChatSocket, useSessionSummary } from '../chat/useChatSocket';
import { ago } from '../lib/format';
import { useNow } from '../lib/hooks';
import { navigate, useLocation } from '../lib/router';
import type { AgentEntry, Session } from '../lib/types';
import { MAX_REASON_CHARS } from '../lib/types';
import { Conversation } from './Conversation';
import { Modal } from './Modal';

export function ChatManagement() {
  const desk = useAgentDesk();
  const state = useDeskState();
  const client = useChatClient();
  const { query } = useLocation();
  const selected = query.get('chat');
  const [notice, setNotice] = useState<{ tone: 'bad' | 'ok'; text: string } | null>(null);
  const now = useNow(15000);

  const select = (id: string | null) => navigate(id ? `/console?chat=${encodeURIComponent(id)}` : '/console');

  // A chat taken away (transferred, or closed by me elsewhere) drops the selection's actions, not the view.
  useEffect(() => {
    if (!desk) return undefined;
    return desk.onEvent((event) => {
      if (event.type === 'lost' && event.session.id === selected) {
        setNotice({ tone: 'ok', text: `This chat is ${event.reason}.` });
      }
    });
  }, [desk, selected]);

  if (!desk) return null;

  const take = async (id: string) => {
    setNotice(null);
    const result = await desk.take(id);
    if (result.ok) select(id);
    else setNotice({ tone: 'bad', text: result.message });
  };

  const selectedSession = state.queue.find((s) => s.id === selected) ?? state.mine.find((s) => s.id === selected) ?? null;

  return (
    <div className={`console ${selected ? 'console-has-selection' : ''}`}>
      <aside className="console-sidebar" aria-label="Chats">
        {notice && (
          <div className={`notice notice-${notice.tone}`} role={notice.tone === 'bad' ? 'alert' : 'status'} data-testid="console-notice">
            <span>{notice.text}</span>
            <button type="button" className="icon-btn" aria-label="Dismiss" onClick={() => setNotice(null)}>
              ×
            </button>
          </div>
        )}
        <section className="list-section" aria-labelledby="queue-heading">
          <h2 id="queue-heading" className="list-heading">
            Queue <span className="count" data-testid="queue-count">{state.queue.length}</span>
          </h2>
          {!state.loaded ? (
            <p className="muted small">Loading…</p>
          ) : state.queue.length === 0 ? (
            <p className="muted small">No one is waiting.</p>
          ) : (
            <ul className="session-list" data-testid="queue">
              {state.queue.map((s) => (
                <li key={s.id} className={`session-item ${s.id === selected ? 'is-selected' : ''}`} data-testid="queue-item">
                  <button type="button" className="session-open" onClick={() => select(s.id)} aria-current={s.id === selected ? 'true' : undefined}>
                    <span className="session-name">{s.customerName}</span>
                    <span className="session-sub">{s.subject ?? 'No subject'}</span>
                    <span className="session-meta">
                      Waiting since {ago(s.createdAt, now)}
                      {s.pool !== 'default' ? ` · ${s.pool}` : ''}
                    </span>
                  </button>
                  <button type="button" className="btn btn-primary btn-small" onClick={() => void take(s.id)} aria-label={`Take chat with ${s.customerName}`}>
                    Take
                  </button>
                </li>
              ))}
            </ul>
          )}
        </section>
        <section className="list-section" aria-labelledby="mine-heading">
          <h2 id="mine-heading" className="list-heading">
            My chats <span className="count">{state.mine.filter((s) => s.status === 'active').length}</span>
          </h2>
          {state.loaded && state.mine.length === 0 ? (
            <p className="muted small">Take a chat from the queue to start.</p>
          ) : (
            <ul className="session-list" data-testid="my-chats">
              {state.mine.map((s) => (
                <MyChatItem key={s.id} session={s} selected={s.id === selected} onSelect={() => select(s.id)} />
              ))}
            </ul>
          )}
        </section>
        {state.error && (
          <p className="inline-error" role="alert">
            Chats could not be loaded: {state.error}
          </p>
        )}
      </aside>
      <main className="console-main" id="main">
        {selected ? (
          <AgentConversation
            key={selected}
            sessionId={selected}
            listed={selectedSession}
            onBack={() => select(null)}
            onTake={() => void take(selected)}
            onDone={() => select(null)}
          />
        ) : (
          <div className="empty-state">
            <h2>No chat selected</h2>
            <p className="muted">
              {state.queue.length > 0
                ? `${state.queue.length} waiting in the queue. Take one to start helping.`
                : 'New chats appear in the queue as customers start them.'}
            </p>
            <p className="muted small">Signed in as {client.user.name}.</p>
          </div>
        )}
      </main>
    </div>
  );
}

function MyChatItem({ session, selected, onSelect }: { session: Session; selected: boolean; onSelect: () => void }) {
  const { unread, state } = useSessionSummary(session.id);
  const last = state.messages[state.messages.length - 1];
  const typing = state.typing.length > 0;
  return (
    <li className={`session-item ${selected ? 'is-selected' : ''}`} data-testid="my-chat-item">
      <button type="button" className="session-open" onClick={onSelect} aria-current={selected ? 'true' : undefined}>
        <span className="session-name">
          {session.customerName}
          {session.status === 'closed' && <span className="tag">Closed</span>}
        </span>
        <span className="session-sub">{typing ? 'typing…' : (last?.content ?? session.subject ?? 'No messages yet')}</span>
      </button>
      {unread > 0 && (
        <span className="badge" data-testid="unread-badge" aria-label={`${unread} unread`}>
          {unread}
        </span>
      )}
    </li>
  );
}

interface AgentConversationProps {
  sessionId: string;
  listed: Session | null;
  onBack: () => void;
  onTake: () => void;
  onDone: () => void;
}

function AgentConversation({ sessionId, listed, onBack, onTake, onDone }: AgentConversationProps) {
  const client = useChatClient();
  const desk = useAgentDesk()!;
  const desks = useDeskState();
  const chat = useChatSocket({ sessionId });
  const [dialog, setDialog] = useState<'transfer' | 'close' | null>(null);
  const session = chat.session ?? listed;
  const me = client.user.userId;
  const closed = session?.status === 'closed' || chat.closed !== null;
  const mine = !closed && session?.status === 'active' && session.agentId === me;
  const pending = !closed && session?.status === 'pending';
  const closedInfo = chat.closed ?? desks.closedInfo[sessionId] ?? null;

  // Transferred or closed, the chat is no longer this agent's: the dialog goes and so does the selection.
  const finish = async (action: Promise<ActionResult>) => {
    const result = await action;
    if (!result.ok) return result.message;
    setDialog(null);
    onDone();
    return null;
  };

  let footer;
  if (closed) {
    footer = (
      <div className="closed-note" data-testid="closed-note">
        <p>
          <strong>Chat closed</strong>
          {closedInfo ? ` by ${closedInfo.closedBy.role === 'customer' ? 'the customer' : closedInfo.closedBy.userId === me ? 'you' : closedInfo.closedBy.userId}` : ''}
          {closedInfo?.reason ? `: ${closedInfo.reason}` : '.'}
        </p>
        <button
          type="button"
          className="btn"
          onClick={() => {
            desk.dismiss(sessionId);
            onDone();
          }}
        >
          Remove from my chats
        </button>
      </div>
    );
  } else if (pending) {
    footer = (
      <div className="take-bar">
        <p>{session?.customerName ?? 'The customer'} is waiting for an agent.</p>
        <button type="button" className="btn btn-primary" onClick={onTake}>
          Take this chat
        </button>
      </div>
    );
  } else if (session) {
    footer = (
      <div className="take-bar">
        <p>This chat is with {session.agentName ?? session.agentId ?? 'another agent'}.</p>
      </div>
    );
  }

  return (
    <section className="agent-chat" aria-labelledby="chat-title">
      <header className="chat-header">
        <button type="button" className="icon-btn back-btn" onClick={onBack} aria-label="Back to the chat list">
          ←
        </button>
        <div className="chat-header-text">
          <h2 id="chat-title" className="chat-title">
            {session?.customerName ?? 'Chat'}
            {session && <span className={`tag tag-${closed ? 'closed' : session.status}`}>{closed ? 'closed' : session.status}</span>}
          </h2>
          <p className="chat-sub">{session?.subject ?? 'No subject'}</p>
        </div>
        {mine && (
          <div className="chat-actions">
            <button type="button" className="btn btn-small" onClick={() => setDialog('transfer')}>
              Transfer
            </button>
            <button type="button" className="btn btn-small btn-danger" onClick={() => setDialog('close')}>
              Close
            </button>
          </div>
        )}
      </header>
      <Conversation sessionId={sessionId} chat={chat} canWrite={mine} footer={footer} markRead={mine} />
      {dialog === 'transfer' && session && (
        <TransferDialog session={session} onCancel={() => setDialog(null)} onTransfer={(target) => finish(desk.transfer(sessionId, target))} />
      )}
      {dialog === 'close' && <CloseDialog onCancel={() => setDialog(null)} onClose={(reason) => finish(desk.close(sessionId, reason))} />}
    </section>
  );
}

function TransferDialog({
  session,
  onCancel,
  onTransfer,
}: {
  session: Session;
  onCancel: () => void;
  onTransfer: (target: { agentId?: string; pool?: string }) => Promise<string | null>;
}) {
  const client = useChatClient();
  const me = client.user.userId;
  const [mode, setMode] = useState<'agent' | 'queue'>('agent');
  const [agentId, setAgentId] = useState('');
  // The agents of the chat's pool, from the directory: only they can take it.
  const [agents, setAgents] = useState<AgentEntry[] | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [pool, setPool] = useState(session.pool);

  useEffect(() => {
    let live = true;
    client.api
      .agents(session.pool)
      .then(({ items }) => {
        if (!live) return;
        const others = items.filter((a) => a.id !== me);
        setAgents(others);
        // Someone online first, as the likeliest pick.
        setAgentId((current) => current || (others.find((a) => a.online) ?? others[0])?.id || '');
      })
      .catch(() => {
        if (live) setLoadError('The list of agents could not be loaded.');
      });
    return () => {
      live = false;
    };
  }, [client, session.pool, me]);

  return (
    <FormDialog
      title="Transfer chat"
      submitLabel="Transfer"
      tone="primary"
      onCancel={onCancel}
      validate={() => (mode === 'agent' && !agentId ? 'Pick the agent to hand this chat to.' : null)}
      onSubmit={() => onTransfer(mode === 'agent' ? { agentId } : { pool: pool.trim() || session.pool })}
    >
      <fieldset className="choice">
        <legend>Hand this chat to</legend>
        <label className="radio">
          <input type="radio" name="mode" checked={mode === 'agent'} onChange={() => setMode('agent')} />
          Another agent
        </label>
        <label className="radio">
          <input type="radio" name="mode" checked={mode === 'queue'} onChange={() => setMode('queue')} />
          Back to a queue
        </label>
      </fieldset>
      {mode === 'agent' ? (
        <label className="field">
          <span className="field-label">Agent</span>
          <select
            value={agentId}
            onChange={(e) => setAgentId(e.target.value)}
            disabled={!agents || agents.length === 0}
            data-testid="agent-picker"
          >
            {agents === null && <option value="">{loadError ?? 'Loading agents…'}</option>}
            {agents?.length === 0 && <option value="">No other agent serves {session.pool}</option>}
            {agents?.map((a) => (
              <option key={a.id} value={a.id}>
                {a.name} — {a.online ? 'online' : 'offline'}
              </option>
            ))}
          </select>
        </label>
      ) : (
        <label className="field">
          <span className="field-label">Queue (pool)</span>
          <input value={pool} onChange={(e) => setPool(e.target.value)} autoComplete="off" />
        </label>
      )}
    </FormDialog>
  );
}

function CloseDialog({ onCancel, onClose }: { onCancel: () => void; onClose: (reason: string) => Promise<string | null> }) {
  const [reason, setReason] = useState('');
  return (
    <FormDialog title="Close chat" submitLabel="Close chat" tone="danger" onCancel={onCancel} onSubmit={() => onClose(reason)}>
      <label className="field">
        <span className="field-label">Reason (the customer sees it)</span>
        <textarea rows={3} value={reason} maxLength={MAX_REASON_CHARS} onChange={(e) => setReason(e.target.value)} placeholder="For example: question answered" />
      </label>
    </FormDialog>
  );
}

interface FormDialogProps {
  title: string;
  submitLabel: string;
  tone: 'primary' | 'danger';
  onCancel: () => void;
  /** Why the form cannot be sent as it stands, or null; checked before anything is sent. */
  validate?: () => string | null;
  /** Resolves to the message to show, or null once done (the caller then closes the dialog). */
  onSubmit: () => Promise<string | null>;
  children: ReactNode;
}

/**
 * A dialog around one form that acts on the server. The submit button stays
 * disabled while the action is under way, so a second click cannot send it twice.
 */
function FormDialog({ title, submitLabel, tone, onCancel, validate, onSubmit, children }: FormDialogProps) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const invalid = validate?.() ?? null;
    if (invalid) {
      setError(invalid);
      return;
    }
    setBusy(true);
    setError(null);
    const message = await onSubmit();
    setBusy(false);
    if (message) setError(message);
  };
  return (
    <Modal title={title} onClose={onCancel}>
      <form onSubmit={(e) => void submit(e)} className="stack">
        {children}
        {error && (
          <p className="inline-error" role="alert">
            {error}
          </p>
        )}
        <div className="modal-actions">
          <button type="button" className="btn" onClick={onCancel}>
            Cancel
          </button>
          <button type="submit" className={`btn btn-${tone}`} disabled={busy}>
            {submitLabel}
          </button>
        </div>
      </form>
    </Modal>
  );
}
