// The emoji the web UI offers for reactions (docs/protocol.md names this
// file as the documented set). The server accepts any single emoji; this is
// the short list the picker shows, each with the words a screen reader says.

export interface EmojiChoice {
  emoji: string;
  label: string;
}

export const REACTION_EMOJI: readonly EmojiChoice[] = [
  { emoji: '👍', label: 'thumbs up' },
  { emoji: '👎', label: 'thumbs down' },
  { emoji: '❤️', label: 'heart' },
  { emoji: '😂', label: 'laughing' },
  { emoji: '😮', label: 'surprised' },
  { emoji: '😢', label: 'sad' },
  { emoji: '🙏', label: 'thank you' },
  { emoji: '🎉', label: 'celebrate' },
  { emoji: '✅', label: 'done' },
  { emoji: '👀', label: 'looking' },
];

/** Just the characters, in picker order. */
export const EMOJI_SET: readonly string[] = REACTION_EMOJI.map((e) => e.emoji);

/** The words for an emoji of the set, or the emoji itself for one from elsewhere. */
export function emojiLabel(emoji: string): string {
  return REACTION_EMOJI.find((e) => e.emoji === emoji)?.label ?? emoji;
}
