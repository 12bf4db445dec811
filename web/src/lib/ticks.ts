// The ticks on one's own messages: sent (stored), delivered (someone
// else's client confirmed it arrived, or read it) and read (someone else
// read it), from the session's read and delivery positions.

import type { ReadPosition } from './types';

export type Tick = 'sent' | 'delivered' | 'read';

/** The furthest position held by anyone but `me`. */
export function othersSeq(positions: readonly ReadPosition[], me: string): number {
  let seq = 0;
  for (const p of positions) if (p.userId !== me && p.upToSeq > seq) seq = p.upToSeq;
  return seq;
}

export interface TickPositions {
  /** How far others have read. */
  read: number;
  /** How far others' clients have confirmed delivery. */
  delivered: number;
}

export function tickPositions(readPositions: readonly ReadPosition[], deliveryPositions: readonly ReadPosition[], me: string): TickPositions {
  return { read: othersSeq(readPositions, me), delivered: othersSeq(deliveryPositions, me) };
}

/** The tick of a stored message of mine numbered `seq`: a read counts as delivered too. */
export function tickFor(seq: number, positions: TickPositions): Tick {
  if (positions.read >= seq) return 'read';
  if (positions.delivered >= seq) return 'delivered';
  return 'sent';
}
