// Batching of `mark-delivered`: a client confirms arrivals by itself, at
// most once per session per interval, with the highest seq seen, so a
// burst of messages costs one event (the server's budget is 10 a second).

export const DELIVERY_BATCH_MS = 500;

export interface DeliveryBatcherDeps {
  send: (sessionId: string, upToSeq: number) => void;
  now: () => number;
  setTimer: (fn: () => void, ms: number) => unknown;
  clearTimer: (handle: unknown) => void;
  intervalMs?: number;
}

interface Slot {
  /** Highest seq sent so far. */
  sent: number;
  /** Highest seq seen and not yet sent. */
  pending: number;
  lastSentAt: number;
  timer: unknown;
}

export class DeliveryBatcher {
  private readonly slots = new Map<string, Slot>();
  private readonly interval: number;

  constructor(private readonly deps: DeliveryBatcherDeps) {
    this.interval = deps.intervalMs ?? DELIVERY_BATCH_MS;
  }

  /** A message numbered `seq` from someone else arrived in `sessionId`. */
  arrived(sessionId: string, seq: number): void {
    let slot = this.slots.get(sessionId);
    if (!slot) {
      slot = { sent: 0, pending: 0, lastSentAt: Number.NEGATIVE_INFINITY, timer: null };
      this.slots.set(sessionId, slot);
    }
    if (seq <= slot.sent || seq <= slot.pending) return;
    slot.pending = seq;
    if (slot.timer !== null) return;
    const wait = slot.lastSentAt + this.interval - this.deps.now();
    if (wait <= 0) this.fire(sessionId, slot);
    else slot.timer = this.deps.setTimer(() => this.fire(sessionId, slot), wait);
  }

  /** The server already holds the position up to `seq` (from a join reply): nothing below it is sent. */
  known(sessionId: string, seq: number): void {
    const slot = this.slots.get(sessionId);
    if (slot) {
      if (seq > slot.sent) slot.sent = seq;
      return;
    }
    this.slots.set(sessionId, { sent: seq, pending: 0, lastSentAt: Number.NEGATIVE_INFINITY, timer: null });
  }

  /** After a lost connection: what was sent may not have arrived, so the next arrival is sent again. */
  reset(sessionId?: string): void {
    for (const [id, slot] of this.slots) {
      if (sessionId !== undefined && id !== sessionId) continue;
      if (slot.timer !== null) this.deps.clearTimer(slot.timer);
      this.slots.delete(id);
    }
  }

  private fire(sessionId: string, slot: Slot): void {
    slot.timer = null;
    if (slot.pending <= slot.sent) return;
    const upToSeq = slot.pending;
    slot.sent = upToSeq;
    slot.pending = 0;
    slot.lastSentAt = this.deps.now();
    this.deps.send(sessionId, upToSeq);
  }
}
