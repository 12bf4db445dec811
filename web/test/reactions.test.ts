// Reactions: toggling mine on and off as the server stores them (an emoji
// keeps its first place, a user counts once, an emoji nobody holds goes),
// the chips drawn from a list, and the reducer applying a message's new list.

import { describe, expect, it } from 'vitest';
import { EMOJI_SET, REACTION_EMOJI, emojiLabel } from '../src/lib/emoji';
import { applyReaction, reactionChips, toggleOn } from '../src/lib/reactions';
import { initialSessionState, sessionReducer, timeline } from '../src/lib/sessionState';
import type { Reaction } from '../src/lib/types';
import { message, session } from './fixtures';

describe('applyReaction', () => {
  it('adds a new emoji at the end and a second user after the first', () => {
    let list: Reaction[] = [];
    list = applyReaction(list, '👍', 'ana', true);
    list = applyReaction(list, '🎉', 'cust', true);
    list = applyReaction(list, '👍', 'cust', true);
    expect(list).toEqual([
      { emoji: '👍', count: 2, userIds: ['ana', 'cust'] },
      { emoji: '🎉', count: 1, userIds: ['cust'] },
    ]);
  });

  it('changes nothing when reacting twice or taking back what was never given', () => {
    const list: Reaction[] = [{ emoji: '👍', count: 1, userIds: ['ana'] }];
    expect(applyReaction(list, '👍', 'ana', true)).toEqual(list);
    expect(applyReaction(list, '👍', 'cust', false)).toEqual(list);
    expect(applyReaction(list, '❤️', 'cust', false)).toEqual(list);
  });

  it('takes a reaction back and drops an emoji nobody holds', () => {
    const list: Reaction[] = [
      { emoji: '👍', count: 2, userIds: ['ana', 'cust'] },
      { emoji: '🎉', count: 1, userIds: ['cust'] },
    ];
    expect(applyReaction(list, '👍', 'ana', false)).toEqual([
      { emoji: '👍', count: 1, userIds: ['cust'] },
      { emoji: '🎉', count: 1, userIds: ['cust'] },
    ]);
    expect(applyReaction(list, '🎉', 'cust', false)).toEqual([{ emoji: '👍', count: 2, userIds: ['ana', 'cust'] }]);
  });
});

describe('chips and toggling', () => {
  it('marks mine, keeps the order and says which way a click goes', () => {
    const list: Reaction[] = [
      { emoji: '😂', count: 3, userIds: ['a', 'b', 'me'] },
      { emoji: '👀', count: 1, userIds: ['a'] },
    ];
    expect(reactionChips(list, 'me')).toEqual([
      { emoji: '😂', count: 3, mine: true },
      { emoji: '👀', count: 1, mine: false },
    ]);
    expect(toggleOn(list, '😂', 'me')).toBe(false);
    expect(toggleOn(list, '👀', 'me')).toBe(true);
    expect(toggleOn(undefined, '👍', 'me')).toBe(true);
  });

  it('offers a set of distinct emoji with words for each', () => {
    expect(EMOJI_SET.length).toBeGreaterThanOrEqual(6);
    expect(new Set(EMOJI_SET).size).toBe(EMOJI_SET.length);
    for (const choice of REACTION_EMOJI) expect(emojiLabel(choice.emoji)).toBe(choice.label);
    expect(emojiLabel('🦀')).toBe('🦀');
  });
});

describe('reactions in the session state', () => {
  it('replaces a message’s list from message-reactions, and from a newer copy of a known message', () => {
    let state = initialSessionState('s1', 'cust');
    state = sessionReducer(state, { type: 'joined', payload: { session: session({ lastSeq: 2 }), messages: [message(1), message(2)], hasMore: false, readPositions: [] } });
    state = sessionReducer(state, { type: 'reactions', seq: 2, reactions: [{ emoji: '👍', count: 1, userIds: ['ana'] }] });
    expect(timeline(state, 'Carla', 'customer')[1]!.reactions).toEqual([{ emoji: '👍', count: 1, userIds: ['ana'] }]);
    const same = sessionReducer(state, { type: 'reactions', seq: 2, reactions: [{ emoji: '👍', count: 1, userIds: ['ana'] }] });
    expect(same).toBe(state);
    // A rejoin brings message 1 again with reactions made while away.
    state = sessionReducer(state, { type: 'messages', messages: [message(1, { reactions: [{ emoji: '🎉', count: 1, userIds: ['ana'] }] })] });
    expect(state.messages[0]!.reactions).toEqual([{ emoji: '🎉', count: 1, userIds: ['ana'] }]);
    expect(sessionReducer(state, { type: 'reactions', seq: 9, reactions: [] })).toBe(state);
  });
});
