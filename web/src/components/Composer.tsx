// The message box: Enter sends, Shift+Enter starts a new line; typing is
// signalled while the user writes (refreshed every couple of seconds, ended
// after the configured silence, on send and on leaving the box).

import { useEffect, useId, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import websocketConfig from '../config/websocket.config';
import { MAX_CONTENT_CHARS } from '../lib/types';

/** How often a continuing typist re-announces itself (the server forgets after 5 s). */
const TYPING_REFRESH_MS = 2500;

export interface ComposerProps {
  onSend: (content: string) => void;
  onTyping: (isTyping: boolean) => void;
  disabled?: boolean;
  placeholder?: string;
  /** A note under the box (for example that messages wait for the connection). */
  hint?: string | null;
  /** Take the focus when shown (after taking a chat). */
  autoFocus?: boolean;
}

export function Composer({ onSend, onTyping, disabled, placeholder = 'Write a message…', hint, autoFocus = false }: ComposerProps) {
  const [text, setText] = useState('');
  const box = useRef<HTMLTextAreaElement>(null);
  const typing = useRef(false);
  const lastSignal = useRef(0);
  const idleTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const hintId = useId();
  const length = [...text.trim()].length;
  const tooLong = length > MAX_CONTENT_CHARS;

  const stopTyping = (signal: boolean) => {
    if (idleTimer.current) clearTimeout(idleTimer.current);
    idleTimer.current = null;
    if (typing.current && signal) onTyping(false);
    typing.current = false;
  };

  useEffect(() => () => stopTyping(true), []); // eslint-disable-line react-hooks/exhaustive-deps

  useEffect(() => {
    if (autoFocus) box.current?.focus();
  }, [autoFocus]);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 160)}px`;
  }, [text]);

  const changed = (value: string) => {
    setText(value);
    if (!value.trim()) {
      stopTyping(true);
      return;
    }
    const now = Date.now();
    if (!typing.current || now - lastSignal.current > TYPING_REFRESH_MS) {
      onTyping(true);
      typing.current = true;
      lastSignal.current = now;
    }
    if (idleTimer.current) clearTimeout(idleTimer.current);
    idleTimer.current = setTimeout(() => stopTyping(true), websocketConfig.timeouts.typing);
  };

  const send = (event?: FormEvent) => {
    event?.preventDefault();
    const content = text.trim();
    if (!content || tooLong || disabled) return;
    onSend(content);
    // The server ends the typing signal itself when a message is sent.
    stopTyping(false);
    setText('');
    box.current?.focus();
  };

  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      send();
    }
  };

  return (
    <form className="composer" onSubmit={send}>
      <label className="visually-hidden" htmlFor={`${hintId}-box`}>
        Message
      </label>
      <textarea
        id={`${hintId}-box`}
        ref={box}
        rows={1}
        value={text}
        placeholder={placeholder}
        disabled={disabled}
        aria-describedby={hintId}
        aria-invalid={tooLong || undefined}
        onChange={(e) => changed(e.target.value)}
        onKeyDown={onKeyDown}
        onBlur={() => stopTyping(true)}
      />
      <button type="submit" className="btn btn-primary" disabled={disabled || !text.trim() || tooLong}>
        Send
      </button>
      <p id={hintId} className={`composer-hint ${tooLong ? 'error-text' : ''}`}>
        {tooLong
          ? `Too long: ${length} of ${MAX_CONTENT_CHARS} characters.`
          : (hint ?? 'Enter to send, Shift+Enter for a new line.')}
      </p>
    </form>
  );
}
