// The reconnection state machine, free of sockets and of React: it decides
// when to try again and when to give up, and calls `connect` at those
// moments. Timers, the clock and randomness are injected so tests can drive
// it step by step.

import { backoffDelay } from './backoff';
import type { ReconnectionConfig } from '../config/websocket.config';

export type ReconnectPhase =
  /** Not started, or stopped for good (signed out, token refused). */
  | 'idle'
  /** An attempt is under way. */
  | 'connecting'
  | 'connected'
  /** Waiting for the next attempt (`retryAt`). */
  | 'waiting'
  /** Out of attempts: only a manual retry (or the network coming back) restarts. */
  | 'failed';

export interface ReconnectState {
  phase: ReconnectPhase;
  /** Failed attempts since the last success. */
  attempt: number;
  maxAttempts: number;
  /** When the next attempt starts (ms since epoch), while waiting. */
  retryAt: number | null;
  /** True once a connection has succeeded at least once. */
  everConnected: boolean;
}

export interface ReconnectDeps {
  connect(): void;
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
  random(): number;
  onChange(state: ReconnectState): void;
}

export class Reconnector {
  private state: ReconnectState;
  private timer: unknown = null;

  constructor(
    private readonly config: ReconnectionConfig,
    private readonly deps: ReconnectDeps,
  ) {
    this.state = { phase: 'idle', attempt: 0, maxAttempts: config.attempts, retryAt: null, everConnected: false };
  }

  get current(): ReconnectState {
    return this.state;
  }

  /** First connection. */
  start(): void {
    this.clear();
    this.set({ phase: 'connecting', attempt: 0, retryAt: null });
    this.deps.connect();
  }

  /** The connection is up: forget past failures. */
  connected(): void {
    this.clear();
    this.set({ phase: 'connected', attempt: 0, retryAt: null, everConnected: true });
  }

  /** An attempt failed or a live connection dropped. */
  lost(): void {
    if (this.state.phase === 'idle' || this.state.phase === 'failed' || this.state.phase === 'waiting') return;
    this.clear();
    const attempt = this.state.attempt + 1;
    if (!this.config.enabled || attempt > this.config.attempts) {
      this.set({ phase: 'failed', attempt: attempt - 1, retryAt: null });
      return;
    }
    const wait = backoffDelay(attempt, this.config, this.deps.random);
    this.set({ phase: 'waiting', attempt, retryAt: this.deps.now() + wait });
    this.timer = this.deps.setTimer(() => {
      this.timer = null;
      if (this.state.phase !== 'waiting') return;
      this.set({ phase: 'connecting', retryAt: null });
      this.deps.connect();
    }, wait);
  }

  /** A manual retry, or a sign that the network is back: try at once, with a fresh budget. */
  retryNow(): void {
    if (this.state.phase === 'connected' || this.state.phase === 'connecting') return;
    this.clear();
    this.set({ phase: 'connecting', attempt: 0, retryAt: null });
    this.deps.connect();
  }

  /** Stop for good; no timer survives. */
  stop(): void {
    this.clear();
    this.set({ phase: 'idle', retryAt: null });
  }

  private clear(): void {
    if (this.timer !== null) {
      this.deps.clearTimer(this.timer);
      this.timer = null;
    }
  }

  private set(patch: Partial<ReconnectState>): void {
    this.state = { ...this.state, ...patch };
    this.deps.onChange(this.state);
  }
}
