// The message box: Enter sends, Shift+Enter starts a new line; typing is
// signalled while the user writes (refreshed every couple of seconds, ended
// after the configured silence, on send and on leaving the box). Files
// picked with the attach button (or dropped on the conversation) upload at
// once with a progress bar and go with the message; staff may switch the box
// to an internal note.

import { useEffect, useId, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import websocketConfig from '../config/websocket.config';
import type { UseUploadsResult } from '../chat/useUploads';
import { fileSize, percent } from '../lib/upload';
import { PaperclipIcon } from './Icons';
import { MAX_CONTENT_CHARS } from '../lib/types';

/** How often a continuing typist re-announces itself (the server forgets after 5 s). */
const TYPING_REFRESH_MS = 2500;

export interface ComposerProps {
  /** `internal`: the box was switched to an internal note. */
  onSend: (content: string, internal: boolean) => void;
  /** The files for the next message; no attach button without it. */
  uploads?: UseUploadsResult;
  /** Offer the "Internal note" switch (staff). */
  allowNotes?: boolean;
  onTyping: (isTyping: boolean) => void;
  disabled?: boolean;
  placeholder?: string;
  /** A note under the box (for example that messages wait for the connection). */
  hint?: string | null;
  /** Take the focus when shown (after taking a chat). */
  autoFocus?: boolean;
}

export function Composer({ onSend, onTyping, uploads, allowNotes = false, disabled, placeholder = 'Write a message…', hint, autoFocus = false }: ComposerProps) {
  const [text, setText] = useState('');
  const [internal, setInternal] = useState(false);
  const picker = useRef<HTMLInputElement>(null);
  const files = uploads?.items ?? [];
  const readyCount = files.filter((f) => f.phase === 'done').length;
  const uploading = uploads?.busy ?? false;
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
    if ((!content && readyCount === 0) || tooLong || disabled || uploading) return;
    onSend(content, internal);
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

  const canSend = !disabled && !tooLong && !uploading && (text.trim().length > 0 || readyCount > 0);
  const notePlaceholder = 'Write an internal note (only staff see it)…';

  return (
    <form className={`composer ${uploads ? 'composer-with-files' : ''} ${internal ? 'composer-note' : ''}`} onSubmit={send} data-testid="composer">
      {(allowNotes || files.length > 0) && (
        <div className="composer-extras">
          {allowNotes && (
            <label className="note-toggle">
              <input type="checkbox" checked={internal} onChange={(e) => setInternal(e.target.checked)} data-testid="note-toggle" />
              Internal note
            </label>
          )}
          {files.length > 0 && (
            <ul className="uploads" aria-label="Files to send" data-testid="uploads">
              {files.map((f) => (
                <li key={f.key} className={`upload upload-${f.phase}`} data-testid="upload" data-phase={f.phase} data-progress={percent(f)}>
                  <span className="upload-name">
                    {f.name} <span className="muted small">({fileSize(f.size)})</span>
                  </span>
                  {f.phase === 'uploading' && (
                    <progress max={100} value={percent(f)} aria-label={`Uploading ${f.name}`} data-testid="upload-progress">
                      {percent(f)}%
                    </progress>
                  )}
                  {f.phase === 'done' && <span className="upload-ok">Ready</span>}
                  {f.phase === 'failed' && (
                    <span className="upload-error" role="alert" data-testid="upload-error">
                      {f.error}
                    </span>
                  )}
                  <button type="button" className="link" onClick={() => uploads?.remove(f.key)} aria-label={`${f.phase === 'uploading' ? 'Cancel' : 'Remove'} ${f.name}`}>
                    {f.phase === 'uploading' ? 'Cancel' : 'Remove'}
                  </button>
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
      {uploads && (
        <>
          <input
            ref={picker}
            type="file"
            multiple
            hidden
            data-testid="file-input"
            onChange={(e) => {
              if (e.target.files?.length) uploads.add(e.target.files);
              e.target.value = '';
            }}
          />
          <button type="button" className="btn attach-btn" aria-label="Attach files" title="Attach files" disabled={disabled} onClick={() => picker.current?.click()}>
            <PaperclipIcon size={18} />
          </button>
        </>
      )}
      <label className="visually-hidden" htmlFor={`${hintId}-box`}>
        Message
      </label>
      <textarea
        id={`${hintId}-box`}
        ref={box}
        rows={1}
        value={text}
        placeholder={internal ? notePlaceholder : placeholder}
        disabled={disabled}
        aria-describedby={hintId}
        aria-invalid={tooLong || undefined}
        onChange={(e) => changed(e.target.value)}
        onKeyDown={onKeyDown}
        onBlur={() => stopTyping(true)}
      />
      <button type="submit" className={`btn ${internal ? 'btn-note' : 'btn-primary'}`} disabled={!canSend}>
        {internal ? 'Add note' : 'Send'}
      </button>
      <p id={hintId} className={`composer-hint ${tooLong ? 'error-text' : ''}`}>
        {tooLong
          ? `Too long: ${length} of ${MAX_CONTENT_CHARS} characters.`
          : uploading
            ? 'Uploading… the message can be sent once the files are up.'
            : (hint ?? 'Enter to send, Shift+Enter for a new line.')}
      </p>
    </form>
  );
}
