// Reactions on a message: what a click on a chip or the picker asks the
// server for, the optimistic list shown until the server's answer arrives,
// and the chips drawn from a message's list.

import type { Reaction } from './types';

/** Whether `userId` has reacted with `emoji`. */
export function hasReacted(reactions: readonly Reaction[] | undefined, emoji: string, userId: string): boolean {
  return (reactions ?? []).some((r) => r.emoji === emoji && r.userIds.includes(userId));
}

/** The `on` flag of a `react` that toggles the user's reaction. */
export function toggleOn(reactions: readonly Reaction[] | undefined, emoji: string, userId: string): boolean {
  return !hasReacted(reactions, emoji, userId);
}

/**
 * The list after the user's reaction is added (`on`) or taken back, as the
 * server would store it: an emoji keeps the place of its first use, a user
 * is listed once, an emoji nobody holds any more goes.
 */
export function applyReaction(reactions: readonly Reaction[] | undefined, emoji: string, userId: string, on: boolean): Reaction[] {
  const list = (reactions ?? []).slice();
  const index = list.findIndex((r) => r.emoji === emoji);
  if (on) {
    if (index === -1) return [...list, { emoji, count: 1, userIds: [userId] }];
    const current = list[index]!;
    if (current.userIds.includes(userId)) return list;
    list[index] = { emoji, count: current.userIds.length + 1, userIds: [...current.userIds, userId] };
    return list;
  }
  if (index === -1) return list;
  const current = list[index]!;
  if (!current.userIds.includes(userId)) return list;
  const userIds = current.userIds.filter((u) => u !== userId);
  if (userIds.length === 0) list.splice(index, 1);
  else list[index] = { emoji, count: userIds.length, userIds };
  return list;
}

export interface ReactionChip {
  emoji: string;
  count: number;
  mine: boolean;
}

/** The chips under a message, in the list's order; counts from the server (never below the names listed). */
export function reactionChips(reactions: readonly Reaction[] | undefined, me: string): ReactionChip[] {
  return (reactions ?? [])
    .filter((r) => r.count > 0 || r.userIds.length > 0)
    .map((r) => ({ emoji: r.emoji, count: Math.max(r.count, r.userIds.length), mine: r.userIds.includes(me) }));
}

/** Same emoji, counts and users in the same order. */
export function sameReactions(a: readonly Reaction[] | undefined, b: readonly Reaction[] | undefined): boolean {
  const x = a ?? [];
  const y = b ?? [];
  if (x.length !== y.length) return false;
  return x.every((r, i) => {
    const s = y[i]!;
    return r.emoji === s.emoji && r.count === s.count && r.userIds.length === s.userIds.length && r.userIds.every((u, j) => u === s.userIds[j]);
  });
}
