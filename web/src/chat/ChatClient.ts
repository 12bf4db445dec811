// The connection manager: one Socket.IO connection per signed-in user,
// shared by every screen. It owns reconnection (backoff with jitter, a
// manual retry after the last attempt), rejoining watched sessions with
// `lastSeq`, filling any gap over REST, the outbox (kept across reloads and
// flushed in order after every reconnect), and it fans the server's events
// out to the screens. The state of each session is folded by the pure
// reducer in lib/sessionState. Every (re)connect and REST call takes its
// token from a TokenSource (lib/tokenSource), and a `token-expiring` warning
// is answered with `refresh-token` and a newly minted token when the sign-in
// can be renewed.

import { io, type Socket } from 'socket.io-client';
import websocketConfig, { type WebSocketConfig } from '../config/websocket.config';
import { ApiError, ChatApi } from '../lib/api';
import { newClientMsgId } from '../lib/ids';
import { DeliveryBatcher } from '../lib/deliveryBatch';
import { contiguousSeq, hasGap } from '../lib/merge';
import { applyReaction } from '../lib/reactions';
import { isRetryable, newEntry, nextToSend, type OutboxEntry } from '../lib/outbox';
import { Reconnector, type ReconnectState } from '../lib/reconnect';
import { TokenSource } from '../lib/tokenSource';
import {
  initialSessionState,
  myReadSeq,
  needsFill,
  rejoinSeq,
  sessionReducer,
  TYPING_DISPLAY_MS,
  unreadCount,
  type SessionAction,
  type SessionState,
} from '../lib/sessionState';
import type {
  Ack,
  AgentEntry,
  Attachment,
  AgentStatus,
  ChatErrorBody,
  ChatUser,
  ConnectedPayload,
  Message,
  MessageReactionsPayload,
  MessagesDeliveredPayload,
  MessagesReadPayload,
  QueuePosition,
  Reaction,
  Session,
  SessionClosedPayload,
  SessionEnvelope,
  SessionEvent,
  SessionJoinedPayload,
  Stats,
  UserTypingPayload,
} from '../lib/types';
import { MAX_CONTENT_CHARS } from '../lib/types';

export type ConnectionStatus =
  /** Not started or stopped. */
  | 'idle'
  /** The first connection is being made. */
  | 'connecting'
  | 'connected'
  /** Lost; trying again (see `retryAt` and `attempt`). */
  | 'reconnecting'
  /** The browser reports no network; trying again when it is back. */
  | 'offline'
  /** Out of attempts: the user may retry. */
  | 'failed'
  /** The server refused the token. */
  | 'unauthorized';

export interface ConnectionInfo {
  status: ConnectionStatus;
  attempt: number;
  maxAttempts: number;
  retryAt: number | null;
  /** Why the last attempt failed or the connection dropped. */
  lastError: string | null;
  /** The server's greeting on the current connection. */
  server: ConnectedPayload | null;
}

export interface ClientEvents {
  connected: ConnectedPayload;
  /** A message that arrived live (not history), after it is merged. */
  'new-message': Message;
  'new-pending-session': SessionEnvelope;
  'session-updated': SessionEnvelope;
  'session-closed': SessionClosedPayload;
  'messages-read': MessagesReadPayload;
  'messages-delivered': MessagesDeliveredPayload;
  'message-reactions': MessageReactionsPayload;
  /** An internal note that arrived live (staff only). */
  'new-note': Message;
  'stats-update': Stats;
  /** An agent's directory entry changed (status, open chats, capacity, presence). */
  'agent-updated': { agent: AgentEntry };
  'queue-position': QueuePosition;
  'session-event': SessionEvent;
  'server-error': ChatErrorBody;
  /** A `refresh-token` was acknowledged: the connection goes on with a new token. */
  'token-refreshed': { expiresAt: string | number | null };
}

type Handler<T> = (payload: T) => void;

interface SessionRecord {
  state: SessionState;
  watchers: number;
  listeners: Set<() => void>;
  joining: boolean;
  /** Whether the last join asked for what followed a `lastSeq`: only then does `hasMore` mean newer messages to page. */
  catchingUp: boolean;
  filling: boolean;
  /** The REST timeline (up to 500 entries, more than a join carries) was asked for once. */
  eventsRequested: boolean;
  /** Staff: the REST notes (more than the join's 50) were asked for once. */
  notesRequested: boolean;
  readInFlight: number;
  flushTimer: ReturnType<typeof setTimeout> | null;
  typingTimer: ReturnType<typeof setTimeout> | null;
}

export interface ChatClientOptions {
  /** The token, when no `tokens` source is given (it then cannot be renewed). */
  token: string;
  /** Where fresh tokens come from (a renewable sign-in); defaults to `token` as it is. */
  tokens?: TokenSource;
  user: ChatUser;
  config?: WebSocketConfig;
  storage?: Storage | null;
}

const OUTBOX_KEY = 'supportChat.outbox.';
/** Retry delay after a send or join that timed out or was refused for now. */
const RETRY_LATER_MS = 2000;
/** Fewest messages fetched per REST page when filling history. */
const PAGE_LIMIT = 200;
/** Notes a join reply carries at most. */
const JOIN_NOTES = 50;

export class ChatClient {
  readonly user: ChatUser;
  readonly api: ChatApi;
  readonly config: WebSocketConfig;
  readonly tokens: TokenSource;
  private readonly storage: Storage | null;
  private socket: Socket | null = null;
  private readonly reconnector: Reconnector;
  private connection: ConnectionInfo;
  private unauthorized = false;
  /** A refused expired token was renewed once for the next attempt; reset on connecting. */
  private renewedAfterRefusal = false;
  private browserOffline = false;
  private generation = 0;
  private stopped = false;
  private readonly sessions = new Map<string, SessionRecord>();
  private readonly handlers = new Map<keyof ClientEvents, Set<Handler<never>>>();
  private readonly connectionListeners = new Set<() => void>();
  private readonly anyListeners = new Set<() => void>();
  private anyVersion = 0;
  private visibleSession: string | null = null;
  /** Display names of agents seen in the directory or its updates, for lines that carry only an id. */
  private readonly agentNames = new Map<string, string>();
  /** Server clock minus this browser's, from the last `connected` greeting. */
  private serverOffsetMs = 0;
  private storedOutbox: OutboxEntry[];
  private readonly onOnline = () => this.networkChanged(true);
  private readonly onOffline = () => this.networkChanged(false);
  /** `mark-delivered`, sent by itself as others' messages arrive, batched per session. */
  private readonly delivery = new DeliveryBatcher({
    send: (sessionId, upToSeq) => this.sendDelivered(sessionId, upToSeq),
    now: () => Date.now(),
    setTimer: (fn, ms) => setTimeout(fn, ms),
    clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  });

  constructor(options: ChatClientOptions) {
    this.user = options.user;
    this.tokens = options.tokens ?? new TokenSource({ token: options.token });
    this.config = options.config ?? websocketConfig;
    this.storage = options.storage === undefined ? safeLocalStorage() : options.storage;
    this.api = new ChatApi(this.config.serverUrl, this.tokens);
    this.storedOutbox = this.loadOutbox();
    this.connection = {
      status: 'idle',
      attempt: 0,
      maxAttempts: this.config.reconnection.attempts,
      retryAt: null,
      lastError: null,
      server: null,
    };
    this.reconnector = new Reconnector(this.config.reconnection, {
      connect: () => this.openSocket(),
      now: () => Date.now(),
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
      random: Math.random,
      onChange: (state) => this.reconnectChanged(state),
    });
  }

  // ---- lifecycle ----

  start(): void {
    if (this.socket) return;
    this.stopped = false;
    this.socket = io(`${this.config.serverUrl}${this.config.namespace}`, {
      // A function, so that every (re)connect asks for a current token.
      auth: (cb: (data: object) => void) => {
        this.tokens.getFreshToken().then(
          (token) => cb({ token }),
          () => cb({ token: this.tokens.token }),
        );
      },
      transports: this.config.transports,
      reconnection: false,
      timeout: this.config.timeouts.connection,
      autoConnect: false,
      forceNew: true,
    });
    this.bindSocket(this.socket);
    if (typeof window !== 'undefined') {
      window.addEventListener('online', this.onOnline);
      window.addEventListener('offline', this.onOffline);
      this.browserOffline = typeof navigator !== 'undefined' && navigator.onLine === false;
    }
    this.reconnector.start();
  }

  stop(): void {
    this.stopped = true;
    this.reconnector.stop();
    if (typeof window !== 'undefined') {
      window.removeEventListener('online', this.onOnline);
      window.removeEventListener('offline', this.onOffline);
    }
    for (const record of this.sessions.values()) {
      if (record.flushTimer) clearTimeout(record.flushTimer);
      if (record.typingTimer) clearTimeout(record.typingTimer);
    }
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.removeAllListeners();
      socket.io.removeAllListeners();
      socket.disconnect();
    }
  }

  /** Try again now, with a fresh attempt budget (the "Retry" button). */
  retryConnection(): void {
    if (this.unauthorized || this.stopped) return;
    this.reconnector.retryNow();
  }

  // ---- connection state ----

  getConnection = (): ConnectionInfo => this.connection;

  subscribeConnection = (listener: () => void): (() => void) => {
    this.connectionListeners.add(listener);
    return () => this.connectionListeners.delete(listener);
  };

  get isConnected(): boolean {
    return this.connection.status === 'connected';
  }

  private setConnection(patch: Partial<ConnectionInfo>): void {
    const next = { ...this.connection, ...patch };
    next.status = this.computeStatus();
    const same = (Object.keys(next) as (keyof ConnectionInfo)[]).every((k) => next[k] === this.connection[k]);
    if (same) return;
    this.connection = next;
    for (const listener of this.connectionListeners) listener();
  }

  private computeStatus(): ConnectionStatus {
    if (this.unauthorized) return 'unauthorized';
    const phase = this.reconnector.current.phase;
    if (phase === 'connected') return 'connected';
    if (phase === 'idle') return 'idle';
    if (this.browserOffline) return 'offline';
    if (phase === 'failed') return 'failed';
    if (phase === 'connecting' && !this.reconnector.current.everConnected && this.reconnector.current.attempt === 0) return 'connecting';
    return 'reconnecting';
  }

  private reconnectChanged(state: ReconnectState): void {
    this.setConnection({ attempt: state.attempt, maxAttempts: state.maxAttempts, retryAt: state.retryAt });
  }

  private networkChanged(online: boolean): void {
    this.browserOffline = !online;
    if (online && !this.unauthorized) {
      this.reconnector.retryNow();
    } else if (this.socket?.connected) {
      // The connection is gone with the network even if the socket has not noticed yet.
      this.socket.io.engine?.close();
    }
    this.setConnection({});
  }

  // ---- socket ----

  private openSocket(): void {
    const socket = this.socket;
    if (!socket || this.stopped) return;
    if (this.browserOffline) {
      // No network: wait for the browser's "online" event instead of burning attempts.
      queueMicrotask(() => this.reconnector.lost());
      return;
    }
    if (socket.connected) return;
    if (this.tokens.isExpired() && !this.tokens.renewable) {
      // Nothing to gain from asking the server: say so instead of retrying.
      this.sessionExpired();
      return;
    }
    socket.connect();
  }

  private bindSocket(socket: Socket): void {
    socket.on('connect', () => {
      this.generation++;
      this.renewedAfterRefusal = false;
      this.reconnector.connected();
      this.setConnection({ lastError: null });
      for (const [id, record] of this.sessions) if (record.watchers > 0) this.join(id);
    });
    socket.on('connect_error', (error: Error & { data?: { code?: string } }) => {
      if (error.message === 'unauthorized') {
        if (error.data?.code === 'token_expired' && this.tokens.renewable && !this.renewedAfterRefusal) {
          // The token ran out before it could be renewed: the next attempt's auth() mints one.
          this.renewedAfterRefusal = true;
          this.setConnection({ lastError: describeAuthError(error.data.code) });
          this.reconnector.lost();
          return;
        }
        this.unauthorized = true;
        this.reconnector.stop();
        this.setConnection({ lastError: describeAuthError(error.data?.code) });
        return;
      }
      this.setConnection({ lastError: error.message || 'connection failed' });
      this.reconnector.lost();
    });
    socket.on('disconnect', (reason: string) => {
      this.generation++;
      this.delivery.reset();
      for (const [id] of this.sessions) this.dispatch(id, { type: 'disconnected' });
      this.persistOutbox();
      if (this.unauthorized) {
        this.setConnection({ server: null });
        return;
      }
      this.setConnection({ server: null, lastError: reason === 'io client disconnect' ? null : describeDisconnect(reason) });
      if (reason !== 'io client disconnect') this.reconnector.lost();
    });
    socket.on('connected', (payload: ConnectedPayload) => {
      const serverNow = Date.parse(payload.serverTime);
      if (!Number.isNaN(serverNow)) this.serverOffsetMs = serverNow - Date.now();
      this.setConnection({ server: payload });
      this.emit('connected', payload);
    });
    socket.on('session-joined', (payload: SessionJoinedPayload) => this.joined(payload));
    socket.on('new-message', (message: Message) => this.liveMessage(message));
    socket.on('user-typing', (payload: UserTypingPayload) => this.typingReceived(payload));
    socket.on('messages-read', (payload: MessagesReadPayload) => {
      this.dispatch(payload.sessionId, { type: 'read', userId: payload.userId, role: payload.role, upToSeq: payload.upToSeq });
      this.emit('messages-read', payload);
    });
    socket.on('messages-delivered', (payload: MessagesDeliveredPayload) => {
      this.dispatch(payload.sessionId, { type: 'delivered', userId: payload.userId, role: payload.role, upToSeq: payload.upToSeq });
      this.emit('messages-delivered', payload);
    });
    socket.on('message-reactions', (payload: MessageReactionsPayload) => {
      if (!payload || !Array.isArray(payload.reactions)) return;
      this.dispatch(payload.sessionId, { type: 'reactions', seq: payload.seq, reactions: payload.reactions });
      this.emit('message-reactions', payload);
    });
    socket.on('new-note', (note: Message) => {
      // Notes are for staff; a customer's screen never holds one, whatever arrives.
      if (this.user.role === 'customer' || !note || note.internal !== true) return;
      this.dispatch(note.sessionId, { type: 'notes', notes: [note] });
      this.emit('new-note', note);
    });
    socket.on('session-updated', (payload: SessionEnvelope) => {
      this.dispatch(payload.session.id, { type: 'session', session: payload.session });
      this.emit('session-updated', payload);
    });
    socket.on('session-closed', (payload: SessionClosedPayload) => {
      this.dispatch(payload.sessionId, { type: 'closed', payload });
      this.failOutbox(payload.sessionId, { code: 'session_closed', message: 'The chat is closed.' });
      this.emit('session-closed', payload);
    });
    socket.on('new-pending-session', (payload: SessionEnvelope) => this.emit('new-pending-session', payload));
    socket.on('stats-update', (payload: Stats) => this.emit('stats-update', payload));
    socket.on('agent-updated', (payload: { agent: AgentEntry }) => {
      if (!payload?.agent) return;
      this.learnAgents([payload.agent]);
      this.emit('agent-updated', payload);
    });
    socket.on('queue-position', (payload: QueuePosition) => {
      if (!payload?.sessionId) return;
      this.dispatch(payload.sessionId, { type: 'queue-position', payload });
      this.emit('queue-position', payload);
    });
    socket.on('session-event', (event: SessionEvent) => {
      if (!event?.sessionId) return;
      this.dispatch(event.sessionId, { type: 'events', events: [event] });
      this.emit('session-event', event);
    });
    socket.on('token-expiring', (payload: { expiresAt?: string | number }) => void this.refreshToken(socket, payload?.expiresAt));
    socket.on('error', (payload: ChatErrorBody) => {
      if (payload?.code === 'token_expired') {
        // The server closes the transport next; the reconnect takes a fresh token.
        // Only a sign-in that cannot be renewed ends here.
        if (!this.tokens.renewable) this.sessionExpired();
        return;
      }
      this.emit('server-error', payload);
    });
  }

  /** The token cannot be renewed and has expired: stop, and ask the user to sign in again. */
  private sessionExpired(): void {
    this.unauthorized = true;
    this.reconnector.stop();
    this.setConnection({ lastError: 'Your session has expired.' });
  }

  /**
   * `token-expiring`: get a token that outlives the current one and send it
   * with `refresh-token`. On any failure the connection is left to expire;
   * the reconnect then calls auth() for a fresh token.
   */
  private async refreshToken(socket: Socket, expiresAt: string | number | undefined): Promise<void> {
    if (!this.tokens.renewable) return;
    const generation = this.generation;
    const warnedExpiry = parseTime(expiresAt) ?? this.tokens.expiresAt;
    let token: string;
    try {
      const current = this.tokens.expiresAt;
      // Already renewed (by a REST call, say) past the warned expiry: send that one.
      token = current !== null && warnedExpiry !== null && current > warnedExpiry + 1000 && !this.tokens.needsRenewal() ? this.tokens.token : await this.tokens.renew();
    } catch {
      return;
    }
    if (this.socket !== socket || generation !== this.generation || !socket.connected) return;
    socket.timeout(this.config.timeouts.connection).emit('refresh-token', { token }, (err: Error | null, ack?: Ack<{ expiresAt: string | number }>) => {
      if (!err && ack?.ok) this.emit('token-refreshed', { expiresAt: ack.expiresAt ?? null });
    });
  }

  // ---- events to screens ----

  on<K extends keyof ClientEvents>(event: K, handler: Handler<ClientEvents[K]>): () => void {
    let set = this.handlers.get(event);
    if (!set) {
      set = new Set();
      this.handlers.set(event, set);
    }
    set.add(handler as Handler<never>);
    return () => set.delete(handler as Handler<never>);
  }

  private emit<K extends keyof ClientEvents>(event: K, payload: ClientEvents[K]): void {
    const set = this.handlers.get(event);
    if (!set) return;
    for (const handler of [...set]) (handler as Handler<ClientEvents[K]>)(payload);
  }

  /** The session shown on screen, if any (messages there raise no notification while the page is visible). */
  setVisibleSession(sessionId: string | null): void {
    this.visibleSession = sessionId;
  }

  getVisibleSession(): string | null {
    return this.visibleSession;
  }

  // ---- sessions ----

  private record(sessionId: string): SessionRecord {
    let record = this.sessions.get(sessionId);
    if (!record) {
      record = {
        state: initialSessionState(sessionId, this.user.userId, this.storedOutbox),
        watchers: 0,
        listeners: new Set(),
        joining: false,
        catchingUp: false,
        filling: false,
        eventsRequested: false,
        notesRequested: false,
        readInFlight: 0,
        flushTimer: null,
        typingTimer: null,
      };
      this.storedOutbox = this.storedOutbox.filter((e) => e.sessionId !== sessionId);
      this.sessions.set(sessionId, record);
    }
    return record;
  }

  getSessionState = (sessionId: string): SessionState => this.record(sessionId).state;

  subscribeSession(sessionId: string, listener: () => void): () => void {
    const record = this.record(sessionId);
    record.listeners.add(listener);
    return () => record.listeners.delete(listener);
  }

  /** Notified when any session changes (for totals such as the unread badge). */
  subscribeAll = (listener: () => void): (() => void) => {
    this.anyListeners.add(listener);
    return () => this.anyListeners.delete(listener);
  };

  getAllVersion = (): number => this.anyVersion;

  /** Unread messages over every watched session. */
  totalUnread(): number {
    let total = 0;
    for (const record of this.sessions.values()) if (record.watchers > 0) total += unreadCount(record.state);
    return total;
  }

  private dispatch(sessionId: string, action: SessionAction): void {
    const record = this.sessions.get(sessionId);
    if (!record) return;
    const next = sessionReducer(record.state, action);
    if (next === record.state) return;
    record.state = next;
    for (const listener of [...record.listeners]) listener();
    this.anyVersion++;
    for (const listener of [...this.anyListeners]) listener();
  }

  /** Keep a session joined while the returned function has not been called. */
  watch(sessionId: string): () => void {
    const record = this.record(sessionId);
    record.watchers++;
    if (record.watchers === 1 && this.socket?.connected) this.join(sessionId);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      record.watchers--;
      if (record.watchers === 0) {
        // Leave after a tick, so a screen that re-watches at once keeps the join.
        setTimeout(() => {
          if (record.watchers > 0) return;
          if (record.state.joined && this.socket?.connected) this.socket.emit('leave-session', { sessionId });
          this.dispatch(sessionId, { type: 'left' });
        }, 0);
      }
    };
  }

  private join(sessionId: string): void {
    const record = this.sessions.get(sessionId);
    const socket = this.socket;
    if (!record || !socket?.connected || record.joining) return;
    record.joining = true;
    const generation = this.generation;
    const lastSeq = rejoinSeq(record.state);
    const payload = lastSeq === undefined ? { sessionId } : { sessionId, lastSeq };
    record.catchingUp = lastSeq !== undefined;
    socket.timeout(this.config.timeouts.connection).emit('join-session', payload, (err: Error | null, ack?: Ack<SessionJoinedPayload>) => {
      record.joining = false;
      if (generation !== this.generation || record.watchers === 0) return;
      if (err || !ack) {
        // Timed out: try again while the connection lasts.
        setTimeout(() => {
          if (generation === this.generation && record.watchers > 0 && !record.state.joined) this.join(sessionId);
        }, RETRY_LATER_MS);
        return;
      }
      if (!ack.ok) {
        this.dispatch(sessionId, { type: 'error', error: ack.error });
        if (isRetryable(ack.error.code)) {
          setTimeout(() => {
            if (generation === this.generation && record.watchers > 0) this.join(sessionId);
          }, RETRY_LATER_MS);
        }
        return;
      }
      this.joined(ack);
    });
  }

  private joined(payload: SessionJoinedPayload): void {
    const sessionId = payload.session.id;
    const record = this.sessions.get(sessionId);
    if (!record || record.watchers === 0) return;
    // A join for the latest messages says `hasMore` when older ones exist;
    // those are for scrolling back, not a gap to fill forward.
    const joined = record.catchingUp ? payload : { ...payload, hasMore: false };
    this.dispatch(sessionId, { type: 'joined', payload: joined });
    this.deliveredOnJoin(sessionId, payload);
    if (!record.eventsRequested) {
      // A join carries the latest 50 entries; the first view of a session asks for the longer list.
      record.eventsRequested = true;
      void this.loadEvents(sessionId);
    }
    if (this.user.role !== 'customer' && !record.notesRequested && (payload.notes?.length ?? 0) >= JOIN_NOTES) {
      // The join carries the latest 50 notes; a longer history comes over REST once.
      record.notesRequested = true;
      void this.loadNotes(sessionId);
    }
    if (payload.session.status === 'closed') {
      this.failOutbox(sessionId, { code: 'session_closed', message: 'The chat is closed.' });
    }
    void this.fill(sessionId);
  }

  /** What the server holds of my delivery position, and a confirmation of what arrived since. */
  private deliveredOnJoin(sessionId: string, payload: SessionJoinedPayload): void {
    const mine = (payload.deliveryPositions ?? []).find((p) => p.userId === this.user.userId)?.upToSeq ?? 0;
    const read = (payload.readPositions ?? []).find((p) => p.userId === this.user.userId)?.upToSeq ?? 0;
    this.delivery.known(sessionId, Math.max(mine, read));
    const record = this.sessions.get(sessionId);
    if (!record) return;
    const last = lastFromOthers(record.state.messages, this.user.userId);
    if (last > 0) this.delivery.arrived(sessionId, last);
  }

  private sendDelivered(sessionId: string, upToSeq: number): void {
    const record = this.sessions.get(sessionId);
    const socket = this.socket;
    if (!record?.state.joined || !socket?.connected) {
      // Not joined now: the next join confirms it instead.
      this.delivery.reset(sessionId);
      return;
    }
    socket.timeout(this.config.timeouts.connection).emit('mark-delivered', { sessionId, upToSeq }, (err: Error | null, ack?: Ack<{ upToSeq: number }>) => {
      if (!err && ack?.ok) {
        this.dispatch(sessionId, { type: 'delivered', userId: this.user.userId, role: this.user.role, upToSeq: ack.upToSeq ?? upToSeq });
      } else if (err || (ack && !ack.ok && ack.error?.code === 'rate_limited')) {
        // Spent budget or no answer: the batcher sends it again shortly. Other refusals are final.
        this.delivery.failed(sessionId, upToSeq);
      }
    });
  }

  private async loadNotes(sessionId: string): Promise<void> {
    try {
      const { items } = await this.api.notes(sessionId, { limit: PAGE_LIMIT });
      if (Array.isArray(items)) this.dispatch(sessionId, { type: 'notes', notes: items.map((n) => ({ ...n, internal: true })) });
    } catch {
      const record = this.sessions.get(sessionId);
      if (record) record.notesRequested = false;
    }
  }

  private async loadEvents(sessionId: string): Promise<void> {
    try {
      const { items } = await this.api.events(sessionId);
      if (Array.isArray(items)) this.dispatch(sessionId, { type: 'events', events: items });
    } catch {
      // The join's own entries stay; the next first view asks again.
      const record = this.sessions.get(sessionId);
      if (record) record.eventsRequested = false;
    }
  }

  /** Remembers the names of directory entries. */
  learnAgents(agents: AgentEntry[]): void {
    for (const agent of agents) if (agent.name && agent.name !== agent.id) this.agentNames.set(agent.id, agent.name);
  }

  /** An agent's display name, when the directory has shown it here. */
  agentName(id: string): string | null {
    return this.agentNames.get(id) ?? null;
  }

  /** The server's clock now (ms since epoch), as far as the last greeting tells. */
  serverNow(): number {
    return Date.now() + this.serverOffsetMs;
  }

  /** An agent says whether they take chats; resolves to the directory entry the server now holds. */
  setStatus(status: Exclude<AgentStatus, 'offline'>): Promise<AgentEntry> {
    const socket = this.socket;
    if (!socket?.connected) return Promise.reject(new Error('Not connected.'));
    return new Promise((resolve, reject) => {
      socket.timeout(this.config.timeouts.connection).emit('set-status', { status }, (err: Error | null, ack?: Ack<{ agent: AgentEntry }>) => {
        if (err || !ack) reject(new Error('No answer from the server.'));
        else if (!ack.ok) reject(new ApiError(ack.error.code, ack.error.message, 0));
        else {
          this.emit('agent-updated', { agent: ack.agent });
          resolve(ack.agent);
        }
      });
    });
  }

  /** Pages over REST whatever the join or a gap left out, until the history is contiguous. */
  private async fill(sessionId: string): Promise<void> {
    const record = this.sessions.get(sessionId);
    if (!record || record.filling) return;
    record.filling = true;
    try {
      for (let round = 0; round < 100 && needsFill(record.state); round++) {
        const after = contiguousSeq(record.state.messages) ?? 0;
        const page = await this.api.messages(sessionId, { afterSeq: after, limit: PAGE_LIMIT });
        this.dispatch(sessionId, { type: 'messages', messages: page.items });
        const stillGap = hasGap(record.state.messages);
        this.dispatch(sessionId, { type: 'paged', hasMore: page.hasMore });
        if (!page.hasMore && !stillGap) break;
        if (page.items.length === 0) break;
      }
    } catch (error) {
      this.dispatch(sessionId, { type: 'error', error: toErrorBody(error) });
    } finally {
      record.filling = false;
    }
    const last = lastFromOthers(record.state.messages, this.user.userId);
    if (last > 0 && record.state.joined) this.delivery.arrived(sessionId, last);
    this.flush(sessionId);
  }

  /** Older messages than the first one held (the "earlier messages" button). */
  async loadEarlier(sessionId: string, limit = 50): Promise<void> {
    const record = this.sessions.get(sessionId);
    const first = record?.state.messages[0];
    if (!record || !first || first.seq <= 1) return;
    try {
      const page = await this.api.messages(sessionId, { beforeSeq: first.seq, limit });
      this.dispatch(sessionId, { type: 'messages', messages: page.items });
    } catch (error) {
      this.dispatch(sessionId, { type: 'error', error: toErrorBody(error) });
    }
  }

  private liveMessage(message: Message): void {
    const record = this.sessions.get(message.sessionId);
    if (!record) return;
    const known = record.state.messages.some((m) => m.seq === message.seq);
    if (message.internal === true) return; // a note never joins the messages (new-note carries them)
    this.dispatch(message.sessionId, { type: 'messages', messages: [message] });
    if (hasGap(record.state.messages)) void this.fill(message.sessionId);
    if (message.senderId !== this.user.userId && record.state.joined) this.delivery.arrived(message.sessionId, message.seq);
    if (!known) this.emit('new-message', message);
  }

  private typingReceived(payload: UserTypingPayload): void {
    const record = this.sessions.get(payload.sessionId);
    if (!record) return;
    this.dispatch(payload.sessionId, { type: 'typing', payload, now: Date.now() });
    if (record.typingTimer) clearTimeout(record.typingTimer);
    if (record.state.typing.length > 0) {
      record.typingTimer = setTimeout(() => {
        record.typingTimer = null;
        this.dispatch(payload.sessionId, { type: 'expire-typing', now: Date.now() });
      }, TYPING_DISPLAY_MS + 50);
    }
  }

  // ---- sending ----

  /**
   * Puts a message in the outbox and sends it as soon as the session is
   * joined on a live connection. Returns its clientMsgId, or null for an
   * empty message.
   */
  sendMessage(sessionId: string, content: string, options: { attachments?: Attachment[]; internal?: boolean } = {}): string | null {
    const text = content.trim();
    const attachments = options.attachments ?? [];
    if (!text && attachments.length === 0) return null;
    if ([...text].length > MAX_CONTENT_CHARS) throw new Error(`A message holds at most ${MAX_CONTENT_CHARS} characters.`);
    if (options.internal && this.user.role === 'customer') throw new Error('Only staff write internal notes.');
    const clientMsgId = newClientMsgId();
    this.record(sessionId);
    this.dispatch(sessionId, { type: 'enqueue', entry: newEntry(sessionId, text, clientMsgId, Date.now(), { attachments, internal: options.internal === true }) });
    this.persistOutbox();
    this.flush(sessionId);
    return clientMsgId;
  }

  retryMessage(sessionId: string, clientMsgId: string): void {
    this.dispatch(sessionId, { type: 'retry', clientMsgId });
    this.persistOutbox();
    this.flush(sessionId);
  }

  discardMessage(sessionId: string, clientMsgId: string): void {
    this.dispatch(sessionId, { type: 'discard', clientMsgId });
    this.persistOutbox();
  }

  private failOutbox(sessionId: string, error: ChatErrorBody): void {
    const record = this.sessions.get(sessionId);
    if (!record) return;
    for (const entry of record.state.outbox) {
      if (entry.state === 'queued') this.dispatch(sessionId, { type: 'send-failed', clientMsgId: entry.clientMsgId, error });
    }
    this.persistOutbox();
  }

  private scheduleFlush(sessionId: string, ms: number): void {
    const record = this.sessions.get(sessionId);
    if (!record || record.flushTimer) return;
    record.flushTimer = setTimeout(() => {
      record.flushTimer = null;
      this.flush(sessionId);
    }, ms);
  }

  /** Emits the next queued message of a session, one at a time and in order. */
  private flush(sessionId: string): void {
    const record = this.sessions.get(sessionId);
    const socket = this.socket;
    if (!record || !socket?.connected || !record.state.joined || record.filling) return;
    const entry = nextToSend(record.state.outbox, sessionId);
    if (!entry) return;
    const generation = this.generation;
    this.dispatch(sessionId, { type: 'sending', clientMsgId: entry.clientMsgId });
    socket
      .timeout(this.config.timeouts.connection)
      .emit(
        'send-message',
        sendPayload(sessionId, entry),
        (err: Error | null, ack?: Ack<{ message: Message }>) => {
          if (ack?.ok) {
            // Stored: good news whichever connection it came on. A note goes with the notes.
            if (ack.message.internal === true || entry.internal) this.dispatch(sessionId, { type: 'notes', notes: [{ ...ack.message, internal: true }] });
            else this.dispatch(sessionId, { type: 'messages', messages: [ack.message] });
            this.persistOutbox();
            this.flush(sessionId);
            return;
          }
          if (generation !== this.generation) return; // the disconnect already put it back in line
          if (err || !ack) {
            this.dispatch(sessionId, { type: 'send-retry', clientMsgId: entry.clientMsgId, error: { code: 'timeout', message: 'No answer from the server yet.' } });
            this.scheduleFlush(sessionId, RETRY_LATER_MS);
            return;
          }
          if (isRetryable(ack.error.code)) {
            this.dispatch(sessionId, { type: 'send-retry', clientMsgId: entry.clientMsgId, error: ack.error });
            this.scheduleFlush(sessionId, RETRY_LATER_MS);
          } else {
            this.dispatch(sessionId, { type: 'send-failed', clientMsgId: entry.clientMsgId, error: ack.error });
            this.persistOutbox();
            this.flush(sessionId);
          }
        },
      );
  }

  /** Adds (`on`) or takes back my reaction to message `seq`; resolves to the message's reactions as stored. */
  react(sessionId: string, seq: number, emoji: string, on: boolean): Promise<Reaction[]> {
    const record = this.sessions.get(sessionId);
    const socket = this.socket;
    if (!record?.state.joined || !socket?.connected) return Promise.reject(new Error('Not connected.'));
    const before = record.state.messages.find((m) => m.seq === seq)?.reactions ?? [];
    // Shown at once; the ack (or message-reactions) then says what the server holds.
    this.dispatch(sessionId, { type: 'reactions', seq, reactions: applyReaction(before, emoji, this.user.userId, on) });
    return new Promise((resolve, reject) => {
      socket.timeout(this.config.timeouts.connection).emit('react', { sessionId, seq, emoji, on }, (err: Error | null, ack?: Ack<{ seq: number; reactions: Reaction[] }>) => {
        if (!err && ack?.ok && Array.isArray(ack.reactions)) {
          this.dispatch(sessionId, { type: 'reactions', seq, reactions: ack.reactions });
          resolve(ack.reactions);
          return;
        }
        this.dispatch(sessionId, { type: 'reactions', seq, reactions: before });
        reject(err || !ack ? new Error('No answer from the server.') : ack.ok ? new Error('Unexpected answer.') : new ApiError(ack.error.code, ack.error.message, 0));
      });
    });
  }

  /** Invites a colleague into a session; the session as the server left it is applied at once. */
  async invite(sessionId: string, agentId: string): Promise<Session> {
    const session = await this.api.invite(sessionId, agentId);
    this.dispatch(sessionId, { type: 'session', session });
    return session;
  }

  /** A colleague leaves a session (or is let go by its agent). */
  async removeParticipant(sessionId: string, agentId: string): Promise<Session> {
    const session = await this.api.removeParticipant(sessionId, agentId);
    this.dispatch(sessionId, { type: 'session', session });
    return session;
  }

  sendTyping(sessionId: string, isTyping: boolean): void {
    const record = this.sessions.get(sessionId);
    if (!record?.state.joined || !this.socket?.connected) return;
    if (record.state.session?.status === 'closed') return;
    this.socket.volatile.emit('typing', { sessionId, isTyping }, () => undefined);
  }

  /** Records that the user has read up to `upToSeq` (only ever forward). */
  markRead(sessionId: string, upToSeq: number): void {
    const record = this.sessions.get(sessionId);
    const socket = this.socket;
    if (!record?.state.joined || !socket?.connected) return;
    if (upToSeq <= myReadSeq(record.state) || upToSeq <= record.readInFlight) return;
    record.readInFlight = upToSeq;
    socket.timeout(this.config.timeouts.connection).emit('mark-read', { sessionId, upToSeq }, (err: Error | null, ack?: Ack<object>) => {
      if (record.readInFlight === upToSeq) record.readInFlight = 0;
      if (!err && ack?.ok) {
        this.dispatch(sessionId, { type: 'read', userId: this.user.userId, role: this.user.role, upToSeq });
      }
    });
  }

  // ---- outbox persistence ----

  private loadOutbox(): OutboxEntry[] {
    try {
      const raw = this.storage?.getItem(OUTBOX_KEY + this.user.userId);
      if (!raw) return [];
      const parsed = JSON.parse(raw) as OutboxEntry[];
      if (!Array.isArray(parsed)) return [];
      return parsed
        .filter((e) => e && typeof e.clientMsgId === 'string' && typeof e.sessionId === 'string' && typeof e.content === 'string')
        .map((e) => ({ ...e, state: e.state === 'failed' ? 'failed' : 'queued' }));
    } catch {
      return [];
    }
  }

  private persistOutbox(): void {
    if (!this.storage) return;
    const all: OutboxEntry[] = [...this.storedOutbox];
    for (const record of this.sessions.values()) all.push(...record.state.outbox);
    try {
      if (all.length) this.storage.setItem(OUTBOX_KEY + this.user.userId, JSON.stringify(all));
      else this.storage.removeItem(OUTBOX_KEY + this.user.userId);
    } catch {
      // Storage full or unavailable: the outbox still lives in memory.
    }
  }
}

/** What `send-message` carries for an outbox entry. */
export function sendPayload(sessionId: string, entry: OutboxEntry): Record<string, unknown> {
  const payload: Record<string, unknown> = { sessionId, content: entry.content, clientMsgId: entry.clientMsgId };
  if (entry.attachments?.length) payload.attachmentIds = entry.attachments.map((a) => a.id);
  if (entry.internal) payload.internal = true;
  return payload;
}

function lastFromOthers(messages: readonly Message[], me: string): number {
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i]!.senderId !== me) return messages[i]!.seq;
  return 0;
}

function safeLocalStorage(): Storage | null {
  try {
    return typeof localStorage === 'undefined' ? null : localStorage;
  } catch {
    return null;
  }
}

export function toErrorBody(error: unknown): ChatErrorBody {
  if (error instanceof ApiError) return error.body;
  if (error instanceof Error) return { code: 'unavailable', message: error.message };
  return { code: 'unavailable', message: String(error) };
}

function parseTime(value: string | number | undefined): number | null {
  if (typeof value === 'number' && Number.isFinite(value)) return value < 1e12 ? value * 1000 : value;
  if (typeof value === 'string') {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? null : ms;
  }
  return null;
}

function describeAuthError(code: string | undefined): string {
  switch (code) {
    case 'token_expired':
      return 'Your session has expired.';
    case 'missing_token':
      return 'No sign-in token was given.';
    default:
      return 'The server did not accept your sign-in.';
  }
}

function describeDisconnect(reason: string): string {
  switch (reason) {
    case 'io server disconnect':
      return 'The server closed the connection.';
    case 'ping timeout':
      return 'The server stopped answering.';
    case 'transport close':
    case 'transport error':
      return 'The connection was lost.';
    default:
      return reason;
  }
}
