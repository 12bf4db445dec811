// The outbox: order, one message in flight per session, requeue on
// disconnect, reconciliation with stored messages by clientMsgId.

import { describe, expect, it } from 'vitest';
import * as outbox from '../src/lib/outbox';
import { message } from './fixtures';

const entry = (id: string, sessionId = 's1', at = 0) => outbox.newEntry(sessionId, `text ${id}`, id, at);

describe('outbox', () => {
  it('queues entries once each, in the order written', () => {
    let box = outbox.enqueue([], entry('a'));
    box = outbox.enqueue(box, entry('b'));
    box = outbox.enqueue(box, entry('a'));
    expect(box.map((e) => e.clientMsgId)).toEqual(['a', 'b']);
    expect(box.every((e) => e.state === 'queued')).toBe(true);
  });

  it('sends one at a time per session, oldest first', () => {
    let box = [entry('a'), entry('b'), entry('x', 's2')];
    expect(outbox.nextToSend(box, 's1')?.clientMsgId).toBe('a');
    box = outbox.markSending(box, 'a');
    expect(outbox.nextToSend(box, 's1')).toBeNull();
    expect(outbox.nextToSend(box, 's2')?.clientMsgId).toBe('x');
    box = outbox.remove(box, 'a');
    expect(outbox.nextToSend(box, 's1')?.clientMsgId).toBe('b');
  });

  it('skips failed entries without blocking the ones behind them', () => {
    let box = [entry('a'), entry('b')];
    box = outbox.markFailed(box, 'a', { code: 'invalid_payload', message: 'no' });
    expect(outbox.nextToSend(box, 's1')?.clientMsgId).toBe('b');
  });

  it('puts in-flight entries back in line on disconnect, keeping their clientMsgId', () => {
    let box = [entry('a'), entry('b')];
    box = outbox.markSending(box, 'a');
    box = outbox.requeueInFlight(box);
    expect(box.map((e) => [e.clientMsgId, e.state])).toEqual([
      ['a', 'queued'],
      ['b', 'queued'],
    ]);
    expect(box[0]!.attempts).toBe(1);
    const unchanged = outbox.requeueInFlight(box);
    expect(unchanged).toBe(box);
  });

  it('drops entries the server stored, matched by my clientMsgId only', () => {
    const box = [entry('a'), entry('b')];
    const mine = message(7, { senderId: 'me', clientMsgId: 'a' });
    const someoneElse = message(8, { senderId: 'other', clientMsgId: 'b' });
    const left = outbox.reconcile(box, [mine, someoneElse], 'me');
    expect(left.map((e) => e.clientMsgId)).toEqual(['b']);
  });

  it('tells retryable errors from final ones', () => {
    expect(outbox.isRetryable('rate_limited')).toBe(true);
    expect(outbox.isRetryable('unavailable')).toBe(true);
    expect(outbox.isRetryable('timeout')).toBe(true);
    expect(outbox.isRetryable('session_closed')).toBe(false);
    expect(outbox.isRetryable('invalid_payload')).toBe(false);
  });
});
