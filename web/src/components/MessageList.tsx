// The conversation's messages: bubbles grouped by sender, each of mine with
// its state (waiting, sending, sent, read, not sent), the session's system
// entries between them (assigned, transferred, returned, closed), links in
// message text made clickable, auto-scrolling to the newest message unless
// the reader has scrolled up to read older ones.

import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';
import type { ChatItem, ItemState } from '../lib/sessionState';
import { timeOfDay } from '../lib/format';
import { splitLinks } from '../lib/links';
import { describeEvent, mergeTimeline, type EventNames } from '../lib/timeline';
import type { Tick } from '../lib/ticks';
import type { SessionEvent } from '../lib/types';
import { AttachmentList } from './AttachmentView';
import { LockIcon } from './Icons';
import { ReactionBar } from './Reactions';

const STATE_TEXT: Record<ItemState, string> = {
  queued: 'Waiting for connection',
  sending: 'Sending…',
  sent: 'Sent',
  read: 'Read',
  failed: 'Not sent',
  received: '',
};

function StateMark({ state }: { state: ItemState }) {
  const icon = state === 'read' ? '✓✓' : state === 'sent' ? '✓' : state === 'failed' ? '!' : '◷';
  return (
    <span className={`msg-state msg-state-${state}`} data-testid="message-state">
      <span aria-hidden="true" className="msg-state-icon">
        {icon}
      </span>{' '}
      {STATE_TEXT[state]}
    </span>
  );
}

const TICK_TEXT: Record<Tick, string> = { sent: 'sent', delivered: 'delivered', read: 'read' };

/** ✓ stored, grey ✓✓ arrived at someone else's screen, coloured ✓✓ read by someone else. */
function TickMark({ tick }: { tick: Tick }) {
  return (
    <span className={`msg-tick msg-tick-${tick}`} data-testid="message-tick" data-tick={tick} role="img" aria-label={TICK_TEXT[tick]} title={TICK_TEXT[tick]}>
      {tick === 'sent' ? '✓' : '✓✓'}
    </span>
  );
}

/** Message text as React text nodes, with http(s) addresses as links opening elsewhere. */
export function MessageText({ text }: { text: string }) {
  const parts = useMemo(() => splitLinks(text), [text]);
  return (
    <>
      {parts.map((part, i) =>
        part.type === 'link' ? (
          <a key={i} href={part.href} target="_blank" rel="noopener noreferrer nofollow">
            {part.text}
          </a>
        ) : (
          part.text
        ),
      )}
    </>
  );
}

export interface MessageListProps {
  items: ChatItem[];
  onRetry: (clientMsgId: string) => void;
  onDiscard: (clientMsgId: string) => void;
  hasEarlier: boolean;
  onLoadEarlier: () => Promise<void>;
  empty?: string;
  /** Label of the other side's role for screen readers ("Agent", "Customer"). */
  roleLabel: (role: ChatItem['senderRole']) => string;
  /** The session's system entries, placed by their afterSeq. */
  events?: SessionEvent[];
  /** Names for the entries' "by" (who did it). */
  names?: EventNames;
  /** The viewer is an agent or admin: other agents' messages are marked as such. */
  staffView?: boolean;
  /** Internal notes (staff only), placed by their afterSeq. */
  notes?: ChatItem[];
  /** The signed-in user (whose reactions are highlighted). */
  me?: string;
  /** Toggle my reaction on message `seq`; absent where the user may not react. */
  onReact?: (seq: number, emoji: string, on: boolean) => void;
}

const NO_NOTES: ChatItem[] = [];

const NO_EVENTS: SessionEvent[] = [];
const NO_NAMES: EventNames = { me: '', nameOf: () => null };

export function MessageList({
  items,
  onRetry,
  onDiscard,
  hasEarlier,
  onLoadEarlier,
  empty,
  roleLabel,
  events = NO_EVENTS,
  names = NO_NAMES,
  staffView = false,
  notes = NO_NOTES,
  me = '',
  onReact,
}: MessageListProps) {
  // The widget never shows a note, whatever reached it.
  const shownNotes = staffView ? notes : NO_NOTES;
  const shownItems = useMemo(() => (staffView ? items : items.filter((i) => !i.internal)), [items, staffView]);
  const rows = useMemo(() => mergeTimeline(shownItems, events, shownNotes), [shownItems, events, shownNotes]);
  const scroller = useRef<HTMLDivElement>(null);
  const nearBottom = useRef(true);
  const lastKey = useRef<string | null>(null);
  const [unseenBelow, setUnseenBelow] = useState(false);
  const [loadingEarlier, setLoadingEarlier] = useState(false);

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    nearBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    if (nearBottom.current) setUnseenBelow(false);
  };

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const last = rows[rows.length - 1];
    const newLast = last && last.key !== lastKey.current;
    const firstRender = lastKey.current === null;
    lastKey.current = last?.key ?? null;
    if (!newLast) return;
    if (firstRender || nearBottom.current || (last.type === 'message' && last.item.mine)) {
      el.scrollTop = el.scrollHeight;
      nearBottom.current = true;
      setUnseenBelow(false);
    } else {
      setUnseenBelow(true);
    }
  }, [rows]);

  // Keep the newest message in view when the area is resized (keyboard on phones, window size).
  useEffect(() => {
    const el = scroller.current;
    if (!el || typeof ResizeObserver === 'undefined') return undefined;
    const observer = new ResizeObserver(() => {
      if (nearBottom.current) el.scrollTop = el.scrollHeight;
    });
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  const jumpDown = () => {
    const el = scroller.current;
    if (el) el.scrollTop = el.scrollHeight;
    setUnseenBelow(false);
  };

  return (
    <div className="messages-wrap">
      <div className="messages" ref={scroller} onScroll={onScroll} role="log" aria-label="Messages" aria-live="polite" tabIndex={0}>
        {hasEarlier && (
          <div className="earlier">
            <button
              type="button"
              className="btn btn-ghost btn-small"
              disabled={loadingEarlier}
              onClick={() => {
                setLoadingEarlier(true);
                void onLoadEarlier().finally(() => setLoadingEarlier(false));
              }}
            >
              {loadingEarlier ? 'Loading…' : 'Show earlier messages'}
            </button>
          </div>
        )}
        {shownItems.length === 0 && empty && <p className="messages-empty">{empty}</p>}
        <ol className="message-items">
          {rows.map((row, index) => {
            if (row.type === 'event') {
              return (
                <li key={row.key} className="timeline-event" data-testid="session-event" data-kind={row.event.kind} data-after-seq={row.event.afterSeq}>
                  <span>
                    {describeEvent(row.event, names)} · <time dateTime={row.event.at}>{timeOfDay(row.event.at)}</time>
                  </span>
                </li>
              );
            }
            if (row.type === 'note') {
              const note = row.item;
              return (
                <li
                  key={row.key}
                  className={`note ${note.seq === null ? 'note-pending' : ''}`}
                  data-testid="note"
                  data-after-seq={note.afterSeq ?? ''}
                  data-state={note.state}
                  data-mine={note.mine ? 'true' : 'false'}
                >
                  <p className="note-label">
                    <LockIcon /> Internal note — only staff see this
                  </p>
                  <p className="note-meta">
                    {note.mine ? 'You' : note.senderName} · <time dateTime={note.createdAt}>{timeOfDay(note.createdAt)}</time>
                    {note.seq === null && note.state !== 'failed' ? ' · sending…' : ''}
                  </p>
                  <div className="note-body">
                    <MessageText text={note.content} />
                  </div>
                  <AttachmentList attachments={note.attachments} pending={note.seq === null} />
                  {note.state === 'failed' && note.clientMsgId && (
                    <div className="msg-error" role="alert">
                      <span>{note.error?.message ?? 'The note was not saved.'}</span>
                      <button type="button" className="link" onClick={() => onRetry(note.clientMsgId!)}>
                        Retry
                      </button>
                      <button type="button" className="link" onClick={() => onDiscard(note.clientMsgId!)}>
                        Delete
                      </button>
                    </div>
                  )}
                </li>
              );
            }
            const item = row.item;
            const previousRow = rows[index - 1];
            const previous = previousRow?.type === 'message' ? previousRow.item : undefined;
            const firstOfRun = !previous || previous.senderId !== item.senderId;
            const otherAgent = staffView && !item.mine && (item.senderRole === 'agent' || item.senderRole === 'admin');
            return (
              <li
                key={item.key}
                className={`msg ${item.mine ? 'msg-mine' : 'msg-theirs'} ${otherAgent ? 'msg-other-agent' : ''} ${firstOfRun ? 'msg-first' : ''}`}
                data-sender={item.mine ? 'me' : otherAgent ? 'other-agent' : item.senderRole ?? ''}
                data-testid="message"
                data-state={item.state}
                data-seq={item.seq ?? ''}
                data-mine={item.mine ? 'true' : 'false'}
              >
                {firstOfRun && !item.mine && (
                  <span className="msg-sender">
                    {item.senderName}
                    <span className="visually-hidden"> ({roleLabel(item.senderRole)})</span>
                  </span>
                )}
                {item.mine && <span className="visually-hidden">You: </span>}
                {(item.content || item.attachments.length === 0) && (
                  <div className="bubble">
                    <MessageText text={item.content} />
                  </div>
                )}
                <AttachmentList attachments={item.attachments} pending={item.seq === null} />
                {item.seq !== null && (item.reactions.length > 0 || onReact) && (
                  <ReactionBar reactions={item.reactions} me={me} {...(onReact ? { onReact: (emoji: string, on: boolean) => onReact(item.seq!, emoji, on) } : {})} />
                )}
                <div className="msg-meta">
                  <time dateTime={item.createdAt}>{timeOfDay(item.createdAt)}</time>
                  {item.mine && (item.tick ? <TickMark tick={item.tick} /> : <StateMark state={item.state} />)}
                </div>
                {item.state === 'failed' && item.clientMsgId && (
                  <div className="msg-error" role="alert">
                    <span>{item.error?.message ?? 'The message was not sent.'}</span>
                    <button type="button" className="link" onClick={() => onRetry(item.clientMsgId!)}>
                      Retry
                    </button>
                    <button type="button" className="link" onClick={() => onDiscard(item.clientMsgId!)}>
                      Delete
                    </button>
                  </div>
                )}
              </li>
            );
          })}
        </ol>
      </div>
      {unseenBelow && (
        <button type="button" className="jump-down" onClick={jumpDown}>
          New messages ↓
        </button>
      )}
    </div>
  );
}
