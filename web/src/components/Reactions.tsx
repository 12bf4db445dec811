// Reactions under a message: a chip per emoji with its count (mine
// highlighted; a click takes mine back or adds it), and a small picker of
// the set in lib/emoji to add one. Emoji are plain text in an emoji font
// stack, so a browser with no colour emoji font still shows them.

import { useEffect, useId, useRef, useState } from 'react';
import { REACTION_EMOJI, emojiLabel, hasColourEmoji } from '../lib/emoji';
import { reactionChips } from '../lib/reactions';
import type { Reaction } from '../lib/types';
import { SmileIcon } from './Icons';

export interface ReactionBarProps {
  reactions: Reaction[];
  me: string;
  /** Toggle: `on` adds my reaction, false takes it back. Absent: read-only. */
  onReact?: (emoji: string, on: boolean) => void;
}

export function ReactionBar({ reactions, me, onReact }: ReactionBarProps) {
  const chips = reactionChips(reactions, me);
  const [open, setOpen] = useState(false);
  // Upwards unless the scrolling list has no room above the button.
  const [below, setBelow] = useState(false);
  // Without a colour emoji font a character may draw as a box: its words go with it.
  const [plain] = useState(() => !hasColourEmoji());
  const popId = useId();
  const wrap = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (!open) return undefined;
    const onDown = (event: MouseEvent) => {
      if (wrap.current && !wrap.current.contains(event.target as Node)) setOpen(false);
    };
    const onKey = (event: KeyboardEvent) => {
      if (event.key === 'Escape') setOpen(false);
    };
    document.addEventListener('mousedown', onDown);
    document.addEventListener('keydown', onKey);
    return () => {
      document.removeEventListener('mousedown', onDown);
      document.removeEventListener('keydown', onKey);
    };
  }, [open]);

  if (chips.length === 0 && !onReact) return null;
  return (
    <div className="reactions" ref={wrap} data-testid="reactions">
      {chips.map((chip) => (
        <button
          key={chip.emoji}
          type="button"
          className={`reaction-chip ${chip.mine ? 'is-mine' : ''}`}
          data-testid="reaction-chip"
          data-emoji={chip.emoji}
          data-count={chip.count}
          data-mine={chip.mine ? 'true' : 'false'}
          aria-pressed={chip.mine}
          aria-label={`${emojiLabel(chip.emoji)}: ${chip.count}${chip.mine ? ', including you' : ''}`}
          disabled={!onReact}
          onClick={() => onReact?.(chip.emoji, !chip.mine)}
        >
          <span className="emoji">{chip.emoji}</span>
          {plain && <span className="emoji-words">{emojiLabel(chip.emoji)}</span>} <span className="reaction-count">{chip.count}</span>
        </button>
      ))}
      {onReact && (
        <span className="reaction-add-wrap">
          <button
            type="button"
            className="reaction-add"
            aria-label="Add reaction"
            aria-expanded={open}
            aria-controls={open ? popId : undefined}
            onClick={(e) => {
              const button = e.currentTarget.getBoundingClientRect();
              const area = e.currentTarget.closest('.messages')?.getBoundingClientRect();
              setBelow(area ? button.top - area.top < 220 : false);
              setOpen((o) => !o);
            }}
          >
            <SmileIcon />
            <span aria-hidden="true">+</span>
          </button>
          {open && (
            <div className={`emoji-picker ${plain ? 'emoji-picker-plain' : ''} ${below ? 'emoji-picker-below' : ''}`} id={popId} role="menu" aria-label="Pick a reaction" data-testid="emoji-picker">
              {REACTION_EMOJI.map((choice) => {
                const mine = chips.some((c) => c.emoji === choice.emoji && c.mine);
                return (
                  <button
                    key={choice.emoji}
                    type="button"
                    role="menuitem"
                    className={`emoji-choice ${mine ? 'is-mine' : ''}`}
                    aria-label={choice.label}
                    title={choice.label}
                    data-emoji={choice.emoji}
                    onClick={() => {
                      setOpen(false);
                      onReact(choice.emoji, !mine);
                    }}
                  >
                    <span className="emoji">{choice.emoji}</span>
                    {plain && <span className="emoji-words">{choice.label}</span>}
                  </button>
                );
              })}
            </div>
          )}
        </span>
      )}
    </div>
  );
}
