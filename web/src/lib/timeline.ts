// The conversation's timeline: stored messages and unsent ones interleaved
// with the session's system entries (assigned, transferred, returned,
// closed, a colleague invited or leaving) and, for staff, internal notes,
// each placed after the message its `afterSeq` names; and how an entry
// reads on screen.

import type { ChatItem } from './sessionState';
import type { SessionEvent } from './types';

export type TimelineRow =
  | { type: 'message'; key: string; item: ChatItem }
  | { type: 'event'; key: string; event: SessionEvent }
  /** An internal note (staff only), placed by its afterSeq like an entry. */
  | { type: 'note'; key: string; item: ChatItem };

/** Entries carry no id: one entry is one kind at one moment after one message. */
export function eventKey(event: SessionEvent): string {
  return `${event.kind}|${event.at}|${event.afterSeq}`;
}

/** Known entries plus incoming ones, once each, ordered by `afterSeq` then time. */
export function mergeEvents(current: SessionEvent[], incoming: SessionEvent[]): SessionEvent[] {
  if (incoming.length === 0) return current;
  const seen = new Set(current.map(eventKey));
  const added = incoming.filter((e) => {
    const key = eventKey(e);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  if (added.length === 0) return current;
  return [...current, ...added].sort((a, b) => a.afterSeq - b.afterSeq || a.at.localeCompare(b.at));
}

/**
 * Messages and entries in conversation order: an entry with `afterSeq` n
 * comes after message n and before message n + 1. Entries after the last
 * stored message come before the unsent ones, which the server has not
 * placed yet.
 */
export function mergeTimeline(items: ChatItem[], events: SessionEvent[], notes: ChatItem[] = []): TimelineRow[] {
  type Placed = { after: number; at: string; order: number; row: TimelineRow };
  const placed: Placed[] = [];
  for (const event of events) placed.push({ after: event.afterSeq, at: event.at, order: 0, row: { type: 'event', key: `e:${eventKey(event)}`, event } });
  for (const note of notes) placed.push({ after: note.afterSeq ?? 0, at: note.createdAt, order: note.seq ?? 0, row: { type: 'note', key: note.key, item: note } });
  // Unsent notes (no place yet) come after everything stored, like unsent messages.
  const sorted = placed.sort((a, b) => a.after - b.after || a.at.localeCompare(b.at) || a.order - b.order);
  const rows: TimelineRow[] = [];
  let next = 0;
  const flushUpTo = (seq: number) => {
    while (next < sorted.length && sorted[next]!.after < seq) rows.push(sorted[next++]!.row);
  };
  for (const item of items) {
    if (item.internal && item.seq === null) {
      // A note still in the outbox: among the unsent messages, in writing order.
      flushUpTo(Number.POSITIVE_INFINITY);
      rows.push({ type: 'note', key: item.key, item });
      continue;
    }
    flushUpTo(item.seq ?? Number.POSITIVE_INFINITY);
    rows.push({ type: 'message', key: item.key, item });
  }
  flushUpTo(Number.POSITIVE_INFINITY);
  return rows;
}

export interface EventNames {
  /** The signed-in user's id: their own actions read "you". */
  me: string;
  /** A display name for a user id, when one is known (from messages, earlier entries). */
  nameOf: (userId: string) => string | null;
}

/** Who did it, in words, or null when the system did. */
function actor(event: SessionEvent, names: EventNames): string | null {
  const by = event.by;
  if (!by) return null;
  if (by.userId === names.me) return 'you';
  if (by.role === 'customer') return 'the customer';
  // The customer's side knows no directory: someone who never wrote is named by role.
  return names.nameOf(by.userId) ?? (by.role === 'admin' ? 'a supervisor' : 'an agent');
}

/** The entry's line, without its time: "Assigned to Ana", "Transferred to Bo by Ana", "Returned to the queue", "Closed by the customer". */
export function describeEvent(event: SessionEvent, names: EventNames): string {
  const who = actor(event, names);
  // An entry written by the system may carry only the agent's id (as its name, too): the session or its messages know the name.
  const bare = !event.agentName || event.agentName === event.agentId;
  const agent = (bare && event.agentId ? names.nameOf(event.agentId) : null) ?? event.agentName ?? event.agentId ?? 'an agent';
  const byWho = who ? ` by ${who}` : '';
  switch (event.kind) {
    case 'assigned':
      // Taking a chat oneself is an assignment by its own agent: "by" would repeat the name.
      return `Assigned to ${agent}${who && event.by?.userId !== event.agentId ? byWho : ''}`;
    case 'transferred':
      return event.agentId ? `Transferred to ${agent}${byWho}` : `Transferred to the ${event.pool} queue${byWho}`;
    case 'returned':
      return `Returned to the queue${byWho}`;
    case 'closed':
      return who ? `Closed${byWho}` : 'Closed';
    case 'invited':
      return `${agent} joined the chat`;
    case 'left':
      return `${agent} left the chat`;
    default:
      return 'The chat changed';
  }
}

/** Names of the people of a session, learnt from its messages and its entries. */
export function namesFrom(messages: { senderId: string; senderName: string }[], events: SessionEvent[], extra: Record<string, string | null | undefined> = {}): Map<string, string> {
  const names = new Map<string, string>();
  for (const [id, name] of Object.entries(extra)) if (name && name !== id) names.set(id, name);
  for (const e of events) if (e.agentId && e.agentName && e.agentName !== e.agentId) names.set(e.agentId, e.agentName);
  for (const m of messages) names.set(m.senderId, m.senderName);
  return names;
}
