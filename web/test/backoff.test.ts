// Backoff: doubling from the base delay, capped, with jitter in [ceiling/2, ceiling].

import { describe, expect, it } from 'vitest';
import { backoffCeiling, backoffDelay } from '../src/lib/backoff';

const settings = { delay: 1000, maxDelay: 5000 };

describe('backoff', () => {
  it('doubles per attempt up to the cap', () => {
    expect([1, 2, 3, 4, 5, 10, 100].map((n) => backoffCeiling(n, settings))).toEqual([1000, 2000, 4000, 5000, 5000, 5000, 5000]);
  });

  it('jitters between half the ceiling and the ceiling', () => {
    expect(backoffDelay(1, settings, () => 0)).toBe(500);
    expect(backoffDelay(1, settings, () => 0.999999)).toBe(1000);
    expect(backoffDelay(3, settings, () => 0.5)).toBe(3000);
    expect(backoffDelay(9, settings, () => 0)).toBe(2500);
  });

  it('never exceeds the maximum delay nor goes below half the base', () => {
    for (let attempt = 1; attempt < 30; attempt++) {
      for (const r of [0, 0.25, 0.5, 0.75, 0.99]) {
        const d = backoffDelay(attempt, settings, () => r);
        expect(d).toBeGreaterThanOrEqual(500);
        expect(d).toBeLessThanOrEqual(5000);
      }
    }
  });

  it('spreads clients out: different random draws give different delays', () => {
    const delays = new Set([0.1, 0.3, 0.6, 0.9].map((r) => backoffDelay(4, settings, () => r)));
    expect(delays.size).toBe(4);
  });
});
