// The reconnection state machine with fake timers: backoff between
// attempts, giving up after the last one, manual retry, reset on success.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Reconnector, type ReconnectState } from '../src/lib/reconnect';

function setup(overrides: Partial<{ enabled: boolean; attempts: number }> = {}) {
  const connect = vi.fn();
  const states: ReconnectState[] = [];
  const reconnector = new Reconnector(
    { enabled: true, attempts: 3, delay: 1000, maxDelay: 5000, ...overrides },
    {
      connect,
      now: () => Date.now(),
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
      random: () => 1, // the ceiling: delays 1000, 2000, 4000
      onChange: (s) => states.push(s),
    },
  );
  return { reconnector, connect, states };
}

describe('Reconnector', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('connects at start and resets after success', () => {
    const { reconnector, connect } = setup();
    reconnector.start();
    expect(connect).toHaveBeenCalledTimes(1);
    expect(reconnector.current.phase).toBe('connecting');
    reconnector.connected();
    expect(reconnector.current).toMatchObject({ phase: 'connected', attempt: 0, everConnected: true });
  });

  it('waits with growing delays between attempts, then gives up', () => {
    const { reconnector, connect } = setup();
    reconnector.start();
    reconnector.connected();
    reconnector.lost();
    expect(reconnector.current).toMatchObject({ phase: 'waiting', attempt: 1 });
    expect(reconnector.current.retryAt).toBe(Date.now() + 1000);

    vi.advanceTimersByTime(999);
    expect(connect).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1);
    expect(connect).toHaveBeenCalledTimes(2);
    expect(reconnector.current.phase).toBe('connecting');

    reconnector.lost(); // attempt 2 fails to connect
    expect(reconnector.current).toMatchObject({ phase: 'waiting', attempt: 2 });
    vi.advanceTimersByTime(2000);
    expect(connect).toHaveBeenCalledTimes(3);

    reconnector.lost();
    expect(reconnector.current.attempt).toBe(3);
    vi.advanceTimersByTime(4000);
    expect(connect).toHaveBeenCalledTimes(4);

    reconnector.lost(); // out of attempts
    expect(reconnector.current).toMatchObject({ phase: 'failed', attempt: 3, retryAt: null });
    vi.advanceTimersByTime(60_000);
    expect(connect).toHaveBeenCalledTimes(4);
  });

  it('ignores repeated loss signals while already waiting', () => {
    const { reconnector, connect } = setup();
    reconnector.start();
    reconnector.lost();
    reconnector.lost();
    expect(reconnector.current.attempt).toBe(1);
    vi.advanceTimersByTime(1000);
    expect(connect).toHaveBeenCalledTimes(2);
  });

  it('a manual retry after giving up starts a fresh budget at once', () => {
    const { reconnector, connect } = setup({ attempts: 1 });
    reconnector.start();
    reconnector.lost();
    vi.advanceTimersByTime(1000);
    reconnector.lost();
    expect(reconnector.current.phase).toBe('failed');
    reconnector.retryNow();
    expect(connect).toHaveBeenCalledTimes(3);
    expect(reconnector.current).toMatchObject({ phase: 'connecting', attempt: 0 });
    reconnector.lost();
    expect(reconnector.current).toMatchObject({ phase: 'waiting', attempt: 1 });
  });

  it('retryNow while waiting skips the rest of the wait', () => {
    const { reconnector, connect } = setup();
    reconnector.start();
    reconnector.lost();
    reconnector.retryNow();
    expect(connect).toHaveBeenCalledTimes(2);
    vi.advanceTimersByTime(10_000);
    expect(connect).toHaveBeenCalledTimes(2); // the old timer is gone
  });

  it('does not retry when reconnection is disabled', () => {
    const { reconnector, connect } = setup({ enabled: false });
    reconnector.start();
    reconnector.lost();
    expect(reconnector.current.phase).toBe('failed');
    vi.advanceTimersByTime(10_000);
    expect(connect).toHaveBeenCalledTimes(1);
  });

  it('stop cancels a pending attempt', () => {
    const { reconnector, connect } = setup();
    reconnector.start();
    reconnector.lost();
    reconnector.stop();
    vi.advanceTimersByTime(10_000);
    expect(connect).toHaveBeenCalledTimes(1);
    expect(reconnector.current.phase).toBe('idle');
    reconnector.lost();
    expect(reconnector.current.phase).toBe('idle');
  });
});
