// One conversation on screen: the messages, who is typing, and the message
// box (or what replaces it: a closed notice, a "take this chat" bar). While
// it is on screen and the page is visible it marks incoming messages read
// and tells the notifications not to announce them. Files dropped on it are
// attached to the next message; those who may write may react.

import { useCallback, useEffect, useMemo, useState, type DragEvent, type ReactNode } from 'react';
import { useChatClient } from '../chat/ChatContext';
import type { UseChatSocketResult } from '../chat/useChatSocket';
import { useUploads } from '../chat/useUploads';
import { usePageVisible } from '../lib/hooks';
import { namesFrom, type EventNames } from '../lib/timeline';
import type { Role } from '../lib/types';
import { Composer } from './Composer';
import { MessageList } from './MessageList';
import { TypingIndicator } from './TypingIndicator';

export interface ConversationProps {
  sessionId: string;
  chat: UseChatSocketResult;
  /** Whether the user may write here now. */
  canWrite: boolean;
  /** Shown instead of the message box when writing is not possible. */
  footer?: ReactNode;
  empty?: string;
  /** Mark incoming messages read while shown (not for a preview of someone else's chat). */
  markRead?: boolean;
  /** Focus the message box when it appears. */
  focusComposer?: boolean;
  /** Offer the "Internal note" switch in the message box (staff who may write). */
  allowNotes?: boolean;
}

export function roleLabel(role: Role | null): string {
  return role === 'customer' ? 'Customer' : role === 'agent' ? 'Agent' : role === 'admin' ? 'Supervisor' : '';
}

export function Conversation({ sessionId, chat, canWrite, footer, empty, markRead = true, focusComposer = false, allowNotes = false }: ConversationProps) {
  const client = useChatClient();
  const visible = usePageVisible();
  const uploads = useUploads(sessionId);
  const [dragging, setDragging] = useState(false);
  const [reactError, setReactError] = useState<string | null>(null);

  const { react, sendMessage } = chat;
  const onReact = useCallback(
    (seq: number, emoji: string, on: boolean) => {
      setReactError(null);
      react(seq, emoji, on).catch((error: unknown) => setReactError(`The reaction was not saved: ${error instanceof Error ? error.message : String(error)}`));
    },
    [react],
  );

  const send = (content: string, internal: boolean) => {
    const attachments = uploads.ready();
    const id = sendMessage(content, { attachments, internal });
    if (id) uploads.clear();
  };

  const dropProps = canWrite
    ? {
        onDragOver: (e: DragEvent) => {
          if (!e.dataTransfer.types.includes('Files')) return;
          e.preventDefault();
          e.dataTransfer.dropEffect = 'copy';
          setDragging(true);
        },
        onDragLeave: (e: DragEvent) => {
          if (e.currentTarget === e.target || !e.currentTarget.contains(e.relatedTarget as Node | null)) setDragging(false);
        },
        onDrop: (e: DragEvent) => {
          if (!e.dataTransfer.files.length) return;
          e.preventDefault();
          setDragging(false);
          uploads.add(e.dataTransfer.files);
        },
      }
    : {};

  useEffect(() => {
    client.setVisibleSession(sessionId);
    return () => {
      if (client.getVisibleSession() === sessionId) client.setVisibleSession(null);
    };
  }, [client, sessionId]);

  const lastIncoming = (() => {
    for (let i = chat.messages.length - 1; i >= 0; i--) {
      const m = chat.messages[i]!;
      if (m.senderId !== client.user.userId) return m.seq;
    }
    return 0;
  })();

  const { markRead: mark, joined, isConnected, myReadSeq } = chat;
  useEffect(() => {
    if (markRead && visible && joined && isConnected && lastIncoming > myReadSeq) mark(lastIncoming);
  }, [markRead, visible, joined, isConnected, lastIncoming, myReadSeq, mark]);

  const session = chat.session;
  const names = useMemo<EventNames>(() => {
    const known = namesFrom(chat.messages, chat.events, {
      [client.user.userId]: client.user.name,
      ...(session ? { [session.customerId]: session.customerName, ...(session.agentId ? { [session.agentId]: session.agentName } : {}) } : {}),
      ...Object.fromEntries((session?.participants ?? []).map((p) => [p.userId, p.name])),
    });
    return { me: client.user.userId, nameOf: (id) => known.get(id) ?? client.agentName(id) };
  }, [chat.messages, chat.events, session, client]);

  const waitingHint =
    chat.connectionStatus === 'connected'
      ? null
      : 'Not connected: messages you send now wait here and go out when the connection is back.';

  return (
    <div className={`conversation ${dragging ? 'is-dropping' : ''}`} {...dropProps} data-testid="conversation">
      {dragging && (
        <div className="drop-hint" aria-hidden="true">
          Drop files to attach them
        </div>
      )}
      <MessageList
        items={chat.items}
        onRetry={chat.retryMessage}
        onDiscard={chat.discardMessage}
        hasEarlier={chat.hasEarlier}
        onLoadEarlier={chat.loadEarlier}
        empty={empty ?? 'No messages yet.'}
        roleLabel={roleLabel}
        events={chat.events}
        names={names}
        staffView={client.user.role !== 'customer'}
        notes={chat.notes}
        me={client.user.userId}
        {...(canWrite ? { onReact } : {})}
      />
      <TypingIndicator users={chat.typingUsers} />
      {chat.error && chat.error.code !== 'timeout' && (
        <p className="inline-error" role="alert">
          {chat.error.message}
        </p>
      )}
      {reactError && (
        <p className="inline-error" role="alert">
          {reactError}
        </p>
      )}
      {canWrite ? (
        <Composer onSend={send} onTyping={chat.sendTyping} uploads={uploads} allowNotes={allowNotes} hint={waitingHint} autoFocus={focusComposer} />
      ) : (
        footer
      )}
    </div>
  );
}
