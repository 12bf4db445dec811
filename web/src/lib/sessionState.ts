// What the client knows of one session, and the pure reducer that folds the
// server's events, acknowledgements and REST pages into it. Selectors derive
// what the screens show: the timeline with per-message state, unread counts,
// who is typing, how far the other side has read.

import { contiguousSeq, hasGap, mergeMessages } from './merge';
import { mergeEvents } from './timeline';
import * as outbox from './outbox';
import type { OutboxEntry } from './outbox';
import type {
  ChatErrorBody,
  Message,
  QueuePosition,
  ReadPosition,
  Role,
  Session,
  SessionClosedPayload,
  SessionEvent,
  SessionJoinedPayload,
  UserTypingPayload,
} from './types';

/** Longest a typing signal is shown without a refresh (the server expires typists after 5 s). */
export const TYPING_DISPLAY_MS = 6000;

export interface TypingUser {
  userId: string;
  name: string;
  role: Role;
  /** Hide after this moment unless refreshed (ms since epoch). */
  until: number;
}

export interface SessionState {
  sessionId: string;
  /** The signed-in user. */
  me: string;
  session: Session | null;
  /** Stored messages, ascending by seq, one per seq. */
  messages: Message[];
  /** Messages written here and not yet stored. */
  outbox: OutboxEntry[];
  readPositions: ReadPosition[];
  typing: TypingUser[];
  /** Joined on the current connection. */
  joined: boolean;
  /** Joined at least once (so an empty `messages` means an empty session). */
  everJoined: boolean;
  /** The join left newer history to page over REST. */
  hasMoreAfter: boolean;
  closed: SessionClosedPayload | null;
  /** The timeline's system entries, by afterSeq then time. */
  events: SessionEvent[];
  /** The latest queue position while the session waits (customers only); null once it is taken. */
  queuePosition: QueuePosition | null;
  /** The last join or paging error. */
  error: ChatErrorBody | null;
}

export type SessionAction =
  | { type: 'joined'; payload: SessionJoinedPayload }
  | { type: 'messages'; messages: Message[] }
  | { type: 'paged'; hasMore: boolean }
  | { type: 'read'; userId: string; role: Role; upToSeq: number }
  | { type: 'typing'; payload: UserTypingPayload; now: number }
  | { type: 'expire-typing'; now: number }
  | { type: 'session'; session: Session }
  | { type: 'closed'; payload: SessionClosedPayload }
  | { type: 'events'; events: SessionEvent[] }
  | { type: 'queue-position'; payload: QueuePosition }
  | { type: 'disconnected' }
  | { type: 'left' }
  | { type: 'error'; error: ChatErrorBody | null }
  | { type: 'enqueue'; entry: OutboxEntry }
  | { type: 'sending'; clientMsgId: string }
  | { type: 'send-retry'; clientMsgId: string; error: ChatErrorBody | null }
  | { type: 'send-failed'; clientMsgId: string; error: ChatErrorBody }
  | { type: 'retry'; clientMsgId: string }
  | { type: 'discard'; clientMsgId: string };

export function initialSessionState(sessionId: string, me: string, pending: OutboxEntry[] = []): SessionState {
  return {
    sessionId,
    me,
    session: null,
    messages: [],
    outbox: pending.filter((e) => e.sessionId === sessionId),
    readPositions: [],
    typing: [],
    joined: false,
    everJoined: false,
    hasMoreAfter: false,
    closed: null,
    events: [],
    queuePosition: null,
    error: null,
  };
}

function withMessages(state: SessionState, incoming: Message[]): SessionState {
  const messages = mergeMessages(state.messages, incoming);
  if (messages === state.messages) return state;
  const senders = new Set(incoming.map((m) => m.senderId));
  const lastSeq = messages[messages.length - 1]!.seq;
  const last = messages[messages.length - 1]!;
  let session = state.session;
  if (session && lastSeq > session.lastSeq) session = { ...session, lastSeq, lastMessageAt: last.createdAt };
  return {
    ...state,
    messages,
    session,
    outbox: outbox.reconcile(state.outbox, incoming, state.me),
    typing: state.typing.some((t) => senders.has(t.userId)) ? state.typing.filter((t) => !senders.has(t.userId)) : state.typing,
  };
}

function withRead(positions: ReadPosition[], userId: string, role: Role, upToSeq: number): ReadPosition[] {
  const current = positions.find((p) => p.userId === userId);
  if (current && current.upToSeq >= upToSeq) return positions;
  if (!current) return [...positions, { userId, role, upToSeq }];
  return positions.map((p) => (p.userId === userId ? { ...p, upToSeq } : p));
}

function mergeReadPositions(local: ReadPosition[], server: ReadPosition[]): ReadPosition[] {
  let merged = server.slice();
  for (const p of local) merged = withRead(merged, p.userId, p.role, p.upToSeq);
  return merged;
}

export function sessionReducer(state: SessionState, action: SessionAction): SessionState {
  switch (action.type) {
    case 'joined': {
      const { payload } = action;
      const merged = withMessages({ ...state, session: payload.session }, payload.messages);
      return {
        ...merged,
        session: merged.session && merged.session.lastSeq >= payload.session.lastSeq ? merged.session : payload.session,
        readPositions: mergeReadPositions(state.readPositions, payload.readPositions),
        joined: true,
        everJoined: true,
        hasMoreAfter: payload.hasMore,
        closed: payload.session.status === 'closed' ? state.closed : null,
        events: mergeEvents(state.events, payload.events ?? []),
        queuePosition: payload.session.status === 'pending' ? state.queuePosition : null,
        error: null,
      };
    }
    case 'messages':
      return withMessages(state, action.messages);
    case 'paged':
      return state.hasMoreAfter === action.hasMore ? state : { ...state, hasMoreAfter: action.hasMore };
    case 'read': {
      const readPositions = withRead(state.readPositions, action.userId, action.role, action.upToSeq);
      return readPositions === state.readPositions ? state : { ...state, readPositions };
    }
    case 'typing': {
      const { payload, now } = action;
      if (payload.userId === state.me) return state;
      const others = state.typing.filter((t) => t.userId !== payload.userId);
      if (!payload.isTyping) {
        return others.length === state.typing.length ? state : { ...state, typing: others };
      }
      const entry: TypingUser = { userId: payload.userId, name: payload.name, role: payload.role, until: now + TYPING_DISPLAY_MS };
      return { ...state, typing: [...others, entry] };
    }
    case 'expire-typing': {
      const typing = state.typing.filter((t) => t.until > action.now);
      return typing.length === state.typing.length ? state : { ...state, typing };
    }
    case 'session': {
      const current = state.session;
      const session =
        current && current.lastSeq > action.session.lastSeq
          ? { ...action.session, lastSeq: current.lastSeq, lastMessageAt: current.lastMessageAt }
          : action.session;
      return { ...state, session, queuePosition: session.status === 'pending' ? state.queuePosition : null };
    }
    case 'closed': {
      const { payload } = action;
      const session = state.session ? { ...state.session, status: 'closed' as const, closedAt: payload.closedAt } : null;
      return { ...state, session, closed: payload, typing: [], queuePosition: null };
    }
    case 'events': {
      const events = mergeEvents(state.events, action.events);
      return events === state.events ? state : { ...state, events };
    }
    case 'queue-position': {
      const current = state.queuePosition;
      const next = action.payload;
      if (current && current.position === next.position && current.estimatedWaitSeconds === next.estimatedWaitSeconds) return state;
      return { ...state, queuePosition: { sessionId: next.sessionId, position: next.position, estimatedWaitSeconds: next.estimatedWaitSeconds ?? null } };
    }
    case 'disconnected':
      return { ...state, joined: false, typing: [], outbox: outbox.requeueInFlight(state.outbox) };
    case 'left':
      return { ...state, joined: false, typing: [] };
    case 'error':
      return { ...state, error: action.error };
    case 'enqueue':
      return { ...state, outbox: outbox.enqueue(state.outbox, action.entry) };
    case 'sending':
      return { ...state, outbox: outbox.markSending(state.outbox, action.clientMsgId) };
    case 'send-retry':
      return { ...state, outbox: outbox.markQueued(state.outbox, action.clientMsgId, action.error) };
    case 'send-failed':
      return { ...state, outbox: outbox.markFailed(state.outbox, action.clientMsgId, action.error) };
    case 'retry':
      return { ...state, outbox: outbox.markQueued(state.outbox, action.clientMsgId, null) };
    case 'discard':
      return { ...state, outbox: outbox.remove(state.outbox, action.clientMsgId) };
  }
}

// ---- selectors ----

/** `lastSeq` for a rejoin: everything after it is fetched; undefined asks for the latest page. */
export function rejoinSeq(state: SessionState): number | undefined {
  const seq = contiguousSeq(state.messages);
  if (seq !== null) return seq;
  return state.everJoined ? 0 : undefined;
}

/** Whether history after the contiguous part must be fetched over REST. */
export function needsFill(state: SessionState): boolean {
  return state.hasMoreAfter || hasGap(state.messages);
}

/** My own read position. */
export function myReadSeq(state: SessionState): number {
  return state.readPositions.find((p) => p.userId === state.me)?.upToSeq ?? 0;
}

/** How far the other participants have read (the furthest of them). */
export function peerReadSeq(state: SessionState): number {
  let seq = 0;
  for (const p of state.readPositions) if (p.userId !== state.me && p.upToSeq > seq) seq = p.upToSeq;
  return seq;
}

/** The newest seq written by someone else. */
export function lastIncomingSeq(state: SessionState): number {
  for (let i = state.messages.length - 1; i >= 0; i--) {
    const m = state.messages[i]!;
    if (m.senderId !== state.me) return m.seq;
  }
  return 0;
}

/** Messages from others after my read position. */
export function unreadCount(state: SessionState): number {
  const read = myReadSeq(state);
  let count = 0;
  for (let i = state.messages.length - 1; i >= 0; i--) {
    const m = state.messages[i]!;
    if (m.seq <= read) break;
    if (m.senderId !== state.me) count++;
  }
  return count;
}

export type ItemState = 'queued' | 'sending' | 'failed' | 'sent' | 'read' | 'received';

export interface ChatItem {
  /** Stable React key: the clientMsgId when there is one, else the message id. */
  key: string;
  seq: number | null;
  content: string;
  senderId: string;
  senderName: string;
  senderRole: Role | null;
  mine: boolean;
  createdAt: string;
  state: ItemState;
  error: ChatErrorBody | null;
  clientMsgId: string | null;
}

/** Stored messages followed by the outbox, each with its state. */
export function timeline(state: SessionState, myName: string, myRole: Role): ChatItem[] {
  const peer = peerReadSeq(state);
  const items: ChatItem[] = state.messages.map((m) => {
    const mine = m.senderId === state.me;
    return {
      key: mine && m.clientMsgId ? `c:${m.clientMsgId}` : `m:${m.id}`,
      seq: m.seq,
      content: m.content,
      senderId: m.senderId,
      senderName: m.senderName,
      senderRole: m.senderRole,
      mine,
      createdAt: m.createdAt,
      state: mine ? (peer >= m.seq ? 'read' : 'sent') : 'received',
      error: null,
      clientMsgId: m.clientMsgId,
    };
  });
  for (const e of state.outbox) {
    items.push({
      key: `c:${e.clientMsgId}`,
      seq: null,
      content: e.content,
      senderId: state.me,
      senderName: myName,
      senderRole: myRole,
      mine: true,
      createdAt: new Date(e.createdAt).toISOString(),
      state: e.state,
      error: e.error,
      clientMsgId: e.clientMsgId,
    });
  }
  return items;
}
