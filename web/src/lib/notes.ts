// Internal notes: staff-only messages numbered in their own sequence and
// placed in the conversation by `afterSeq`, like timeline entries. Kept
// apart from the messages so that message numbers stay without gaps.

import type { Message } from './types';

/** Where a note goes: after message `afterSeq` (0 before the first). */
export function noteAfter(note: Message): number {
  return typeof note.afterSeq === 'number' && Number.isFinite(note.afterSeq) ? note.afterSeq : 0;
}

function byPlace(a: Message, b: Message): number {
  return noteAfter(a) - noteAfter(b) || a.seq - b.seq;
}

/** Known notes plus incoming ones, once each (by their own seq), ordered by afterSeq then seq. */
export function mergeNotes(current: readonly Message[], incoming: readonly Message[]): Message[] {
  const notes = incoming.filter((n) => n.internal === true && Number.isInteger(n.seq));
  if (notes.length === 0) return current as Message[];
  const known = new Set(current.map((n) => n.seq));
  const fresh: Message[] = [];
  for (const note of notes) {
    if (known.has(note.seq)) continue;
    known.add(note.seq);
    fresh.push(note);
  }
  if (fresh.length === 0) return current as Message[];
  return [...current, ...fresh].sort(byPlace);
}

/** Only real messages: a note that reached the message list by mistake is dropped (customers never see one). */
export function withoutNotes(messages: readonly Message[]): Message[] {
  return messages.some((m) => m.internal === true) ? messages.filter((m) => m.internal !== true) : (messages as Message[]);
}
