// The supervisor view's pure parts: durations, the server's clock, rows of
// the open chats (waiting from queuedAt, active from assignedAt), agents'
// order, pools seen, staleness, and the poller's pace and visibility.

import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  agentRows,
  chatRows,
  clockDuration,
  isStale,
  knownPools,
  Poller,
  secondsSince,
  serverNow,
  stillHidden,
  type SupervisedAgent,
  type SupervisedChat,
  type SupervisorView,
} from '../src/lib/supervisor';
import type { Session } from '../src/lib/types';

const T0 = Date.parse('2026-03-02T10:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

function session(id: string, patch: Partial<Session> = {}): Session {
  return {
    id,
    customerId: `c-${id}`,
    customerName: `Customer ${id}`,
    agentId: null,
    agentName: null,
    pool: 'default',
    status: 'pending',
    subject: null,
    createdAt: at(0),
    assignedAt: null,
    closedAt: null,
    lastSeq: 1,
    lastMessageAt: at(0),
    ...patch,
  };
}

function chat(id: string, queuedAt: number, patch: Partial<Session> = {}, unreadByAgent: number | null = null): SupervisedChat {
  return { session: session(id, patch), queuedAt: at(queuedAt), unreadByAgent };
}

function agent(id: string, patch: Partial<SupervisedAgent> = {}): SupervisedAgent {
  return {
    id,
    name: `Agent ${id}`,
    pools: ['default'],
    online: true,
    lastSeenAt: at(0),
    status: 'online',
    openChats: 0,
    capacity: 3,
    answeredToday: 0,
    avgFirstResponseSeconds: null,
    ...patch,
  };
}

function view(chats: SupervisedChat[], agents: SupervisedAgent[] = [], updatedAt = at(0)): SupervisorView {
  return { chats, agents, updatedAt };
}

describe('clockDuration', () => {
  it('shows minutes and seconds, and hours once past the hour', () => {
    expect(clockDuration(0)).toBe('0:00');
    expect(clockDuration(7)).toBe('0:07');
    expect(clockDuration(59.9)).toBe('0:59');
    expect(clockDuration(245)).toBe('4:05');
    expect(clockDuration(3599)).toBe('59:59');
    expect(clockDuration(3600)).toBe('1:00:00');
    expect(clockDuration(3723)).toBe('1:02:03');
    expect(clockDuration(100 * 3600 + 5)).toBe('100:00:05');
  });

  it('shows a dash for nothing and never a negative time', () => {
    expect(clockDuration(null)).toBe('—');
    expect(clockDuration(undefined)).toBe('—');
    expect(clockDuration(Number.NaN)).toBe('—');
    expect(clockDuration(-12)).toBe('0:00');
  });
});

describe('the server clock', () => {
  it('moves the answer’s updatedAt on by the local time since it arrived, whatever the local clock says', () => {
    // The local clock is 90 s behind the server's.
    const receivedAt = T0 - 90_000;
    const snapshot = { view: view([], [], at(0)), receivedAt };
    expect(serverNow(snapshot, receivedAt)).toBe(T0);
    expect(serverNow(snapshot, receivedAt + 4_500)).toBe(T0 + 4_500);
    // A local clock that stepped back does not run the server's time backwards.
    expect(serverNow(snapshot, receivedAt - 10_000)).toBe(T0);
  });

  it('counts whole seconds since a moment, never negative', () => {
    expect(secondsSince(at(0), T0 + 61_900)).toBe(61);
    expect(secondsSince(at(10), T0)).toBe(0);
    expect(secondsSince(null, T0)).toBeNull();
    expect(secondsSince('not a time', T0)).toBeNull();
  });

  it('is stale once the last good answer is older than 6 s', () => {
    expect(isStale(null, T0)).toBe(false);
    expect(isStale(T0, T0 + 6_000)).toBe(false);
    expect(isStale(T0, T0 + 6_001)).toBe(true);
  });
});

describe('chat rows', () => {
  it('count a waiting chat from queuedAt, not from its creation', () => {
    // Created at 0, returned to the queue at 100: it has waited since 100.
    const rows = chatRows([chat('a', 100, { createdAt: at(0) })], T0 + 130_000);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: 'a', state: 'waiting', agent: null, seconds: 30, unreadByAgent: null, customer: 'Customer a' });
  });

  it('count an active chat from assignedAt, with its agent and unread count', () => {
    const active = chat('b', 0, { status: 'active', agentId: 'alice', agentName: 'Alice', assignedAt: at(40), pool: 'billing' }, 3);
    const [row] = chatRows([active], T0 + 100_000);
    expect(row).toMatchObject({ state: 'active', agent: 'Alice', pool: 'billing', seconds: 60, unreadByAgent: 3 });
  });

  it('fall back to the agent id without a name, and to queuedAt without assignedAt', () => {
    const [row] = chatRows([chat('c', 5, { status: 'active', agentId: 'bob' }, 0)], T0 + 15_000);
    expect(row).toMatchObject({ agent: 'bob', seconds: 10, unreadByAgent: 0 });
  });

  it('put waiting chats first, longest wait on top, then active ones longest first', () => {
    const chats = [
      chat('active-new', 0, { status: 'active', agentId: 'a', agentName: 'A', assignedAt: at(50) }, 0),
      chat('wait-new', 40),
      chat('active-old', 0, { status: 'active', agentId: 'a', agentName: 'A', assignedAt: at(10) }, 1),
      chat('wait-old', 5),
    ];
    expect(chatRows(chats, T0 + 60_000).map((r) => r.id)).toEqual(['wait-old', 'wait-new', 'active-old', 'active-new']);
  });

  it('leave out closed chats and those closed from this screen', () => {
    const chats = [chat('a', 0), chat('b', 0), chat('c', 0, { status: 'closed' })];
    expect(chatRows(chats, T0, new Set(['b'])).map((r) => r.id)).toEqual(['a']);
  });

  it('hide a chat closed here only while answers still list it', () => {
    const hidden = new Set(['a', 'gone']);
    expect([...stillHidden(hidden, view([chat('a', 0), chat('b', 0)]))]).toEqual(['a']);
  });
});

describe('agents and pools', () => {
  it('list online agents first, then away, then offline, by name', () => {
    const agents = [agent('1', { name: 'Zoe', status: 'offline' }), agent('2', { name: 'Yan', status: 'away' }), agent('3', { name: 'Xia' }), agent('4', { name: 'Abe' })];
    expect(agentRows(agents).map((a) => a.name)).toEqual(['Abe', 'Xia', 'Yan', 'Zoe']);
    // The answer itself is left as it was.
    expect(agents[0]!.name).toBe('Zoe');
  });

  it('gather the pools of chats and agents into a sorted union', () => {
    const answer = view([chat('a', 0, { pool: 'sales' })], [agent('1', { pools: ['billing', 'default'] })]);
    expect(knownPools(['vip'], answer)).toEqual(['billing', 'default', 'sales', 'vip']);
    expect(knownPools(['default'], view([]))).toEqual(['default']);
  });
});

describe('Poller', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  function setup(options: { visible?: boolean; loadMs?: number } = {}) {
    vi.useFakeTimers();
    vi.setSystemTime(T0);
    const state = { visible: options.visible ?? true };
    const starts: number[] = [];
    const signals: AbortSignal[] = [];
    const loadMs = options.loadMs ?? 100;
    const poller = new Poller({
      intervalMs: 2000,
      visible: () => state.visible,
      load: (signal) => {
        starts.push(Date.now() - T0);
        signals.push(signal);
        return new Promise((resolve) => setTimeout(resolve, loadMs));
      },
    });
    return { poller, state, starts, signals };
  }

  it('starts at once, then one request per interval', async () => {
    const { poller, starts } = setup();
    poller.start();
    await vi.advanceTimersByTimeAsync(6_500);
    expect(starts).toEqual([0, 2000, 4000, 6000]);
    poller.stop();
  });

  it('waits for a slow answer: never two requests at once', async () => {
    const { poller, starts } = setup({ loadMs: 3_000 });
    poller.start();
    await vi.advanceTimersByTimeAsync(7_000);
    // Each one starts as soon as the previous answer is in (the interval has passed by then).
    expect(starts).toHaveLength(3);
    for (let i = 1; i < starts.length; i++) {
      expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(3000);
      expect(starts[i]! - starts[i - 1]!).toBeLessThan(3010);
    }
    poller.stop();
  });

  it('stops while the page is hidden and resumes, paced, when it shows again', async () => {
    const { poller, state, starts } = setup();
    poller.start();
    await vi.advanceTimersByTimeAsync(2_500);
    expect(starts).toEqual([0, 2000]);
    state.visible = false;
    poller.visibilityChanged();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(starts).toEqual([0, 2000]);
    expect(poller.polling).toBe(false);
    state.visible = true;
    poller.visibilityChanged();
    // Long past the interval: at once.
    await vi.advanceTimersByTimeAsync(0);
    expect(starts).toEqual([0, 2000, 12500]);
    // Hidden and shown again at once: still no more than one per interval.
    state.visible = false;
    poller.visibilityChanged();
    state.visible = true;
    poller.visibilityChanged();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(starts).toEqual([0, 2000, 12500]);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(starts).toEqual([0, 2000, 12500, 14500]);
    poller.stop();
  });

  it('does not start while hidden', async () => {
    const { poller, starts } = setup({ visible: false });
    poller.start();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(starts).toEqual([]);
    poller.stop();
  });

  it('aborts the request under way on stop, and starts no other', async () => {
    const { poller, starts, signals } = setup({ loadMs: 5_000 });
    poller.start();
    await vi.advanceTimersByTimeAsync(100);
    expect(signals[0]!.aborted).toBe(false);
    poller.stop();
    expect(signals[0]!.aborted).toBe(true);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(starts).toEqual([0]);
  });

  it('goes on after a failed request', async () => {
    vi.useFakeTimers();
    vi.setSystemTime(T0);
    let calls = 0;
    const poller = new Poller({
      intervalMs: 2000,
      visible: () => true,
      load: () => {
        calls++;
        return Promise.reject(new Error('down'));
      },
    });
    poller.start();
    await vi.advanceTimersByTimeAsync(4_100);
    expect(calls).toBe(3);
    poller.stop();
  });
});
