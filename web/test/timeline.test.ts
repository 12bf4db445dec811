// The timeline's system entries: merged once each (join reply, REST and live
// overlap), placed between messages by afterSeq, before unsent messages,
// and how each reads.

import { describe, expect, it } from 'vitest';
import { initialSessionState, sessionReducer, timeline } from '../src/lib/sessionState';
import { describeEvent, mergeEvents, mergeTimeline, type EventNames } from '../src/lib/timeline';
import { newEntry } from '../src/lib/outbox';
import type { SessionEvent } from '../src/lib/types';
import { message, session } from './fixtures';

function event(kind: SessionEvent['kind'], afterSeq: number, over: Partial<SessionEvent> = {}): SessionEvent {
  return {
    sessionId: 's1',
    kind,
    at: new Date(1_700_000_000_000 + afterSeq * 1000 + 500).toISOString(),
    by: { userId: 'ana', role: 'agent' },
    agentId: 'ana',
    agentName: 'Ana',
    pool: 'default',
    afterSeq,
    ...over,
  };
}

const names: EventNames = { me: 'cust', nameOf: (id) => ({ ana: 'Ana', bo: 'Bo', sam: 'Sam' })[id] ?? null };

describe('mergeEvents', () => {
  it('keeps one entry per kind, time and place, ordered by afterSeq then time', () => {
    const assigned = event('assigned', 1);
    const transferred = event('transferred', 3, { agentId: 'bo', agentName: 'Bo' });
    const early = event('returned', 3, { at: new Date(1_700_000_000_000).toISOString() });
    const once = mergeEvents([], [transferred, assigned]);
    expect(once).toEqual([assigned, transferred]);
    const again = mergeEvents(once, [assigned, { ...transferred }]);
    expect(again).toBe(once);
    expect(mergeEvents(once, [early])).toEqual([assigned, early, transferred]);
  });
});

describe('mergeTimeline', () => {
  it('places an entry after message afterSeq and before afterSeq + 1, and before unsent messages', () => {
    let state = initialSessionState('s1', 'cust');
    state = sessionReducer(state, {
      type: 'joined',
      payload: { session: session({ lastSeq: 3 }), messages: [message(1), message(2), message(3)], hasMore: false, readPositions: [], events: [event('assigned', 1)] },
    });
    state = sessionReducer(state, { type: 'events', events: [event('assigned', 0, { agentId: 'bo' }), event('transferred', 3, { agentId: 'bo', agentName: 'Bo' })] });
    state = sessionReducer(state, { type: 'enqueue', entry: newEntry('s1', 'not sent yet', 'x1', 1_700_000_100_000) });
    const rows = mergeTimeline(timeline(state, 'Carla', 'customer'), state.events);
    const shape = rows.map((r) => (r.type === 'event' ? `e${r.event.afterSeq}:${r.event.kind}` : `m${r.item.seq ?? '-'}`));
    expect(shape).toEqual(['e0:assigned', 'm1', 'e1:assigned', 'm2', 'm3', 'e3:transferred', 'm-']);
    expect(new Set(rows.map((r) => r.key)).size).toBe(rows.length);
  });

  it('shows entries alone when there are no messages, and messages alone without entries', () => {
    expect(mergeTimeline([], [event('closed', 0)]).map((r) => r.type)).toEqual(['event']);
    const state = sessionReducer(initialSessionState('s1', 'cust'), { type: 'messages', messages: [message(1)] });
    expect(mergeTimeline(timeline(state, 'Carla', 'customer'), []).map((r) => r.type)).toEqual(['message']);
  });

  it('keeps live entries that arrive after a join, once', () => {
    let state = initialSessionState('s1', 'cust');
    const live = event('assigned', 1);
    state = sessionReducer(state, { type: 'events', events: [live] });
    state = sessionReducer(state, { type: 'joined', payload: { session: session(), messages: [message(1)], hasMore: false, readPositions: [], events: [live] } });
    expect(state.events).toEqual([live]);
  });
});

describe('describeEvent', () => {
  it('says who holds the chat and who moved it', () => {
    expect(describeEvent(event('assigned', 0), names)).toBe('Assigned to Ana');
    expect(describeEvent(event('assigned', 0, { by: null }), names)).toBe('Assigned to Ana');
    expect(describeEvent(event('assigned', 0, { by: null, agentId: 'bo', agentName: null }), names)).toBe('Assigned to Bo');
    expect(describeEvent(event('assigned', 0, { by: null, agentId: 'nobody', agentName: null }), names)).toBe('Assigned to nobody');
    expect(describeEvent(event('assigned', 0, { by: null, agentId: 'bo', agentName: 'bo' }), names)).toBe('Assigned to Bo');
    expect(describeEvent(event('assigned', 0, { by: { userId: 'sam', role: 'admin' } }), names)).toBe('Assigned to Ana by Sam');
    expect(describeEvent(event('transferred', 2, { agentId: 'bo', agentName: 'Bo' }), names)).toBe('Transferred to Bo by Ana');
    expect(describeEvent(event('returned', 2, { agentId: null, agentName: null }), names)).toBe('Returned to the queue by Ana');
    expect(describeEvent(event('returned', 2, { by: null, agentId: null, agentName: null }), names)).toBe('Returned to the queue');
    expect(describeEvent(event('closed', 4, { by: { userId: 'cust', role: 'customer' } }), names)).toBe('Closed by you');
    expect(describeEvent(event('closed', 4, { by: { userId: 'other', role: 'customer' } }), names)).toBe('Closed by the customer');
    expect(describeEvent(event('closed', 4, { by: { userId: 'zed', role: 'agent' } }), names)).toBe('Closed by an agent');
    expect(describeEvent(event('closed', 4, { by: { userId: 'zed', role: 'admin' } }), names)).toBe('Closed by a supervisor');
  });
});
