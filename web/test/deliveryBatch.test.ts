// Batched mark-delivered: the first arrival goes at once, later ones within
// the interval are folded into one event with the highest seq, nothing at
// or below what the server holds is sent, a reset forgets what was sent, and
// a failed send goes again an interval after it left.

import { describe, expect, it } from 'vitest';
import { DeliveryBatcher } from '../src/lib/deliveryBatch';

function harness() {
  let now = 1_000;
  const timers: { at: number; fn: () => void; id: number }[] = [];
  let nextId = 0;
  const sent: [string, number][] = [];
  const batcher = new DeliveryBatcher({
    send: (sessionId, seq) => sent.push([sessionId, seq]),
    now: () => now,
    setTimer: (fn, ms) => {
      const id = ++nextId;
      timers.push({ at: now + ms, fn, id });
      return id;
    },
    clearTimer: (handle) => {
      const index = timers.findIndex((t) => t.id === handle);
      if (index !== -1) timers.splice(index, 1);
    },
    intervalMs: 500,
  });
  const advance = (ms: number) => {
    now += ms;
    for (;;) {
      const due = timers.filter((t) => t.at <= now).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      timers.splice(timers.indexOf(due), 1);
      due.fn();
    }
  };
  return { batcher, sent, advance, pending: () => timers.length };
}

describe('DeliveryBatcher', () => {
  it('sends the first arrival at once and folds a burst into one event with the highest seq', () => {
    const { batcher, sent, advance } = harness();
    batcher.arrived('s1', 3);
    expect(sent).toEqual([['s1', 3]]);
    batcher.arrived('s1', 4);
    batcher.arrived('s1', 6);
    batcher.arrived('s1', 5);
    expect(sent).toEqual([['s1', 3]]);
    advance(499);
    expect(sent).toEqual([['s1', 3]]);
    advance(1);
    expect(sent).toEqual([
      ['s1', 3],
      ['s1', 6],
    ]);
    advance(2000);
    expect(sent.length).toBe(2);
  });

  it('keeps sessions apart and sends nothing the server already holds', () => {
    const { batcher, sent, advance } = harness();
    batcher.known('s1', 10);
    batcher.arrived('s1', 9);
    batcher.arrived('s1', 10);
    batcher.arrived('s2', 1);
    expect(sent).toEqual([['s2', 1]]);
    batcher.arrived('s1', 11);
    expect(sent).toEqual([
      ['s2', 1],
      ['s1', 11],
    ]);
    advance(1000);
    expect(sent.length).toBe(2);
  });

  it('at most one event per session per interval however arrivals are spread', () => {
    const { batcher, sent, advance } = harness();
    for (let seq = 1; seq <= 40; seq++) {
      batcher.arrived('s1', seq);
      advance(50);
    }
    advance(1000);
    // 40 arrivals over 2 s: the first at once, then one per 500 ms, the last with seq 40.
    expect(sent.length).toBeLessThanOrEqual(6);
    expect(sent[sent.length - 1]).toEqual(['s1', 40]);
  });

  it('after a reset sends again (the first attempt may not have arrived) and drops a waiting batch', () => {
    const { batcher, sent, advance, pending } = harness();
    batcher.arrived('s1', 2);
    batcher.arrived('s1', 3);
    expect(pending()).toBe(1);
    batcher.reset();
    expect(pending()).toBe(0);
    advance(1000);
    expect(sent).toEqual([['s1', 2]]);
    batcher.arrived('s1', 2);
    expect(sent).toEqual([
      ['s1', 2],
      ['s1', 2],
    ]);
  });
  it('sends a failed batch again one interval after it left, with what arrived since', () => {
    const { batcher, sent, advance } = harness();
    batcher.arrived('s1', 3);
    expect(sent).toEqual([['s1', 3]]);
    advance(100);
    batcher.failed('s1', 3);
    advance(399);
    expect(sent).toEqual([['s1', 3]]);
    batcher.arrived('s1', 5);
    advance(1);
    expect(sent).toEqual([
      ['s1', 3],
      ['s1', 5],
    ]);
    advance(2000);
    expect(sent.length).toBe(2);
  });

  it('repeats the failed seq itself when nothing arrived since, and ignores a failure a later send replaced', () => {
    const { batcher, sent, advance, pending } = harness();
    batcher.arrived('s1', 3);
    advance(500);
    batcher.arrived('s1', 4);
    expect(sent).toEqual([
      ['s1', 3],
      ['s1', 4],
    ]);
    // The answer to the first send comes late: the second already covers it.
    batcher.failed('s1', 3);
    expect(pending()).toBe(0);
    batcher.failed('s1', 4);
    advance(500);
    expect(sent).toEqual([
      ['s1', 3],
      ['s1', 4],
      ['s1', 4],
    ]);
    // Once it went through, an arrival at or below it sends nothing.
    batcher.arrived('s1', 4);
    advance(2000);
    expect(sent.length).toBe(3);
  });

  it('forgets a failure after a reset', () => {
    const { batcher, sent, advance, pending } = harness();
    batcher.arrived('s1', 3);
    batcher.reset('s1');
    batcher.failed('s1', 3);
    expect(pending()).toBe(0);
    advance(2000);
    expect(sent).toEqual([['s1', 3]]);
  });
});
