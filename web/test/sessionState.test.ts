// The session reducer and its selectors: joins and rejoins, live messages
// and acks, outbox states, read marks, typing, closing.

import { describe, expect, it } from 'vitest';
import { newEntry } from '../src/lib/outbox';
import {
  initialSessionState,
  myReadSeq,
  needsFill,
  peerReadSeq,
  rejoinSeq,
  sessionReducer,
  timeline,
  unreadCount,
  type SessionAction,
  type SessionState,
} from '../src/lib/sessionState';
import { message, session } from './fixtures';

const ME = 'cust';
const agentMsg = (seq: number) => message(seq, { senderId: 'alice', senderName: 'Alice', senderRole: 'agent', clientMsgId: `a${seq}` });

function run(actions: SessionAction[], start: SessionState = initialSessionState('s1', ME)): SessionState {
  return actions.reduce(sessionReducer, start);
}

function joined(messages = [message(1)], extra: Partial<Parameters<typeof session>[0]> = {}, hasMore = false): SessionAction {
  return {
    type: 'joined',
    payload: { session: session({ lastSeq: messages.at(-1)?.seq ?? 0, ...extra }), messages, hasMore, readPositions: [] },
  };
}

describe('sessionReducer', () => {
  it('asks for the latest page on first join, then for what follows what it holds', () => {
    const fresh = initialSessionState('s1', ME);
    expect(rejoinSeq(fresh)).toBeUndefined();
    const state = run([joined([message(1), agentMsg(2)])]);
    expect(rejoinSeq(state)).toBe(2);
    const empty = run([joined([])]);
    expect(rejoinSeq(empty)).toBe(0);
  });

  it('a rejoin after a disconnect merges catch-up and live messages without gap or duplicate', () => {
    let state = run([joined([message(1), agentMsg(2)]), { type: 'disconnected' }]);
    expect(state.joined).toBe(false);
    const lastSeq = rejoinSeq(state);
    expect(lastSeq).toBe(2);
    // The server returns seq > lastSeq; a live event for 4 races ahead of the ack.
    state = run([{ type: 'messages', messages: [agentMsg(4)] }, joined([agentMsg(3), agentMsg(4)])], state);
    expect(state.messages.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    expect(state.joined).toBe(true);
    expect(needsFill(state)).toBe(false);
  });

  it('notices when history must be paged (hasMore or a gap)', () => {
    expect(needsFill(run([joined([message(1)], {}, true)]))).toBe(true);
    const gap = run([joined([message(1)]), { type: 'messages', messages: [message(3)] }]);
    expect(needsFill(gap)).toBe(true);
    expect(rejoinSeq(gap)).toBe(1);
  });

  it('moves a message from the outbox to the conversation when it is stored', () => {
    const entry = newEntry('s1', 'hello', 'cm-1', 1000);
    let state = run([joined([]), { type: 'enqueue', entry }]);
    expect(timeline(state, 'Carla', 'customer').map((i) => i.state)).toEqual(['queued']);
    state = sessionReducer(state, { type: 'sending', clientMsgId: 'cm-1' });
    expect(timeline(state, 'Carla', 'customer').map((i) => i.state)).toEqual(['sending']);
    state = sessionReducer(state, { type: 'messages', messages: [message(1, { clientMsgId: 'cm-1', content: 'hello' })] });
    const items = timeline(state, 'Carla', 'customer');
    expect(items.map((i) => [i.state, i.seq, i.key])).toEqual([['sent', 1, 'c:cm-1']]);
    expect(state.outbox).toEqual([]);
  });

  it('keeps the same item key from outbox to stored (no flicker, no double)', () => {
    const entry = newEntry('s1', 'hi', 'k1', 0);
    const before = timeline(run([{ type: 'enqueue', entry }]), 'Carla', 'customer')[0]!.key;
    const after = timeline(run([{ type: 'enqueue', entry }, { type: 'messages', messages: [message(1, { clientMsgId: 'k1' })] }]), 'Carla', 'customer')[0]!.key;
    expect(before).toBe(after);
  });

  it('a repeated ack or live echo of the same message changes nothing', () => {
    const stored = message(1, { clientMsgId: 'cm-1' });
    const state = run([joined([]), { type: 'messages', messages: [stored] }]);
    expect(sessionReducer(state, { type: 'messages', messages: [stored] })).toBe(state);
  });

  it('puts in-flight messages back in line on disconnect', () => {
    const state = run([{ type: 'enqueue', entry: newEntry('s1', 'x', 'c1', 0) }, { type: 'sending', clientMsgId: 'c1' }, { type: 'disconnected' }]);
    expect(state.outbox[0]!.state).toBe('queued');
  });

  it('marks my messages read when the other side has read past them', () => {
    let state = run([joined([message(1), message(2), agentMsg(3)])]);
    expect(timeline(state, 'Carla', 'customer').map((i) => i.state)).toEqual(['sent', 'sent', 'received']);
    state = sessionReducer(state, { type: 'read', userId: 'alice', role: 'agent', upToSeq: 1 });
    expect(timeline(state, 'Carla', 'customer').map((i) => i.state)).toEqual(['read', 'sent', 'received']);
    expect(peerReadSeq(state)).toBe(1);
    // Read positions only move forward.
    expect(sessionReducer(state, { type: 'read', userId: 'alice', role: 'agent', upToSeq: 0 })).toBe(state);
  });

  it('counts unread messages from others after my read position', () => {
    let state = run([joined([agentMsg(1), message(2), agentMsg(3), agentMsg(4)])]);
    expect(unreadCount(state)).toBe(3);
    state = sessionReducer(state, { type: 'read', userId: ME, role: 'customer', upToSeq: 3 });
    expect(myReadSeq(state)).toBe(3);
    expect(unreadCount(state)).toBe(1);
  });

  it('keeps read positions from the join and from local acks, whichever is further', () => {
    let state = sessionReducer(initialSessionState('s1', ME), { type: 'read', userId: ME, role: 'customer', upToSeq: 5 });
    state = sessionReducer(state, {
      type: 'joined',
      payload: { session: session({ lastSeq: 6 }), messages: [], hasMore: false, readPositions: [{ userId: ME, role: 'customer', upToSeq: 2 }, { userId: 'alice', role: 'agent', upToSeq: 6 }] },
    });
    expect(myReadSeq(state)).toBe(5);
    expect(peerReadSeq(state)).toBe(6);
  });

  it('shows typists until they stop, send, or go silent', () => {
    const typing = (isTyping: boolean, now = 0): SessionAction => ({
      type: 'typing',
      payload: { sessionId: 's1', userId: 'alice', name: 'Alice', role: 'agent', isTyping },
      now,
    });
    let state = run([joined([]), typing(true, 1000)]);
    expect(state.typing.map((t) => t.name)).toEqual(['Alice']);
    expect(run([typing(false)], state).typing).toEqual([]);
    expect(run([{ type: 'messages', messages: [agentMsg(1)] }], state).typing).toEqual([]);
    expect(run([{ type: 'expire-typing', now: 1000 + 6001 }], state).typing).toEqual([]);
    // My own typing echoes are ignored.
    state = sessionReducer(state, { type: 'typing', payload: { sessionId: 's1', userId: ME, name: 'me', role: 'customer', isTyping: true }, now: 0 });
    expect(state.typing.map((t) => t.userId)).toEqual(['alice']);
  });

  it('records the close and its reason', () => {
    const state = run([
      joined([message(1)], { status: 'active', agentId: 'alice', agentName: 'Alice' }),
      { type: 'closed', payload: { sessionId: 's1', closedBy: { userId: 'alice', role: 'agent' }, reason: 'solved', closedAt: '2024-01-01T00:00:00.000Z' } },
    ]);
    expect(state.session?.status).toBe('closed');
    expect(state.closed?.reason).toBe('solved');
  });

  it('keeps the highest lastSeq when a session update races a message', () => {
    let state = run([joined([message(1)], { status: 'pending' }), { type: 'messages', messages: [message(2)] }]);
    expect(state.session?.lastSeq).toBe(2);
    state = sessionReducer(state, { type: 'session', session: session({ status: 'active', lastSeq: 1, agentId: 'alice' }) });
    expect(state.session?.status).toBe('active');
    expect(state.session?.lastSeq).toBe(2);
  });
});
