// An agent's desk: the live queue of pending chats and the agent's own
// active chats, loaded over REST on every (re)connection and kept current by
// `new-pending-session`, `session-updated` and `session-closed`. It keeps the
// agent's chats joined (through ChatClient.watch) on every screen, so unread
// counts and notifications work wherever the agent is.

import { ApiError } from '../lib/api';
import type { Session, SessionClosedPayload } from '../lib/types';
import type { ChatClient } from './ChatClient';

export interface DeskState {
  /** Pending chats, oldest first. */
  queue: Session[];
  /** The agent's chats, including ones closed since they were shown. */
  mine: Session[];
  /** How each of my closed chats ended. */
  closedInfo: Record<string, SessionClosedPayload>;
  /** When each queued chat entered the queue (server clock, RFC 3339): its creation or its latest return. */
  queuedAt: Record<string, string>;
  loaded: boolean;
  error: string | null;
}

export type DeskEvent =
  | { type: 'transferred-in'; session: Session }
  /** The agent of a chat invited me into it as a colleague. */
  | { type: 'invited'; session: Session }
  | { type: 'lost'; session: Session; reason: string };

export type ActionResult = { ok: true; session: Session } | { ok: false; message: string };

/** Whether `userId` has the chat: its assigned agent, or a colleague invited into it. */
export function isMyChat(session: Session, userId: string): boolean {
  return session.agentId === userId || (session.participants ?? []).some((p) => p.userId === userId);
}

function byCreated(a: Session, b: Session): number {
  return a.createdAt.localeCompare(b.createdAt);
}

function upsert(list: Session[], session: Session): Session[] {
  const index = list.findIndex((s) => s.id === session.id);
  if (index === -1) return [...list, session];
  const next = list.slice();
  next[index] = session;
  return next;
}

export class AgentDesk {
  private state: DeskState = { queue: [], mine: [], closedInfo: {}, queuedAt: {}, loaded: false, error: null };
  /** Whether GET /queue is served (a server without it answers 404: the queue is then the pending sessions). */
  private queueRoute = true;
  private readonly listeners = new Set<() => void>();
  private readonly eventListeners = new Set<(event: DeskEvent) => void>();
  private readonly watching = new Map<string, () => void>();
  private readonly unsubscribe: (() => void)[] = [];
  private refreshing = 0;
  /** Chats this agent is taking right now (their assignment is no transfer). */
  private readonly taking = new Set<string>();

  constructor(private readonly client: ChatClient) {}

  private get me(): string {
    return this.client.user.userId;
  }

  start(): void {
    this.unsubscribe.push(
      this.client.on('connected', () => void this.refresh()),
      this.client.on('new-pending-session', ({ session }) => this.pending(session)),
      this.client.on('session-updated', ({ session }) => this.updated(session)),
      this.client.on('session-closed', (payload) => this.closed(payload)),
    );
  }

  stop(): void {
    for (const off of this.unsubscribe.splice(0)) off();
    for (const release of this.watching.values()) release();
    this.watching.clear();
  }

  getState = (): DeskState => this.state;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  onEvent(listener: (event: DeskEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  private set(patch: Partial<DeskState>): void {
    this.state = { ...this.state, ...patch };
    this.syncWatches();
    for (const listener of [...this.listeners]) listener();
  }

  private fire(event: DeskEvent): void {
    for (const listener of [...this.eventListeners]) listener(event);
  }

  /** Keeps exactly my open chats joined. */
  private syncWatches(): void {
    const wanted = new Set(this.state.mine.filter((s) => s.status === 'active').map((s) => s.id));
    for (const [id, release] of this.watching) {
      if (!wanted.has(id)) {
        release();
        this.watching.delete(id);
      }
    }
    for (const id of wanted) if (!this.watching.has(id)) this.watching.set(id, this.client.watch(id));
  }

  /** The waiting sessions with when each entered the queue, in queue order. */
  private async loadQueue(): Promise<{ queue: Session[]; queuedAt: Record<string, string> }> {
    if (this.queueRoute) {
      try {
        const { items } = await this.client.api.queue();
        const queuedAt: Record<string, string> = {};
        for (const item of items) queuedAt[item.session.id] = item.queuedAt;
        return { queue: items.slice().sort((a, b) => a.position - b.position).map((item) => item.session), queuedAt };
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) throw error;
        this.queueRoute = false;
      }
    }
    const pending = await this.client.api.allSessions('pending');
    const queuedAt: Record<string, string> = {};
    for (const session of pending) queuedAt[session.id] = this.state.queuedAt[session.id] ?? session.createdAt;
    return { queue: pending.sort(byCreated), queuedAt };
  }

  /** Reloads the queue and my chats (after every connection: events may have been missed). */
  async refresh(): Promise<void> {
    const ticket = ++this.refreshing;
    try {
      const [{ queue, queuedAt }, active] = await Promise.all([this.loadQueue(), this.client.api.allSessions('active')]);
      if (ticket !== this.refreshing) return;
      const mineActive = active.filter((s) => isMyChat(s, this.me));
      const closedKept = this.state.mine.filter((s) => s.status === 'closed');
      const mine = [...mineActive, ...closedKept.filter((c) => !mineActive.some((a) => a.id === c.id))];
      this.set({ queue, queuedAt, mine, loaded: true, error: null });
    } catch (error) {
      if (ticket !== this.refreshing) return;
      this.set({ loaded: true, error: error instanceof Error ? error.message : String(error) });
    }
  }

  /**
   * A chat seen entering the queue live entered it now, on the server's clock
   * (a return keeps its place in the queue but its wait starts again); one
   * already queued keeps its time.
   */
  private enteredQueue(session: Session): Record<string, string> {
    if (this.state.queue.some((s) => s.id === session.id) && this.state.queuedAt[session.id]) return this.state.queuedAt;
    return { ...this.state.queuedAt, [session.id]: new Date(this.client.serverNow()).toISOString() };
  }

  private pending(session: Session): void {
    if (session.status !== 'pending') return;
    const mine = this.state.mine.filter((s) => s.id !== session.id);
    this.set({ queue: upsert(this.state.queue, session).sort(byCreated), queuedAt: this.enteredQueue(session), mine });
  }

  private updated(session: Session): void {
    const before = this.state.mine.find((s) => s.id === session.id && s.status === 'active');
    const wasMine = before !== undefined;
    let queue = this.state.queue;
    let mine = this.state.mine;
    let queuedAt = this.state.queuedAt;
    if (session.status === 'pending') {
      queuedAt = this.enteredQueue(session);
      queue = upsert(queue, session).sort(byCreated);
      mine = mine.filter((s) => s.id !== session.id);
    } else {
      queue = queue.filter((s) => s.id !== session.id);
    }
    if (session.status === 'active') {
      if (isMyChat(session, this.me)) mine = upsert(mine, session);
      else mine = mine.filter((s) => s.id !== session.id);
    }
    this.set({ queue, mine, queuedAt });
    const isMine = session.status === 'active' && isMyChat(session, this.me);
    if (!wasMine && isMine && !this.taking.has(session.id)) this.fire({ type: session.agentId === this.me ? 'transferred-in' : 'invited', session });
    if (wasMine && !isMine) {
      const colleague = before.agentId !== this.me;
      const reason =
        session.status === 'pending'
          ? `returned to the ${session.pool} queue`
          : colleague && session.agentId === before.agentId
            ? 'no longer shared with you'
            : `now with ${session.agentName ?? session.agentId ?? 'another agent'}`;
      this.fire({ type: 'lost', session, reason });
    }
  }

  private closed(payload: SessionClosedPayload): void {
    const queue = this.state.queue.filter((s) => s.id !== payload.sessionId);
    const closedByMe = payload.closedBy.userId === this.me;
    let mine = this.state.mine;
    let closedInfo = this.state.closedInfo;
    if (mine.some((s) => s.id === payload.sessionId)) {
      if (closedByMe) {
        mine = mine.filter((s) => s.id !== payload.sessionId);
      } else {
        mine = mine.map((s) => (s.id === payload.sessionId ? { ...s, status: 'closed' as const, closedAt: payload.closedAt } : s));
        closedInfo = { ...closedInfo, [payload.sessionId]: payload };
      }
    }
    this.set({ queue, mine, closedInfo });
  }

  /** Takes a pending chat; the loser of a race is told who was faster. */
  async take(sessionId: string): Promise<ActionResult> {
    this.taking.add(sessionId);
    try {
      const session = await this.client.api.assign(sessionId);
      this.set({ queue: this.state.queue.filter((s) => s.id !== sessionId), mine: upsert(this.state.mine, session) });
      return { ok: true, session };
    } catch (error) {
      if (error instanceof ApiError && (error.code === 'conflict' || error.code === 'session_closed')) {
        this.set({ queue: this.state.queue.filter((s) => s.id !== sessionId) });
        void this.refresh();
        return {
          ok: false,
          message:
            error.code === 'conflict'
              ? 'Another agent took this chat first. It has left the queue.'
              : 'The customer closed this chat before it was taken.',
        };
      }
      return { ok: false, message: describe(error, 'The chat could not be taken.') };
    } finally {
      this.taking.delete(sessionId);
    }
  }

  async transfer(sessionId: string, target: { agentId?: string; pool?: string }): Promise<ActionResult> {
    try {
      const session = await this.client.api.transfer(sessionId, target);
      this.updated(session);
      return { ok: true, session };
    } catch (error) {
      return { ok: false, message: describe(error, 'The chat could not be transferred.') };
    }
  }

  async close(sessionId: string, reason: string): Promise<ActionResult> {
    try {
      const session = await this.client.api.close(sessionId, reason.trim() || undefined);
      this.set({ mine: this.state.mine.filter((s) => s.id !== sessionId), queue: this.state.queue.filter((s) => s.id !== sessionId) });
      return { ok: true, session };
    } catch (error) {
      if (error instanceof ApiError && error.code === 'session_closed') {
        this.dismiss(sessionId);
        return { ok: false, message: 'This chat was already closed.' };
      }
      return { ok: false, message: describe(error, 'The chat could not be closed.') };
    }
  }

  /** Removes a closed chat from my list. */
  dismiss(sessionId: string): void {
    const closedInfo = { ...this.state.closedInfo };
    delete closedInfo[sessionId];
    this.set({ mine: this.state.mine.filter((s) => s.id !== sessionId), closedInfo });
  }
}

function describe(error: unknown, fallback: string): string {
  if (error instanceof ApiError) {
    switch (error.code) {
      case 'forbidden':
        return `${fallback} You are not allowed to do this.`;
      case 'not_found':
        return `${fallback} No such chat or agent.`;
      case 'invalid_payload':
        return `${fallback} ${error.message}`;
      case 'network':
        return `${fallback} The server cannot be reached.`;
      default:
        return `${fallback} ${error.message}`;
    }
  }
  return fallback;
}
