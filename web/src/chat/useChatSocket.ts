// useChatSocket: one chat session for a screen. Keeps the original API —
// `useChatSocket({ sessionId, onNewMessage })` returning `{ isConnected,
// messages, sendMessage, sendTyping, connectionStatus }` — and adds what the
// screens need: the timeline with per-message state, typing users, read
// positions, unread count, the session itself. The work is done by the
// shared ChatClient; this hook only subscribes to it.

import { useCallback, useEffect, useMemo, useRef, useSyncExternalStore } from 'react';
import { initialSessionState, myReadSeq, noteItems, peerReadSeq, timeline, unreadCount, type ChatItem, type SessionState, type TypingUser } from '../lib/sessionState';
import type { OutboxEntry } from '../lib/outbox';
import type { Attachment, ChatErrorBody, Message, QueuePosition, ReadPosition, Reaction, Session, SessionClosedPayload, SessionEvent } from '../lib/types';
import type { ConnectionInfo, ConnectionStatus } from './ChatClient';
import { useChatClient, useConnection } from './ChatContext';

export interface UseChatSocketOptions {
  /** The session to join; nothing is joined while it is null. */
  sessionId: string | null | undefined;
  /** Called for each message that arrives live in this session (mine included). */
  onNewMessage?: (message: Message) => void;
}

export interface UseChatSocketResult {
  isConnected: boolean;
  connectionStatus: ConnectionStatus;
  connection: ConnectionInfo;
  /** Stored messages, ascending by seq. */
  messages: Message[];
  /** Stored messages then unsent ones, each with its state (sending, sent, read…). */
  items: ChatItem[];
  outbox: OutboxEntry[];
  /** Queues a message (sent at once when connected); returns its clientMsgId. */
  sendMessage: (content: string, options?: { attachments?: Attachment[]; internal?: boolean }) => string | null;
  /** Adds (`on`) or takes back my reaction to message `seq`. */
  react: (seq: number, emoji: string, on: boolean) => Promise<Reaction[]>;
  /** Internal notes as items, placed by afterSeq (staff only; always empty for customers). */
  notes: ChatItem[];
  deliveryPositions: ReadPosition[];
  sendTyping: (isTyping: boolean) => void;
  markRead: (upToSeq: number) => void;
  retryMessage: (clientMsgId: string) => void;
  discardMessage: (clientMsgId: string) => void;
  loadEarlier: () => Promise<void>;
  /** Older messages exist before the first one held. */
  hasEarlier: boolean;
  retryConnection: () => void;
  session: Session | null;
  closed: SessionClosedPayload | null;
  joined: boolean;
  typingUsers: TypingUser[];
  readPositions: ReadPosition[];
  myReadSeq: number;
  peerReadSeq: number;
  unreadCount: number;
  /** The timeline's system entries (assigned, transferred, returned, closed). */
  events: SessionEvent[];
  /** The latest queue position while the session waits (customers). */
  queuePosition: QueuePosition | null;
  error: ChatErrorBody | null;
}

const EMPTY: SessionState = initialSessionState('', '');
const NO_ITEMS: ChatItem[] = [];

export function useChatSocket({ sessionId, onNewMessage }: UseChatSocketOptions): UseChatSocketResult {
  const client = useChatClient();
  const connection = useConnection();

  const subscribe = useCallback(
    (listener: () => void) => (sessionId ? client.subscribeSession(sessionId, listener) : () => undefined),
    [client, sessionId],
  );
  const getSnapshot = useCallback(() => (sessionId ? client.getSessionState(sessionId) : EMPTY), [client, sessionId]);
  const state = useSyncExternalStore(subscribe, getSnapshot);

  useEffect(() => (sessionId ? client.watch(sessionId) : undefined), [client, sessionId]);

  const callback = useRef(onNewMessage);
  callback.current = onNewMessage;
  useEffect(() => {
    if (!sessionId) return undefined;
    return client.on('new-message', (message) => {
      if (message.sessionId === sessionId) callback.current?.(message);
    });
  }, [client, sessionId]);

  const sendMessage = useCallback(
    (content: string, options?: { attachments?: Attachment[]; internal?: boolean }) => (sessionId ? client.sendMessage(sessionId, content, options) : null),
    [client, sessionId],
  );
  const react = useCallback(
    (seq: number, emoji: string, on: boolean) => (sessionId ? client.react(sessionId, seq, emoji, on) : Promise.reject(new Error('No chat.'))),
    [client, sessionId],
  );
  const sendTyping = useCallback(
    (isTyping: boolean) => {
      if (sessionId) client.sendTyping(sessionId, isTyping);
    },
    [client, sessionId],
  );
  const markRead = useCallback(
    (upToSeq: number) => {
      if (sessionId) client.markRead(sessionId, upToSeq);
    },
    [client, sessionId],
  );
  const retryMessage = useCallback(
    (clientMsgId: string) => {
      if (sessionId) client.retryMessage(sessionId, clientMsgId);
    },
    [client, sessionId],
  );
  const discardMessage = useCallback(
    (clientMsgId: string) => {
      if (sessionId) client.discardMessage(sessionId, clientMsgId);
    },
    [client, sessionId],
  );
  const loadEarlier = useCallback(async () => {
    if (sessionId) await client.loadEarlier(sessionId);
  }, [client, sessionId]);
  const retryConnection = useCallback(() => client.retryConnection(), [client]);

  const items = useMemo(() => timeline(state, client.user.name, client.user.role), [state, client]);
  const staff = client.user.role !== 'customer';
  const notes = useMemo(() => (staff ? noteItems(state) : NO_ITEMS), [state, staff]);

  return {
    isConnected: connection.status === 'connected',
    connectionStatus: connection.status,
    connection,
    messages: state.messages,
    items,
    outbox: state.outbox,
    sendMessage,
    react,
    notes,
    deliveryPositions: state.deliveryPositions,
    sendTyping,
    markRead,
    retryMessage,
    discardMessage,
    loadEarlier,
    hasEarlier: (state.messages[0]?.seq ?? 1) > 1,
    retryConnection,
    session: state.session,
    closed: state.closed,
    joined: state.joined,
    typingUsers: state.typing,
    readPositions: state.readPositions,
    myReadSeq: myReadSeq(state),
    peerReadSeq: peerReadSeq(state),
    unreadCount: unreadCount(state),
    events: state.events,
    queuePosition: state.queuePosition,
    error: state.error,
  };
}

/** Read-only view of another session's state (for unread badges in lists). */
export function useSessionSummary(sessionId: string): { unread: number; state: SessionState } {
  const client = useChatClient();
  const subscribe = useCallback((listener: () => void) => client.subscribeSession(sessionId, listener), [client, sessionId]);
  const state = useSyncExternalStore(subscribe, () => client.getSessionState(sessionId));
  return { unread: unreadCount(state), state };
}
