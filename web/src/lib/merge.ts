// Merging messages by `seq`: the server numbers a session's messages 1, 2,
// 3, … with no gap and no repeat, so the client keeps one sorted array with
// one entry per seq, whatever order pages, acks and live events arrive in.

import type { Message } from './types';

/**
 * `existing` and `incoming` merged, ascending by seq, one message per seq.
 * Returns `existing` itself when nothing new arrived, so callers can skip
 * re-rendering.
 */
export function mergeMessages(existing: readonly Message[], incoming: readonly Message[]): Message[] {
  if (incoming.length === 0) return existing as Message[];
  const known = new Set(existing.map((m) => m.seq));
  const fresh: Message[] = [];
  for (const message of incoming) {
    if (!Number.isInteger(message.seq) || message.seq < 1 || known.has(message.seq)) continue;
    known.add(message.seq);
    fresh.push(message);
  }
  if (fresh.length === 0) return existing as Message[];
  const last = existing.length ? existing[existing.length - 1]!.seq : 0;
  fresh.sort((a, b) => a.seq - b.seq);
  if (fresh[0]!.seq > last) return [...existing, ...fresh];
  return [...existing, ...fresh].sort((a, b) => a.seq - b.seq);
}

/**
 * The highest seq reached from the first message held without a gap, or
 * null when none is held. Rejoining with this as `lastSeq` fetches exactly
 * what is missing.
 */
export function contiguousSeq(messages: readonly Message[]): number | null {
  if (messages.length === 0) return null;
  let seq = messages[0]!.seq;
  for (let i = 1; i < messages.length; i++) {
    const next = messages[i]!.seq;
    if (next !== seq + 1) break;
    seq = next;
  }
  return seq;
}

/** True when some seq between the first and the last message held is missing. */
export function hasGap(messages: readonly Message[]): boolean {
  if (messages.length < 2) return false;
  const first = messages[0]!.seq;
  const last = messages[messages.length - 1]!.seq;
  return last - first + 1 !== messages.length;
}
