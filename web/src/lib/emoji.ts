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

let colourEmoji: boolean | null = null;

/**
 * Whether this browser draws emoji in colour (some font of the stack has
 * them). Without one an emoji may show as an empty box, so the screens add
 * its words. Decided once per page by drawing one on a canvas; true where
 * nothing can be measured.
 */
export function hasColourEmoji(): boolean {
  if (colourEmoji !== null) return colourEmoji;
  colourEmoji = true;
  try {
    if (typeof document === 'undefined') return colourEmoji;
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 24;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    if (!ctx) return colourEmoji;
    ctx.textBaseline = 'top';
    ctx.font = "20px 'Apple Color Emoji', 'Segoe UI Emoji', 'Noto Color Emoji', sans-serif";
    ctx.fillStyle = '#000';
    ctx.fillText('😂', 0, 0);
    const data = ctx.getImageData(0, 0, 24, 24).data;
    let coloured = false;
    for (let i = 0; i < data.length && !coloured; i += 4) {
      const [r, g, b, a] = [data[i]!, data[i + 1]!, data[i + 2]!, data[i + 3]!];
      if (a > 0 && (Math.abs(r - g) > 16 || Math.abs(g - b) > 16)) coloured = true;
    }
    colourEmoji = coloured;
  } catch {
    colourEmoji = true;
  }
  return colourEmoji;
}
