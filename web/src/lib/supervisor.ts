// The supervisor's live view (`GET /api/chat/supervisor`, docs/protocol.md):
// its types, the request, the polling that keeps it fresh (at most one
// request per interval, none while the page is hidden), and the pure
// derivations the tables draw from an answer: rows, durations on the
// server's clock, pools seen, staleness.

import { ApiError } from './api';
import { decodeClaims, type TokenSource } from './tokenSource';
import type { AgentEntry, ChatErrorBody, Session } from './types';

export type SupervisedAgentStatus = 'online' | 'away' | 'offline';

/** An open chat of the view: when it last entered the queue, what its agent has not read (`null` while it waits). */
export interface SupervisedChat {
  session: Session;
  queuedAt: string;
  unreadByAgent: number | null;
}

/** An agent of the view: the directory entry, its load and its day. */
export interface SupervisedAgent extends AgentEntry {
  status: SupervisedAgentStatus;
  openChats: number;
  capacity: number;
  answeredToday: number;
  avgFirstResponseSeconds: number | null;
}

export interface SupervisorView {
  chats: SupervisedChat[];
  agents: SupervisedAgent[];
  updatedAt: string;
}

/** An answer and when (local clock) it arrived: enough to tell the server's time later. */
export interface SupervisorSnapshot {
  view: SupervisorView;
  receivedAt: number;
}

/** Fewest milliseconds between the starts of two requests. */
export const POLL_INTERVAL_MS = 2000;
/** An answer older than this (local clock) is marked stale. */
export const STALE_AFTER_MS = 6000;

/** What the request needs of a sign-in's token source. */
export type SupervisorTokens = Pick<TokenSource, 'getFreshToken' | 'renew' | 'renewable'>;

/** Seconds of clock difference allowed when deciding that a refused token had expired. */
const EXPIRY_SKEW_S = 5;

async function requestView(url: string, token: string, signal: AbortSignal): Promise<SupervisorView> {
  let response: Response;
  try {
    response = await fetch(url, { headers: { Accept: 'application/json', Authorization: `Bearer ${token}` }, signal });
  } catch (error) {
    if (signal.aborted) throw error;
    throw new ApiError('network', 'The chat server cannot be reached. Check your connection and try again.', 0);
  }
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data as { error?: ChatErrorBody } | null)?.error;
    throw new ApiError(error?.code ?? `http_${response.status}`, error?.message ?? (text || response.statusText), response.status);
  }
  if (!isView(data)) throw new ApiError('unavailable', 'The supervisor view answered something unexpected.', response.status);
  return data;
}

function isView(data: unknown): data is SupervisorView {
  const view = data as SupervisorView | null;
  return !!view && Array.isArray(view.chats) && Array.isArray(view.agents) && typeof view.updatedAt === 'string';
}

/** One view, of `pool` or (null) of every pool; `signal` aborts it. A token refused as expired is renewed once. */
export async function fetchSupervisorView(baseUrl: string, tokens: SupervisorTokens, pool: string | null, signal: AbortSignal): Promise<SupervisorView> {
  const url = `${baseUrl}/api/chat/supervisor${pool ? `?pool=${encodeURIComponent(pool)}` : ''}`;
  const token = await tokens.getFreshToken();
  try {
    return await requestView(url, token, signal);
  } catch (error) {
    const { exp } = decodeClaims(token);
    const expired = exp !== null && exp - EXPIRY_SKEW_S <= Date.now() / 1000;
    if (!(error instanceof ApiError) || error.status !== 401 || !tokens.renewable || !expired) throw error;
    let fresh: string;
    try {
      fresh = await tokens.renew();
    } catch {
      throw error;
    }
    return requestView(url, fresh, signal);
  }
}

// ---- time ----

/**
 * The server's time now, from the answer's `updatedAt` moved on by the local
 * time elapsed since it arrived: local clocks that are minutes off still
 * show the right waits.
 */
export function serverNow(snapshot: SupervisorSnapshot, localNow: number): number {
  const updated = Date.parse(snapshot.view.updatedAt);
  if (Number.isNaN(updated)) return localNow;
  return updated + Math.max(0, localNow - snapshot.receivedAt);
}

/** Whole seconds from `iso` to `now` (never negative), or null when `iso` is missing or unreadable. */
export function secondsSince(iso: string | null | undefined, now: number): number | null {
  if (!iso) return null;
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return null;
  return Math.max(0, Math.floor((now - t) / 1000));
}

/** A running duration as a clock: 0:07, 4:05, 1:02:03; an em dash for null. */
export function clockDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** Whether the last good answer (local clock) is too old to be trusted as live. */
export function isStale(lastSuccessAt: number | null, localNow: number, staleAfterMs = STALE_AFTER_MS): boolean {
  return lastSuccessAt !== null && localNow - lastSuccessAt > staleAfterMs;
}

// ---- rows ----

export interface ChatRow {
  id: string;
  session: Session;
  customer: string;
  subject: string | null;
  /** The agent's name, or null while it waits. */
  agent: string | null;
  pool: string;
  state: 'waiting' | 'active';
  /** Seconds waiting (since it last entered the queue) or active (since it was assigned). */
  seconds: number | null;
  lastMessageAt: string | null;
  unreadByAgent: number | null;
}

/**
 * The table's rows at the server's time `now`: waiting chats first, the
 * longest wait on top (they need someone), then active ones, the longest
 * running first. Chats in `hidden` (closed from this screen, the next answer
 * not in yet) are left out.
 */
export function chatRows(chats: SupervisedChat[], now: number, hidden: ReadonlySet<string> = new Set()): ChatRow[] {
  const rows = chats
    .filter((chat) => chat.session.status !== 'closed' && !hidden.has(chat.session.id))
    .map((chat): ChatRow => {
      const { session } = chat;
      const waiting = session.status === 'pending';
      return {
        id: session.id,
        session,
        customer: session.customerName,
        subject: session.subject,
        agent: waiting ? null : (session.agentName ?? session.agentId),
        pool: session.pool,
        state: waiting ? 'waiting' : 'active',
        seconds: secondsSince(waiting ? chat.queuedAt : (session.assignedAt ?? chat.queuedAt), now),
        lastMessageAt: session.lastMessageAt,
        unreadByAgent: waiting ? null : chat.unreadByAgent,
      };
    });
  return rows.sort((a, b) => {
    if (a.state !== b.state) return a.state === 'waiting' ? -1 : 1;
    return (b.seconds ?? 0) - (a.seconds ?? 0) || a.id.localeCompare(b.id);
  });
}

/** Closed-here ids still worth hiding: those the latest answer still lists. */
export function stillHidden(hidden: ReadonlySet<string>, view: SupervisorView): Set<string> {
  const open = new Set(view.chats.map((c) => c.session.id));
  return new Set([...hidden].filter((id) => open.has(id)));
}

const STATUS_ORDER: Record<SupervisedAgentStatus, number> = { online: 0, away: 1, offline: 2 };

/** Agents online first, then away, then offline; by name within each. */
export function agentRows(agents: SupervisedAgent[]): SupervisedAgent[] {
  return [...agents].sort((a, b) => (STATUS_ORDER[a.status] ?? 3) - (STATUS_ORDER[b.status] ?? 3) || a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}

/** Every pool seen so far (the filter's choices): those already known, plus the chats' and agents' of an answer. */
export function knownPools(previous: readonly string[], view: SupervisorView): string[] {
  const pools = new Set(previous);
  for (const chat of view.chats) pools.add(chat.session.pool);
  for (const agent of view.agents) for (const pool of agent.pools) pools.add(pool);
  return [...pools].sort();
}

// ---- polling ----

export interface PollerOptions {
  /** One request; its result is the caller's business. It should stop when `signal` aborts. */
  load: (signal: AbortSignal) => Promise<void>;
  intervalMs?: number;
  visible: () => boolean;
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

/**
 * Requests one after the other, each starting at least `intervalMs` after
 * the previous one started (never two at once). While the page is hidden no
 * request starts; on showing again the next one starts as soon as the
 * interval allows. `stop` aborts the request under way.
 */
export class Poller {
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  private timer: unknown = null;
  private inFlight: AbortController | null = null;
  private lastStart: number | null = null;
  private stopped = true;

  constructor(private readonly options: PollerOptions) {
    this.intervalMs = options.intervalMs ?? POLL_INTERVAL_MS;
    this.now = options.now ?? Date.now;
    this.setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = options.clearTimer ?? ((handle) => clearTimeout(handle as ReturnType<typeof setTimeout>));
  }

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    this.cancelTimer();
    this.inFlight?.abort();
    this.inFlight = null;
  }

  /** Call on every visibility change. */
  visibilityChanged(): void {
    if (this.options.visible()) this.schedule();
    else this.cancelTimer();
  }

  get polling(): boolean {
    return !this.stopped && (this.timer !== null || this.inFlight !== null);
  }

  private cancelTimer(): void {
    if (this.timer !== null) this.clearTimer(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.stopped || this.timer !== null || this.inFlight || !this.options.visible()) return;
    const wait = this.lastStart === null ? 0 : Math.max(0, this.lastStart + this.intervalMs - this.now());
    this.timer = this.setTimer(() => {
      this.timer = null;
      this.run();
    }, wait);
  }

  private run(): void {
    if (this.stopped || this.inFlight || !this.options.visible()) return;
    const controller = new AbortController();
    this.inFlight = controller;
    this.lastStart = this.now();
    const done = () => {
      if (this.inFlight !== controller) return;
      this.inFlight = null;
      this.schedule();
    };
    let pending: Promise<void>;
    try {
      pending = this.options.load(controller.signal);
    } catch {
      pending = Promise.resolve();
    }
    pending.then(done, done);
  }
}
