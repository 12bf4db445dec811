// Batching of `mark-delivered`: a client confirms arrivals by itself, at
// most once per session per interval, with the highest seq seen, so a
// burst of messages costs one event (the server's budget is 10 a second).
// A send the server refused for its budget, or never answered, goes again
// one interval later with whatever arrived meanwhile: an agent with many
// busy chats can spend the budget, and the ticks must not wait for the
// next message.

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
  /** `sent` before the last send: where a failed send falls back to. */
  before: number;
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
      slot = { sent: 0, before: 0, pending: 0, lastSentAt: Number.NEGATIVE_INFINITY, timer: null };
      this.slots.set(sessionId, slot);
    }
    if (seq <= slot.sent || seq <= slot.pending) return;
    slot.pending = seq;
    this.schedule(sessionId, slot);
  }

  /** The send up to `upToSeq` failed in a way worth repeating (the server's budget was spent, or no answer came): it goes again an interval after it left. A later send or a reset since then makes this a no-op. */
  failed(sessionId: string, upToSeq: number): void {
    const slot = this.slots.get(sessionId);
    if (!slot || slot.sent !== upToSeq) return;
    slot.sent = slot.before;
    if (upToSeq > slot.pending) slot.pending = upToSeq;
    this.schedule(sessionId, slot);
  }

  /** The server already holds the position up to `seq` (from a join reply): nothing below it is sent. */
  known(sessionId: string, seq: number): void {
    const slot = this.slots.get(sessionId);
    if (slot) {
      if (seq > slot.sent) slot.sent = seq;
      return;
    }
    this.slots.set(sessionId, { sent: seq, before: seq, pending: 0, lastSentAt: Number.NEGATIVE_INFINITY, timer: null });
  }

  /** After a lost connection: what was sent may not have arrived, so the next arrival is sent again. */
  reset(sessionId?: string): void {
    for (const [id, slot] of this.slots) {
      if (sessionId !== undefined && id !== sessionId) continue;
      if (slot.timer !== null) this.deps.clearTimer(slot.timer);
      this.slots.delete(id);
    }
  }

  private schedule(sessionId: string, slot: Slot): void {
    if (slot.timer !== null) return;
    const wait = slot.lastSentAt + this.interval - this.deps.now();
    if (wait <= 0) this.fire(sessionId, slot);
    else slot.timer = this.deps.setTimer(() => this.fire(sessionId, slot), wait);
  }

  private fire(sessionId: string, slot: Slot): void {
    slot.timer = null;
    if (slot.pending <= slot.sent) return;
    const upToSeq = slot.pending;
    slot.before = slot.sent;
    slot.sent = upToSeq;
    slot.pending = 0;
    slot.lastSentAt = this.deps.now();
    this.deps.send(sessionId, upToSeq);
  }
}
