// The dashboard's recent history: samples of the pool's Stats over time and
// the two series the chart draws (queue length, messages per minute).

import type { Stats } from './types';

export interface StatsSample {
  /** When the figures were current (ms since epoch). */
  t: number;
  pending: number;
  messagesToday: number;
}

export interface Point {
  t: number;
  value: number;
}

export function sampleOf(stats: Stats, t: number): StatsSample {
  return { t, pending: stats.pendingSessions, messagesToday: stats.messagesToday };
}

/** Adds a sample (kept in time order) and forgets those older than `keepMs` before it, keeping one to anchor the window. */
export function addSample(samples: readonly StatsSample[], sample: StatsSample, keepMs: number): StatsSample[] {
  const next = samples.filter((s) => s.t <= sample.t);
  next.push(sample);
  const horizon = sample.t - keepMs;
  let firstKept = 0;
  while (firstKept + 1 < next.length && next[firstKept + 1]!.t <= horizon) firstKept++;
  return next.slice(firstKept);
}

/** The sample in force at `t` (the last one at or before it), if any. */
export function sampleAt(samples: readonly StatsSample[], t: number): StatsSample | null {
  let found: StatsSample | null = null;
  for (const s of samples) {
    if (s.t > t) break;
    found = s;
  }
  return found;
}

const MINUTE = 60_000;

/**
 * The two series over the last `windowMs` up to `now`. The queue length is
 * exact: one point per change (drawn as steps), plus the window's start and
 * `now`. The message rate (per minute) is taken every `stepMs` over the
 * minute before each point, or over the time observed when that is shorter
 * (at least one step).
 */
export function buildSeries(
  samples: readonly StatsSample[],
  now: number,
  windowMs: number,
  stepMs: number,
): { queue: Point[]; rate: Point[] } {
  const queue: Point[] = [];
  const rate: Point[] = [];
  if (samples.length === 0) return { queue, rate };
  const first = samples[0]!;
  const start = now - windowMs;

  const anchor = sampleAt(samples, start);
  if (anchor) queue.push({ t: start, value: anchor.pending });
  for (const sample of samples) {
    if (sample.t <= start || sample.t > now) continue;
    const previous = queue[queue.length - 1];
    if (previous && previous.value === sample.pending) continue;
    queue.push({ t: sample.t, value: sample.pending });
  }
  const current = sampleAt(samples, now);
  if (current && queue.length && queue[queue.length - 1]!.t !== now) queue.push({ t: now, value: current.pending });

  const times: number[] = [];
  for (let t = Math.ceil(start / stepMs) * stepMs; t <= now; t += stepMs) times.push(t);
  if (times[times.length - 1] !== now) times.push(now);
  for (const t of times) {
    const at = sampleAt(samples, t);
    if (!at) continue;
    const fromT = Math.max(first.t, t - MINUTE);
    const span = t - fromT;
    if (span < stepMs) continue;
    const before = sampleAt(samples, fromT) ?? first;
    const delta = at.messagesToday - before.messagesToday;
    // Counters restart at midnight UTC: count what is known since then.
    const messages = delta >= 0 ? delta : at.messagesToday;
    rate.push({ t, value: (messages * MINUTE) / span });
  }
  return { queue, rate };
}
