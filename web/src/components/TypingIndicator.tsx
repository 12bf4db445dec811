// "Alice is typing…" under the conversation, announced politely to screen readers.

import type { TypingUser } from '../lib/sessionState';

export function TypingIndicator({ users }: { users: TypingUser[] }) {
  const names = users.map((u) => u.name);
  const text =
    names.length === 0 ? '' : names.length === 1 ? `${names[0]} is typing…` : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]} are typing…`;
  return (
    <div className="typing" aria-live="polite" data-testid="typing-indicator">
      {text && (
        <>
          <span className="typing-dots" aria-hidden="true">
            <span />
            <span />
            <span />
          </span>
          <span>{text}</span>
        </>
      )}
    </div>
  );
}
