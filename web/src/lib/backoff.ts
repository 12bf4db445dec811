// Reconnection delays: exponential backoff capped at a maximum, with
// "equal jitter" (half the delay fixed, half random) so that many clients
// dropped by one server restart do not all come back in the same instant.

export interface BackoffSettings {
  /** Delay before the first attempt (ms). */
  delay: number;
  /** Cap on any delay (ms). */
  maxDelay: number;
}

/** The ceiling for attempt `attempt` (1-based): delay · 2^(attempt-1), capped. */
export function backoffCeiling(attempt: number, settings: BackoffSettings): number {
  const n = Math.max(1, Math.floor(attempt));
  const raw = settings.delay * 2 ** Math.min(n - 1, 30);
  return Math.min(settings.maxDelay, raw);
}

/**
 * The wait before attempt `attempt` (1-based): between half the ceiling and
 * the ceiling, `random` (0 ≤ r < 1) choosing where.
 */
export function backoffDelay(attempt: number, settings: BackoffSettings, random: () => number = Math.random): number {
  const ceiling = backoffCeiling(attempt, settings);
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(ceiling / 2 + (ceiling / 2) * r);
}
