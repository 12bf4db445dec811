// The dashboard's series: queue length as a step function, message rate per minute.

import { describe, expect, it } from 'vitest';
import { addSample, buildSeries, sampleAt } from '../src/lib/statsSeries';

const MIN = 60_000;

describe('stats series', () => {
  it('keeps samples in a window, with one anchor before it', () => {
    let samples = addSample([], { t: 0, pending: 1, messagesToday: 0 }, 5 * MIN);
    samples = addSample(samples, { t: 3 * MIN, pending: 2, messagesToday: 10 }, 5 * MIN);
    samples = addSample(samples, { t: 9 * MIN, pending: 0, messagesToday: 20 }, 5 * MIN);
    expect(samples.map((s) => s.t)).toEqual([3 * MIN, 9 * MIN]);
    expect(sampleAt(samples, 5 * MIN)?.pending).toBe(2);
    expect(sampleAt(samples, MIN)).toBeNull();
  });

  it('draws the queue exactly: every change, the window start and now', () => {
    const samples = [
      { t: 0, pending: 1, messagesToday: 0 },
      { t: 12_000, pending: 2, messagesToday: 0 },
      { t: 13_000, pending: 2, messagesToday: 0 },
      { t: 14_500, pending: 0, messagesToday: 0 },
    ];
    const { queue } = buildSeries(samples, 40_000, 30_000, 10_000);
    expect(queue.map((p) => [p.t, p.value])).toEqual([
      [10_000, 1],
      [12_000, 2],
      [14_500, 0],
      [40_000, 0],
    ]);
    // Samples before the window only anchor its start; a first sample inside it starts the line.
    expect(buildSeries([{ t: 35_000, pending: 3, messagesToday: 0 }], 40_000, 30_000, 10_000).queue).toEqual([
      { t: 35_000, value: 3 },
      { t: 40_000, value: 3 },
    ]);
  });

  it('computes messages per minute over the minute before each point', () => {
    const samples = [
      { t: 0, pending: 0, messagesToday: 100 },
      { t: MIN, pending: 0, messagesToday: 130 },
      { t: 2 * MIN, pending: 0, messagesToday: 130 },
    ];
    const { rate } = buildSeries(samples, 2 * MIN, 2 * MIN, MIN);
    expect(rate.map((p) => p.value)).toEqual([30, 0]);
  });

  it('scales a rate observed over less than a minute', () => {
    const samples = [
      { t: 0, pending: 0, messagesToday: 0 },
      { t: 30_000, pending: 0, messagesToday: 5 },
    ];
    const { rate } = buildSeries(samples, 30_000, MIN, 10_000);
    expect(rate.at(-1)?.value).toBe(10);
  });

  it('survives the daily reset of the counters', () => {
    const samples = [
      { t: 0, pending: 0, messagesToday: 500 },
      { t: 30_000, pending: 0, messagesToday: 3 },
    ];
    const { rate } = buildSeries(samples, 30_000, MIN, 30_000);
    expect(rate.at(-1)?.value).toBe(6);
  });
});
