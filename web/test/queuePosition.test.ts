// The customer's place in the queue: kept from `queue-position` while the
// session waits, dropped once it is taken or closed, and how it reads.

import { describe, expect, it } from 'vitest';
import { queueLine, waitEstimate } from '../src/components/ChatSupport';
import { initialSessionState, sessionReducer } from '../src/lib/sessionState';
import { session } from './fixtures';

describe('queue position in the session state', () => {
  it('keeps the latest position while pending and drops it once taken or closed', () => {
    let state = sessionReducer(initialSessionState('s1', 'cust'), { type: 'joined', payload: { session: session(), messages: [], hasMore: false, readPositions: [] } });
    state = sessionReducer(state, { type: 'queue-position', payload: { sessionId: 's1', position: 2, estimatedWaitSeconds: null } });
    state = sessionReducer(state, { type: 'queue-position', payload: { sessionId: 's1', position: 1, estimatedWaitSeconds: 40 } });
    expect(state.queuePosition).toEqual({ sessionId: 's1', position: 1, estimatedWaitSeconds: 40 });
    const same = sessionReducer(state, { type: 'queue-position', payload: { sessionId: 's1', position: 1, estimatedWaitSeconds: 40 } });
    expect(same).toBe(state);
    const taken = sessionReducer(state, { type: 'session', session: session({ status: 'active', agentId: 'ana', agentName: 'Ana' }) });
    expect(taken.queuePosition).toBeNull();
    const closed = sessionReducer(state, { type: 'closed', payload: { sessionId: 's1', closedBy: { userId: 'cust', role: 'customer' }, reason: null, closedAt: new Date().toISOString() } });
    expect(closed.queuePosition).toBeNull();
  });
});

describe('queueLine', () => {
  it('says the place, and the estimate only when there is one', () => {
    expect(queueLine(3, null)).toBe('You are number 3 in the queue');
    expect(queueLine(3, 120)).toBe('You are number 3 in the queue — about 2 minutes');
    expect(queueLine(1, 61)).toBe('You are number 1 in the queue — about 1 minute');
    expect(waitEstimate(20)).toBe('less than a minute');
  });
});
