// The outbox: messages the user wrote that the server has not yet stored.
// Each keeps its `clientMsgId` for life, so sending it again after a lost
// acknowledgement or a reconnect never stores it twice.

import type { Attachment, ChatErrorBody, Message } from './types';

export type OutboxState =
  /** Waiting for a connection (or for its turn). */
  | 'queued'
  /** Emitted; the acknowledgement has not come yet. */
  | 'sending'
  /** Refused for good (closed session, invalid content…): the user decides. */
  | 'failed';

export interface OutboxEntry {
  clientMsgId: string;
  sessionId: string;
  content: string;
  /** When the user sent it (ms since epoch). */
  createdAt: number;
  state: OutboxState;
  /** Emits so far. */
  attempts: number;
  error: ChatErrorBody | null;
  /** Files uploaded for it, sent as `attachmentIds` (shown while it waits). */
  attachments?: Attachment[];
  /** An internal note for staff, sent with `internal: true`. */
  internal?: boolean;
}

export function newEntry(
  sessionId: string,
  content: string,
  clientMsgId: string,
  now: number,
  extra: { attachments?: Attachment[]; internal?: boolean } = {},
): OutboxEntry {
  const entry: OutboxEntry = { clientMsgId, sessionId, content, createdAt: now, state: 'queued', attempts: 0, error: null };
  if (extra.attachments && extra.attachments.length) entry.attachments = extra.attachments;
  if (extra.internal) entry.internal = true;
  return entry;
}

function update(outbox: readonly OutboxEntry[], clientMsgId: string, patch: (e: OutboxEntry) => OutboxEntry): OutboxEntry[] {
  let changed = false;
  const next = outbox.map((entry) => {
    if (entry.clientMsgId !== clientMsgId) return entry;
    changed = true;
    return patch(entry);
  });
  return changed ? next : (outbox as OutboxEntry[]);
}

export function enqueue(outbox: readonly OutboxEntry[], entry: OutboxEntry): OutboxEntry[] {
  if (outbox.some((e) => e.clientMsgId === entry.clientMsgId)) return outbox as OutboxEntry[];
  return [...outbox, entry];
}

export function markSending(outbox: readonly OutboxEntry[], clientMsgId: string): OutboxEntry[] {
  return update(outbox, clientMsgId, (e) => ({ ...e, state: 'sending', attempts: e.attempts + 1, error: null }));
}

/** After an error worth retrying (timeout, rate limit, server busy): back in line. */
export function markQueued(outbox: readonly OutboxEntry[], clientMsgId: string, error: ChatErrorBody | null = null): OutboxEntry[] {
  return update(outbox, clientMsgId, (e) => ({ ...e, state: 'queued', error }));
}

export function markFailed(outbox: readonly OutboxEntry[], clientMsgId: string, error: ChatErrorBody): OutboxEntry[] {
  return update(outbox, clientMsgId, (e) => ({ ...e, state: 'failed', error }));
}

/** The connection dropped: whatever was in flight goes back in line (it may or may not have been stored). */
export function requeueInFlight(outbox: readonly OutboxEntry[]): OutboxEntry[] {
  if (!outbox.some((e) => e.state === 'sending')) return outbox as OutboxEntry[];
  return outbox.map((e) => (e.state === 'sending' ? { ...e, state: 'queued' } : e));
}

export function remove(outbox: readonly OutboxEntry[], clientMsgId: string): OutboxEntry[] {
  if (!outbox.some((e) => e.clientMsgId === clientMsgId)) return outbox as OutboxEntry[];
  return outbox.filter((e) => e.clientMsgId !== clientMsgId);
}

/** Drops entries that the server has stored (a message of mine carries their clientMsgId). */
export function reconcile(outbox: readonly OutboxEntry[], stored: readonly Message[], me: string): OutboxEntry[] {
  if (outbox.length === 0 || stored.length === 0) return outbox as OutboxEntry[];
  const done = new Set<string>();
  for (const m of stored) if (m.senderId === me && m.clientMsgId) done.add(m.clientMsgId);
  if (!outbox.some((e) => done.has(e.clientMsgId))) return outbox as OutboxEntry[];
  return outbox.filter((e) => !done.has(e.clientMsgId));
}

/**
 * The entry to emit next for a session: the oldest queued one, and only
 * when nothing of that session is in flight, so messages are stored in the
 * order they were written.
 */
export function nextToSend(outbox: readonly OutboxEntry[], sessionId: string): OutboxEntry | null {
  let first: OutboxEntry | null = null;
  for (const entry of outbox) {
    if (entry.sessionId !== sessionId) continue;
    if (entry.state === 'sending') return null;
    if (entry.state === 'queued' && first === null) first = entry;
  }
  return first;
}

/** Errors after which sending the same message again may succeed. */
export function isRetryable(code: string): boolean {
  return code === 'rate_limited' || code === 'unavailable' || code === 'timeout' || code === 'disconnected';
}
