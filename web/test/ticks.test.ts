// Ticks on one's own messages from the read and delivery positions: sent,
// delivered (someone else's delivery or read position reaches it), read
// (someone else's read position reaches it); one's own positions never count.

import { describe, expect, it } from 'vitest';
import { initialSessionState, sessionReducer, timeline } from '../src/lib/sessionState';
import { tickFor, tickPositions } from '../src/lib/ticks';
import { message, session } from './fixtures';

describe('tickFor', () => {
  it('reads sent, delivered and read from the others’ positions', () => {
    const positions = tickPositions(
      [
        { userId: 'cust', role: 'customer', upToSeq: 9 },
        { userId: 'ana', role: 'agent', upToSeq: 2 },
      ],
      [
        { userId: 'cust', role: 'customer', upToSeq: 9 },
        { userId: 'ana', role: 'agent', upToSeq: 4 },
      ],
      'cust',
    );
    expect(positions).toEqual({ read: 2, delivered: 4 });
    expect([1, 2, 3, 4, 5].map((seq) => tickFor(seq, positions))).toEqual(['read', 'read', 'delivered', 'delivered', 'sent']);
  });

  it('takes a read past the delivery position as delivered too', () => {
    const positions = tickPositions([{ userId: 'ana', role: 'agent', upToSeq: 3 }], [], 'cust');
    expect(tickFor(3, positions)).toBe('read');
    expect(tickFor(4, positions)).toBe('sent');
  });
});

describe('ticks in the timeline', () => {
  it('moves from sent to delivered to read as the positions arrive, and only on my messages', () => {
    const mine = (seq: number) => message(seq, { senderId: 'cust' });
    let state = initialSessionState('s1', 'cust');
    state = sessionReducer(state, {
      type: 'joined',
      payload: {
        session: session({ lastSeq: 3, status: 'active', agentId: 'ana' }),
        messages: [mine(1), message(2, { senderId: 'ana', senderName: 'Ana', senderRole: 'agent' }), mine(3)],
        hasMore: false,
        readPositions: [],
        deliveryPositions: [{ userId: 'ana', role: 'agent', upToSeq: 1 }],
      },
    });
    const ticks = () => timeline(state, 'Carla', 'customer').map((i) => i.tick);
    expect(ticks()).toEqual(['delivered', null, 'sent']);
    state = sessionReducer(state, { type: 'delivered', userId: 'ana', role: 'agent', upToSeq: 3 });
    expect(ticks()).toEqual(['delivered', null, 'delivered']);
    // My own delivery position (for Ana's message) changes nothing on mine.
    state = sessionReducer(state, { type: 'delivered', userId: 'cust', role: 'customer', upToSeq: 9 });
    state = sessionReducer(state, { type: 'read', userId: 'ana', role: 'agent', upToSeq: 1 });
    expect(ticks()).toEqual(['read', null, 'delivered']);
    // Positions never move back.
    const before = state;
    state = sessionReducer(state, { type: 'delivered', userId: 'ana', role: 'agent', upToSeq: 2 });
    expect(state).toBe(before);
    state = sessionReducer(state, { type: 'read', userId: 'ana', role: 'agent', upToSeq: 3 });
    expect(ticks()).toEqual(['read', null, 'read']);
  });
});
