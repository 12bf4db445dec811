// The agent console: the live queue of pending chats, the agent's own chats
// with unread counts, the agent's status and the directory of agents, and
// the selected conversation with its actions (take, transfer to an agent or
// back to a queue, close with a reason). On narrow screens the lists and the
// conversation take turns.

import { useEffect, useState } from 'react';
import type { ActionResult } from '../chat/AgentDesk';
import { useAgentDesk, useChatClient, useDeskState } from '../chat/ChatContext';
import { useChatSocket, useSessionSummary } from '../chat/useChatSocket';
import { duration, timeOfDay } from '../lib/format';
import { useNow } from '../lib/hooks';
import { navigate, useLocation } from '../lib/router';
import type { Session } from '../lib/types';
import { MAX_REASON_CHARS } from '../lib/types';
import { Conversation } from './Conversation';
import { AgentPresence } from './AgentPresence';
import { FormDialog } from './FormDialog';
import { InviteDialog } from './InviteDialog';
import { TransferDialog } from './TransferDialog';

/** A notice about one chat as it stood then; it goes when the chat changes hands again. */
interface Notice {
  tone: 'bad' | 'ok';
  text: string;
  about?: { sessionId: string; status: Session['status']; agentId?: string | null };
}

export function ChatManagement() {
  const desk = useAgentDesk();
  const state = useDeskState();
  const client = useChatClient();
  const { query } = useLocation();
  const selected = query.get('chat');
  const [notice, setNotice] = useState<Notice | null>(null);
  // The chat just taken: its message box gets the focus once it shows.
  const [focusFor, setFocusFor] = useState<string | null>(null);
  // A chat opened by id that is neither queued nor mine (admins: any chat).
  const [fetched, setFetched] = useState<Session | null>(null);
  const [fetchError, setFetchError] = useState<string | null>(null);
  const now = useNow(5000);
  const offset = client.serverNow() - Date.now();

  const select = (id: string | null) => navigate(id ? `/console?chat=${encodeURIComponent(id)}` : '/console');

  // A chat taken away (transferred, or closed by me elsewhere) drops the selection's actions, not the view.
  useEffect(() => {
    if (!desk) return undefined;
    return desk.onEvent((event) => {
      if (event.type === 'lost' && event.session.id === selected) {
        setNotice({ tone: 'ok', text: `This chat is ${event.reason}.`, about: { sessionId: event.session.id, status: event.session.status, agentId: event.session.agentId } });
      }
    });
  }, [desk, selected]);

  // A notice about a chat that has since changed hands again is out of date.
  const about = notice?.about;
  useEffect(() => {
    if (!about) return undefined;
    const offs = [
      client.on('session-updated', ({ session }) => {
        if (session.id !== about.sessionId) return;
        if (session.status !== about.status || (about.agentId !== undefined && session.agentId !== about.agentId)) setNotice(null);
      }),
      client.on('session-closed', ({ sessionId }) => {
        if (sessionId === about.sessionId) setNotice(null);
      }),
    ];
    return () => {
      for (const off of offs) off();
    };
  }, [client, about]);

  const listedSession = state.queue.find((s) => s.id === selected) ?? state.mine.find((s) => s.id === selected) ?? null;
  const needsFetch = selected !== null && state.loaded && listedSession === null;
  useEffect(() => {
    setFetchError(null);
    if (!needsFetch || !selected) {
      setFetched(null);
      return undefined;
    }
    let live = true;
    client.api.getSession(selected).then(
      (session) => {
        if (live) setFetched(session);
      },
      (error: unknown) => {
        if (live) setFetchError(error instanceof Error ? error.message : String(error));
      },
    );
    return () => {
      live = false;
    };
  }, [client, selected, needsFetch]);

  if (!desk) return null;

  const take = async (id: string) => {
    setNotice(null);
    const result = await desk.take(id);
    if (result.ok) {
      setFocusFor(id);
      select(id);
    } else {
      setNotice({ tone: 'bad', text: result.message, about: { sessionId: id, status: 'active' } });
    }
  };

  const selectedSession = listedSession ?? (fetched?.id === selected ? fetched : null);
  const waitedSeconds = (s: Session) => Math.max(0, (now + offset - Date.parse(state.queuedAt[s.id] ?? s.createdAt)) / 1000);

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
                    <span className="session-meta" data-testid="waiting-since" data-queued-at={state.queuedAt[s.id] ?? s.createdAt}>
                      Waiting since {timeOfDay(Date.parse(state.queuedAt[s.id] ?? s.createdAt) - offset)} · {duration(waitedSeconds(s))}
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
        {client.user.role === 'admin' && <OpenById onOpen={(id) => select(id)} />}
        <AgentPresence />
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
            focusComposer={focusFor === selected}
            fetchError={fetchError}
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

/** Admins: open any chat by its id (also reachable as /console?chat=ID). */
function OpenById({ onOpen }: { onOpen: (id: string) => void }) {
  const [id, setId] = useState('');
  return (
    <form
      className="open-by-id"
      onSubmit={(e) => {
        e.preventDefault();
        if (id.trim()) onOpen(id.trim());
      }}
    >
      <label className="visually-hidden" htmlFor="open-chat-id">
        Chat id
      </label>
      <input id="open-chat-id" value={id} onChange={(e) => setId(e.target.value)} placeholder="Open a chat by id" autoComplete="off" />
      <button type="submit" className="btn btn-small" disabled={!id.trim()}>
        Open
      </button>
    </form>
  );
}

interface AgentConversationProps {
  sessionId: string;
  listed: Session | null;
  onBack: () => void;
  onTake: () => void;
  onDone: () => void;
  /** Put the focus in the message box once it shows (after taking the chat). */
  focusComposer?: boolean;
  /** Why the chat could not be fetched, when it was opened by id. */
  fetchError?: string | null;
}

function AgentConversation({ sessionId, listed, onBack, onTake, onDone, focusComposer = false, fetchError = null }: AgentConversationProps) {
  const client = useChatClient();
  const desk = useAgentDesk()!;
  const desks = useDeskState();
  const chat = useChatSocket({ sessionId });
  const [dialog, setDialog] = useState<'transfer' | 'close' | 'invite' | null>(null);
  const [leaveError, setLeaveError] = useState<string | null>(null);
  const session = chat.session ?? listed;
  const me = client.user.userId;
  const closed = session?.status === 'closed' || chat.closed !== null;
  const mine = !closed && session?.status === 'active' && session.agentId === me;
  // A colleague invited into the chat writes in it too, and may leave it.
  const participants = session?.participants ?? [];
  const colleague = !closed && !mine && participants.some((p) => p.userId === me);
  const canWrite = mine || colleague;
  const pending = !closed && session?.status === 'pending';
  // Admins may transfer and close any chat they open, not only their own.
  const admin = client.user.role === 'admin';
  const canTransfer = mine || (admin && !closed && session?.status === 'active');
  const canClose = mine || (admin && !closed && (session?.status === 'active' || session?.status === 'pending'));
  const canInvite = mine || (admin && !closed && session?.status === 'active');

  const leave = async () => {
    setLeaveError(null);
    try {
      await client.removeParticipant(sessionId, me);
      onDone();
    } catch (error) {
      setLeaveError(`You could not leave the chat: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  const letGo = async (userId: string) => {
    setLeaveError(null);
    try {
      await client.removeParticipant(sessionId, userId);
    } catch (error) {
      setLeaveError(`The colleague could not be removed: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
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
          {session && (participants.length > 0 || colleague) && (
            <ul className="participants" aria-label="In this chat" data-testid="participants">
              {session.agentName && <li className="participant participant-agent">{session.agentId === me ? 'You' : session.agentName} (agent)</li>}
              {participants.map((p) => (
                <li key={p.userId} className="participant" data-testid="participant" data-user-id={p.userId}>
                  {p.userId === me ? 'You' : p.name}
                  {canInvite && p.userId !== me && (
                    <button type="button" className="icon-btn participant-remove" aria-label={`Remove ${p.name} from the chat`} onClick={() => void letGo(p.userId)}>
                      ×
                    </button>
                  )}
                </li>
              ))}
            </ul>
          )}
        </div>
        {(canTransfer || canClose || canInvite || colleague) && (
          <div className="chat-actions">
            {canInvite && (
              <button type="button" className="btn btn-small" onClick={() => setDialog('invite')}>
                Invite colleague
              </button>
            )}
            {colleague && (
              <button type="button" className="btn btn-small" onClick={() => void leave()}>
                Leave chat
              </button>
            )}
            {canTransfer && (
              <button type="button" className="btn btn-small" onClick={() => setDialog('transfer')}>
                Transfer
              </button>
            )}
            {canClose && (
              <button type="button" className="btn btn-small btn-danger" onClick={() => setDialog('close')}>
                Close
              </button>
            )}
          </div>
        )}
      </header>
      {leaveError && (
        <p className="inline-error" role="alert">
          {leaveError}
        </p>
      )}
      {!session && fetchError && !chat.joined && (
        <p className="inline-error" role="alert">
          This chat could not be opened: {fetchError}
        </p>
      )}
      <Conversation sessionId={sessionId} chat={chat} canWrite={canWrite} footer={footer} markRead={canWrite} focusComposer={focusComposer} allowNotes={canWrite} />
      {dialog === 'transfer' && session && <TransferDialog session={session} onClose={() => setDialog(null)} onTransferred={onDone} />}
      {dialog === 'invite' && session && <InviteDialog session={session} onClose={() => setDialog(null)} />}
      {dialog === 'close' && <CloseDialog onCancel={() => setDialog(null)} onClose={(reason) => finish(desk.close(sessionId, reason))} />}
    </section>
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
