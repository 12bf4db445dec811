// The customer widget: start a chat (subject and first message), then the
// conversation with the agent — waiting in the queue, the agent joining,
// messages with their state, the agent typing, the end of the chat — and a
// way to start again once it is closed. The customer's open chat is resumed
// after a reload.

import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { toErrorBody } from '../chat/ChatClient';
import { useChatClient } from '../chat/ChatContext';
import { useChatSocket, useSessionSummary } from '../chat/useChatSocket';
import type { Session } from '../lib/types';
import { MAX_CONTENT_CHARS, MAX_SUBJECT_CHARS } from '../lib/types';
import { ConnectionPill } from './ConnectionStatus';
import { Conversation } from './Conversation';
import { Modal } from './Modal';

const CURRENT_KEY = 'supportChat.currentSession.';

function rememberSession(userId: string, id: string | null): void {
  try {
    if (id) localStorage.setItem(CURRENT_KEY + userId, id);
    else localStorage.removeItem(CURRENT_KEY + userId);
  } catch {
    // Only the resume-after-reload convenience is lost.
  }
}

function rememberedSession(userId: string): string | null {
  try {
    return localStorage.getItem(CURRENT_KEY + userId);
  } catch {
    return null;
  }
}

/** "Ana", "Ana and Ben", "Ana, Ben and Cleo". */
export function withWhom(agent: string, colleagues: string[]): string {
  const all = [agent, ...colleagues.filter((c) => c && c !== agent)];
  if (all.length === 1) return all[0]!;
  return `${all.slice(0, -1).join(', ')} and ${all[all.length - 1]}`;
}

const DEFAULT_SUBTITLE = 'We usually answer within a few minutes.';

/** "about 2 minutes", "less than a minute". */
export function waitEstimate(seconds: number): string {
  if (seconds < 60) return 'less than a minute';
  const minutes = Math.round(seconds / 60);
  return `about ${minutes} ${minutes === 1 ? 'minute' : 'minutes'}`;
}

/** The queue position line: "You are number 3 in the queue — about 2 minutes". */
export function queueLine(position: number, estimatedWaitSeconds: number | null): string {
  const base = `You are number ${position} in the queue`;
  return estimatedWaitSeconds === null ? base : `${base} — ${waitEstimate(estimatedWaitSeconds)}`;
}

/** While the chat waits, the latest queue position replaces the usual promise. */
function WaitSubtitle({ sessionId }: { sessionId: string }) {
  const { state } = useSessionSummary(sessionId);
  const position = state.queuePosition;
  if (state.session?.status === 'pending' && state.closed === null && position) {
    return (
      <p className="widget-subtitle" data-testid="queue-position" role="status">
        {queueLine(position.position, position.estimatedWaitSeconds)}
      </p>
    );
  }
  return <p className="widget-subtitle">{DEFAULT_SUBTITLE}</p>;
}

export function ChatSupport() {
  const client = useChatClient();
  const me = client.user;
  /** undefined while loading; null when no chat is open. */
  const [sessionId, setSessionId] = useState<string | null | undefined>(undefined);
  const [loadError, setLoadError] = useState<string | null>(null);

  const load = useCallback(async () => {
    setLoadError(null);
    try {
      const page = await client.api.listSessions({ limit: 20 });
      const remembered = rememberedSession(me.userId);
      const kept = page.items.find((s) => s.id === remembered);
      const open = page.items.find((s) => s.status !== 'closed');
      setSessionId(kept?.id ?? open?.id ?? null);
    } catch (error) {
      setLoadError(toErrorBody(error).message);
    }
  }, [client, me.userId]);

  useEffect(() => {
    void load();
  }, [load]);

  const open = (session: Session) => {
    rememberSession(me.userId, session.id);
    setSessionId(session.id);
  };
  const startOver = () => {
    rememberSession(me.userId, null);
    setSessionId(null);
  };

  return (
    <div className="widget-page">
      <section className="widget" aria-labelledby="widget-title">
        <header className="widget-header">
          <div>
            <h1 id="widget-title" className="widget-title">
              Chat with support
            </h1>
            {sessionId ? <WaitSubtitle sessionId={sessionId} /> : <p className="widget-subtitle">{DEFAULT_SUBTITLE}</p>}
          </div>
          <ConnectionPill />
        </header>
        {loadError ? (
          <div className="widget-body center">
            <p role="alert" className="inline-error">
              Your chats could not be loaded: {loadError}
            </p>
            <button type="button" className="btn" onClick={() => void load()}>
              Try again
            </button>
          </div>
        ) : sessionId === undefined ? (
          <div className="widget-body center">
            <p className="muted" role="status">
              Loading…
            </p>
          </div>
        ) : sessionId === null ? (
          <StartChat onStarted={open} />
        ) : (
          <CustomerConversation sessionId={sessionId} onStartOver={startOver} />
        )}
      </section>
    </div>
  );
}

function StartChat({ onStarted }: { onStarted: (session: Session) => void }) {
  const client = useChatClient();
  const [subject, setSubject] = useState('');
  const [message, setMessage] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!message.trim() || busy) return;
    setBusy(true);
    setError(null);
    try {
      const session = await client.api.createSession({
        ...(subject.trim() ? { subject: subject.trim() } : {}),
        message: message.trim(),
      });
      onStarted(session);
    } catch (err) {
      setError(toErrorBody(err).message);
      setBusy(false);
    }
  };

  return (
    <form className="widget-body start-form" onSubmit={(e) => void submit(e)}>
      <p className="muted">Tell us what you need and an agent will join you.</p>
      <label className="field">
        <span className="field-label">Subject</span>
        <input
          name="subject"
          value={subject}
          maxLength={MAX_SUBJECT_CHARS}
          placeholder="For example: a question about my invoice"
          onChange={(e) => setSubject(e.target.value)}
        />
      </label>
      <label className="field">
        <span className="field-label">Your message</span>
        <textarea
          name="message"
          rows={4}
          required
          value={message}
          maxLength={MAX_CONTENT_CHARS}
          placeholder="How can we help?"
          onChange={(e) => setMessage(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) void submit(e);
          }}
        />
      </label>
      {error && (
        <p className="inline-error" role="alert">
          The chat could not be started: {error}
        </p>
      )}
      <button type="submit" className="btn btn-primary btn-block" disabled={busy || !message.trim()}>
        {busy ? 'Starting…' : 'Start chat'}
      </button>
    </form>
  );
}

function CustomerConversation({ sessionId, onStartOver }: { sessionId: string; onStartOver: () => void }) {
  const client = useChatClient();
  const chat = useChatSocket({ sessionId });
  const [confirmEnd, setConfirmEnd] = useState(false);
  const [ending, setEnding] = useState(false);
  const [endError, setEndError] = useState<string | null>(null);
  const session = chat.session;
  const closed = session?.status === 'closed' || chat.closed !== null;

  const endChat = async () => {
    setEnding(true);
    setEndError(null);
    try {
      await client.api.close(sessionId);
      setConfirmEnd(false);
    } catch (error) {
      const body = toErrorBody(error);
      if (body.code === 'session_closed') setConfirmEnd(false);
      else setEndError(body.message);
    } finally {
      setEnding(false);
    }
  };

  let status: { tone: 'warn' | 'ok' | 'muted'; text: string };
  if (!session) status = { tone: 'muted', text: 'Loading your chat…' };
  else if (closed) status = { tone: 'muted', text: 'This chat has ended.' };
  else if (session.status === 'pending') status = { tone: 'warn', text: 'Waiting for an agent… You are in the queue.' };
  else status = { tone: 'ok', text: `You are chatting with ${withWhom(session.agentName ?? session.agentId ?? 'an agent', (session.participants ?? []).map((p) => p.name))}.` };

  const closedBy = chat.closed
    ? chat.closed.closedBy.role === 'customer'
      ? 'you'
      : (session?.agentName ?? 'the agent')
    : null;

  return (
    <div className="widget-chat">
      <div className={`session-status session-status-${status.tone}`} role="status" data-testid="session-status">
        <span>
          {session?.subject && <strong className="session-subject">{session.subject} · </strong>}
          {status.text}
        </span>
        {!closed && session && (
          <button type="button" className="btn btn-ghost btn-small" onClick={() => setConfirmEnd(true)}>
            End chat
          </button>
        )}
      </div>
      <Conversation
        sessionId={sessionId}
        chat={chat}
        canWrite={!closed}
        empty="Your conversation will appear here."
        footer={
          <div className="closed-note" data-testid="closed-note">
            <p>
              <strong>Chat closed</strong>
              {closedBy ? ` by ${closedBy}` : ''}
              {chat.closed?.reason ? `: ${chat.closed.reason}` : '.'}
            </p>
            <button type="button" className="btn btn-primary" onClick={onStartOver}>
              Start a new chat
            </button>
          </div>
        }
      />
      {confirmEnd && (
        <Modal title="End this chat?" onClose={() => setConfirmEnd(false)}>
          <p>The agent will see that you left. You can start a new chat at any time.</p>
          {endError && (
            <p className="inline-error" role="alert">
              {endError}
            </p>
          )}
          <div className="modal-actions">
            <button type="button" className="btn" onClick={() => setConfirmEnd(false)}>
              Keep chatting
            </button>
            <button type="button" className="btn btn-danger" disabled={ending} onClick={() => void endChat()}>
              End chat
            </button>
          </div>
        </Modal>
      )}
    </div>
  );
}
