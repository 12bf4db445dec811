// What the client knows of one session, and the pure reducer that folds the
// server's events, acknowledgements and REST pages into it. Selectors derive
// what the screens show: the timeline with per-message state, unread counts,
// who is typing, how far the other side has read.

import { contiguousSeq, hasGap, mergeMessages } from './merge';
import { mergeEvents } from './timeline';
import { mergeNotes, withoutNotes } from './notes';
import { sameReactions } from './reactions';
import { tickFor, tickPositions, type Tick } from './ticks';
import * as outbox from './outbox';
import type { OutboxEntry } from './outbox';
import type {
  Attachment,
  ChatErrorBody,
  Message,
  Reaction,
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
  /** How far each recipient's client confirmed messages arrived. */
  deliveryPositions: ReadPosition[];
  /** Internal notes (staff only), by afterSeq then their own seq. */
  notes: Message[];
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
  | { type: 'delivered'; userId: string; role: Role; upToSeq: number }
  | { type: 'reactions'; seq: number; reactions: Reaction[] }
  | { type: 'notes'; notes: Message[] }
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
    deliveryPositions: [],
    notes: [],
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

/** Known messages with the reactions a newer copy carries (a rejoin or a page after a lost connection). */
function refreshReactions(existing: Message[], incoming: readonly Message[]): Message[] {
  if (existing.length === 0) return existing;
  const bySeq = new Map<number, Message>();
  for (const m of incoming) if (m.reactions) bySeq.set(m.seq, m);
  if (bySeq.size === 0) return existing;
  let changed = false;
  const next = existing.map((m) => {
    const fresh = bySeq.get(m.seq);
    if (!fresh || fresh.id !== m.id || sameReactions(m.reactions, fresh.reactions)) return m;
    changed = true;
    return { ...m, reactions: fresh.reactions };
  });
  return changed ? next : existing;
}

function withMessages(state: SessionState, received: Message[]): SessionState {
  const incoming = withoutNotes(received);
  const messages = mergeMessages(refreshReactions(state.messages, incoming), incoming);
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
        deliveryPositions: mergeReadPositions(state.deliveryPositions, payload.deliveryPositions ?? []),
        notes: payload.notes ? mergeNotes(state.notes, payload.notes) : state.notes,
        outbox: payload.notes ? outbox.reconcile(merged.outbox, payload.notes, state.me) : merged.outbox,
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
    case 'delivered': {
      const deliveryPositions = withRead(state.deliveryPositions, action.userId, action.role, action.upToSeq);
      return deliveryPositions === state.deliveryPositions ? state : { ...state, deliveryPositions };
    }
    case 'reactions': {
      const index = state.messages.findIndex((m) => m.seq === action.seq);
      if (index === -1 || sameReactions(state.messages[index]!.reactions, action.reactions)) return state;
      const messages = state.messages.slice();
      messages[index] = { ...messages[index]!, reactions: action.reactions };
      return { ...state, messages };
    }
    case 'notes': {
      const notes = mergeNotes(state.notes, action.notes);
      const pending = outbox.reconcile(state.outbox, action.notes, state.me);
      if (notes === state.notes && pending === state.outbox) return state;
      return { ...state, notes, outbox: pending };
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
  /** Mine and stored: sent, delivered or read (null otherwise). */
  tick: Tick | null;
  error: ChatErrorBody | null;
  clientMsgId: string | null;
  attachments: Attachment[];
  reactions: Reaction[];
  /** An internal note (staff only); `seq` is then the note's own number and `afterSeq` its place. */
  internal: boolean;
  afterSeq: number | null;
}

const NO_ATTACHMENTS: Attachment[] = [];
const NO_REACTIONS: Reaction[] = [];

/** Stored messages followed by the outbox, each with its state. */
export function timeline(state: SessionState, myName: string, myRole: Role): ChatItem[] {
  const peer = peerReadSeq(state);
  const ticks = tickPositions(state.readPositions, state.deliveryPositions, state.me);
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
      tick: mine ? tickFor(m.seq, ticks) : null,
      error: null,
      clientMsgId: m.clientMsgId,
      attachments: m.attachments ?? NO_ATTACHMENTS,
      reactions: m.reactions ?? NO_REACTIONS,
      internal: false,
      afterSeq: null,
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
      tick: null,
      error: e.error,
      clientMsgId: e.clientMsgId,
      attachments: e.attachments ?? NO_ATTACHMENTS,
      reactions: NO_REACTIONS,
      internal: e.internal === true,
      afterSeq: null,
    });
  }
  return items;
}

/** The session's internal notes as items, each placed by its afterSeq. */
export function noteItems(state: SessionState): ChatItem[] {
  return state.notes.map((n) => ({
    key: `n:${n.id}`,
    seq: n.seq,
    content: n.content,
    senderId: n.senderId,
    senderName: n.senderName,
    senderRole: n.senderRole,
    mine: n.senderId === state.me,
    createdAt: n.createdAt,
    state: n.senderId === state.me ? 'sent' : 'received',
    tick: null,
    error: null,
    clientMsgId: n.clientMsgId,
    attachments: n.attachments ?? NO_ATTACHMENTS,
    reactions: NO_REACTIONS,
    internal: true,
    afterSeq: typeof n.afterSeq === 'number' ? n.afterSeq : 0,
  }));
}
