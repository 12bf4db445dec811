// Internal notes: kept apart from the messages (their own seq), merged once
// each, placed between messages by afterSeq together with timeline entries,
// never shown from the message list to a customer.

import { describe, expect, it } from 'vitest';
import { mergeNotes, withoutNotes } from '../src/lib/notes';
import { initialSessionState, noteItems, sessionReducer, timeline } from '../src/lib/sessionState';
import { mergeTimeline } from '../src/lib/timeline';
import { newEntry } from '../src/lib/outbox';
import type { Message, SessionEvent } from '../src/lib/types';
import { message, session } from './fixtures';

function note(seq: number, afterSeq: number, over: Partial<Message> = {}): Message {
  return message(seq, { id: `n${seq}`, internal: true, afterSeq, senderId: 'ana', senderName: 'Ana', senderRole: 'agent', content: `note ${seq}`, clientMsgId: `nc${seq}`, ...over });
}

describe('mergeNotes', () => {
  it('keeps one note per seq, ordered by afterSeq then seq, and ignores plain messages', () => {
    const once = mergeNotes([], [note(2, 3), note(1, 1), message(5)]);
    expect(once.map((n) => n.seq)).toEqual([1, 2]);
    expect(mergeNotes(once, [note(1, 1)])).toBe(once);
    expect(mergeNotes(once, [note(3, 0)]).map((n) => n.seq)).toEqual([3, 1, 2]);
  });
});

describe('notes in the conversation', () => {
  it('interleaves notes and entries by afterSeq, unsent notes last', () => {
    let state = initialSessionState('s1', 'ana');
    const assigned: SessionEvent = {
      sessionId: 's1',
      kind: 'assigned',
      at: new Date(1_700_000_001_500).toISOString(),
      by: null,
      agentId: 'ana',
      agentName: 'Ana',
      pool: 'default',
      afterSeq: 1,
    };
    state = sessionReducer(state, {
      type: 'joined',
      payload: {
        session: session({ lastSeq: 3, status: 'active', agentId: 'ana' }),
        messages: [message(1), message(2), message(3)],
        hasMore: false,
        readPositions: [],
        events: [assigned],
        notes: [note(1, 1, { createdAt: new Date(1_700_000_001_800).toISOString() }), note(2, 3)],
      },
    });
    state = sessionReducer(state, { type: 'notes', notes: [note(3, 0)] });
    state = sessionReducer(state, { type: 'enqueue', entry: newEntry('s1', 'draft note', 'x1', 1_700_000_100_000, { internal: true }) });
    const rows = mergeTimeline(timeline(state, 'Ana', 'agent'), state.events, noteItems(state));
    const shape = rows.map((r) => (r.type === 'event' ? `e${r.event.afterSeq}` : r.type === 'note' ? `n${r.item.seq ?? '-'}` : `m${r.item.seq}`));
    expect(shape).toEqual(['n3', 'm1', 'e1', 'n1', 'm2', 'm3', 'n2', 'n-']);
    expect(new Set(rows.map((r) => r.key)).size).toBe(rows.length);
    // Message numbers stay 1, 2, 3: no note among them.
    expect(state.messages.map((m) => m.seq)).toEqual([1, 2, 3]);
  });

  it('settles an unsent note when it is stored, and drops notes that reach the message list', () => {
    let state = initialSessionState('s1', 'ana');
    state = sessionReducer(state, { type: 'enqueue', entry: newEntry('s1', 'for Ben', 'k1', 1_700_000_100_000, { internal: true }) });
    state = sessionReducer(state, { type: 'notes', notes: [note(1, 0, { senderId: 'ana', clientMsgId: 'k1' })] });
    expect(state.outbox).toEqual([]);
    expect(state.notes.map((n) => n.seq)).toEqual([1]);
    const customer = sessionReducer(initialSessionState('s1', 'cust'), { type: 'messages', messages: [message(1), note(1, 1), message(2)] });
    expect(customer.messages.map((m) => m.id)).toEqual(['m1', 'm2']);
    expect(withoutNotes([message(1)])).toEqual([message(1)]);
  });
});
