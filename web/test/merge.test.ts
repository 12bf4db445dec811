// Merging by seq: order, no duplicates, gaps detected, cursor for rejoin.

import { describe, expect, it } from 'vitest';
import { contiguousSeq, hasGap, mergeMessages } from '../src/lib/merge';
import { message } from './fixtures';

const seqs = (list: { seq: number }[]) => list.map((m) => m.seq);

describe('mergeMessages', () => {
  it('appends newer messages in seq order', () => {
    const merged = mergeMessages([message(1), message(2)], [message(4), message(3)]);
    expect(seqs(merged)).toEqual([1, 2, 3, 4]);
  });

  it('drops duplicates, whether repeated inside a batch or already held', () => {
    const merged = mergeMessages([message(1), message(2)], [message(2), message(3), message(3)]);
    expect(seqs(merged)).toEqual([1, 2, 3]);
  });

  it('returns the same array when nothing is new, so screens do not re-render', () => {
    const held = [message(1), message(2)];
    expect(mergeMessages(held, [message(1)])).toBe(held);
    expect(mergeMessages(held, [])).toBe(held);
  });

  it('inserts older pages and late arrivals in place', () => {
    const merged = mergeMessages([message(5), message(6)], [message(3), message(4), message(7)]);
    expect(seqs(merged)).toEqual([3, 4, 5, 6, 7]);
    expect(seqs(mergeMessages([message(1), message(3)], [message(2)]))).toEqual([1, 2, 3]);
  });

  it('ignores messages without a valid seq', () => {
    const merged = mergeMessages([], [message(0), { ...message(2), seq: 1.5 }, message(1)]);
    expect(seqs(merged)).toEqual([1]);
  });

  it('a rejoin catch-up overlapping live messages yields each seq once', () => {
    // Live events 5 and 6 arrived, then the rejoin returns 3..6.
    const live = mergeMessages([message(1), message(2)], [message(5), message(6)]);
    const merged = mergeMessages(live, [3, 4, 5, 6].map((s) => message(s)));
    expect(seqs(merged)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(hasGap(merged)).toBe(false);
  });
});

describe('contiguousSeq and hasGap', () => {
  it('is null without messages', () => {
    expect(contiguousSeq([])).toBeNull();
    expect(hasGap([])).toBe(false);
  });

  it('stops at the first gap', () => {
    const list = [1, 2, 3, 5, 6].map((s) => message(s));
    expect(contiguousSeq(list)).toBe(3);
    expect(hasGap(list)).toBe(true);
  });

  it('counts from the first message held (the latest page need not start at 1)', () => {
    const list = [51, 52, 53].map((s) => message(s));
    expect(contiguousSeq(list)).toBe(53);
    expect(hasGap(list)).toBe(false);
  });
});
