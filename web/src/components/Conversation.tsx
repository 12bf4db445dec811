// One conversation on screen: the messages, who is typing, and the message
// box (or what replaces it: a closed notice, a "take this chat" bar). While
// it is on screen and the page is visible it marks incoming messages read
// and tells the notifications not to announce them.

import { useEffect, useMemo, type ReactNode } from 'react';
import { useChatClient } from '../chat/ChatContext';
import type { UseChatSocketResult } from '../chat/useChatSocket';
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
}

export function roleLabel(role: Role | null): string {
  return role === 'customer' ? 'Customer' : role === 'agent' ? 'Agent' : role === 'admin' ? 'Supervisor' : '';
}

export function Conversation({ sessionId, chat, canWrite, footer, empty, markRead = true, focusComposer = false }: ConversationProps) {
  const client = useChatClient();
  const visible = usePageVisible();

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
    });
    return { me: client.user.userId, nameOf: (id) => known.get(id) ?? client.agentName(id) };
  }, [chat.messages, chat.events, session, client]);

  const waitingHint =
    chat.connectionStatus === 'connected'
      ? null
      : 'Not connected: messages you send now wait here and go out when the connection is back.';

  return (
    <div className="conversation">
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
      />
      <TypingIndicator users={chat.typingUsers} />
      {chat.error && chat.error.code !== 'timeout' && (
        <p className="inline-error" role="alert">
          {chat.error.message}
        </p>
      )}
      {canWrite ? <Composer onSend={(c) => chat.sendMessage(c)} onTyping={chat.sendTyping} hint={waitingHint} autoFocus={focusComposer} /> : footer}
    </div>
  );
}
