// Notifications: toasts for new pending chats (agents) and for messages in
// chats that are not on screen, chats transferred to the agent, an unread
// count in the tab title, and an optional chime.

import { useCallback, useEffect, useRef, useState } from 'react';
import { useAgentDesk, useChatClient, useTotalUnread } from '../chat/ChatContext';
import { playChime } from '../lib/sound';
import type { Session } from '../lib/types';

export interface Toast {
  id: number;
  title: string;
  body: string;
  tone: 'info' | 'new' | 'warn';
  action?: { label: string; run: () => void };
  /** The chat it is about and what it said of it: it goes once the chat is no longer so. */
  about?: { sessionId: string; still: (session: Session) => boolean };
}

const TOAST_MS = 8000;
const MAX_TOASTS = 4;

export interface ChatNotificationProps {
  /** Opens a chat (from a toast's button). */
  onOpenSession: (sessionId: string) => void;
  /** Opens the queue (agents). */
  onOpenQueue: () => void;
  /** The page title without the unread count. */
  baseTitle?: string;
}

export function ChatNotification({ onOpenSession, onOpenQueue, baseTitle = 'Support chat' }: ChatNotificationProps) {
  const client = useChatClient();
  const desk = useAgentDesk();
  const unread = useTotalUnread();
  const [toasts, setToasts] = useState<Toast[]>([]);
  const nextId = useRef(1);
  const timers = useRef(new Map<number, ReturnType<typeof setTimeout>>());

  const dismiss = useCallback((id: number) => {
    const timer = timers.current.get(id);
    if (timer) clearTimeout(timer);
    timers.current.delete(id);
    setToasts((list) => list.filter((t) => t.id !== id));
  }, []);

  const push = useCallback(
    (toast: Omit<Toast, 'id'>, chime = true) => {
      const id = nextId.current++;
      setToasts((list) => [...list, { ...toast, id }].slice(-MAX_TOASTS));
      timers.current.set(
        id,
        setTimeout(() => dismiss(id), TOAST_MS),
      );
      if (chime) playChime();
    },
    [dismiss],
  );

  useEffect(() => {
    const all = timers.current;
    return () => {
      for (const timer of all.values()) clearTimeout(timer);
      all.clear();
    };
  }, []);

  useEffect(() => {
    const me = client.user.userId;
    const offs = [
      client.on('new-message', (message) => {
        if (message.senderId === me) return;
        const onScreen = client.getVisibleSession() === message.sessionId && document.visibilityState === 'visible';
        if (onScreen) return;
        push({
          title: `New message from ${message.senderName}`,
          body: message.content.length > 120 ? `${message.content.slice(0, 117)}…` : message.content,
          tone: 'info',
          action: { label: 'Open', run: () => onOpenSession(message.sessionId) },
        });
      }),
    ];
    if (client.user.role !== 'customer') {
      offs.push(
        client.on('new-pending-session', ({ session }) => {
          push({
            title: 'New chat waiting',
            body: `${session.customerName}${session.subject ? `: ${session.subject}` : ''}`,
            tone: 'new',
            action: { label: 'View queue', run: () => onOpenQueue() },
            about: { sessionId: session.id, still: (s) => s.status === 'pending' },
          });
        }),
      );
    }
    if (desk) {
      offs.push(
        desk.onEvent((event) => {
          if (event.type === 'transferred-in' && event.session.assignedAt && Date.now() - Date.parse(event.session.assignedAt) < 60_000) {
            push({
              title: 'Chat assigned to you',
              body: `${event.session.customerName}${event.session.subject ? `: ${event.session.subject}` : ''}`,
              tone: 'new',
              action: { label: 'Open', run: () => onOpenSession(event.session.id) },
              about: { sessionId: event.session.id, still: (s) => s.status === 'active' && s.agentId === me },
            });
          }
          if (event.type === 'invited') {
            push({
              title: 'You were invited to a chat',
              body: `${event.session.agentName ?? 'An agent'} with ${event.session.customerName}${event.session.subject ? `: ${event.session.subject}` : ''}`,
              tone: 'new',
              action: { label: 'Open', run: () => onOpenSession(event.session.id) },
              about: { sessionId: event.session.id, still: (s) => s.status === 'active' && (s.participants ?? []).some((p) => p.userId === me) },
            });
          }
        }),
      );
    }
    // A toast about a chat that has since changed hands (taken, transferred, closed) is out of date.
    const dropStale = (sessionId: string, session: Session | null) => {
      setToasts((list) => {
        const kept = list.filter((t) => !t.about || t.about.sessionId !== sessionId || (session !== null && t.about.still(session)));
        return kept.length === list.length ? list : kept;
      });
    };
    offs.push(
      client.on('session-updated', ({ session }) => dropStale(session.id, session)),
      client.on('session-closed', ({ sessionId }) => dropStale(sessionId, null)),
    );
    return () => {
      for (const off of offs) off();
    };
  }, [client, desk, push, onOpenSession, onOpenQueue]);

  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) ${baseTitle}` : baseTitle;
  }, [unread, baseTitle]);
  useEffect(() => () => void (document.title = baseTitle), [baseTitle]);

  return (
    <section className="toasts" aria-label="Notifications" aria-live="polite" data-testid="toasts">
      {toasts.map((toast) => (
        <div key={toast.id} className={`toast toast-${toast.tone}`} data-testid="toast">
          <div className="toast-text">
            <strong className="toast-title">{toast.title}</strong>
            <span className="toast-body">{toast.body}</span>
          </div>
          <button type="button" className="icon-btn toast-close" aria-label="Dismiss notification" onClick={() => dismiss(toast.id)}>
            ×
          </button>
          {toast.action && (
            <div className="toast-actions">
              <button
                type="button"
                className="btn btn-small btn-primary"
                onClick={() => {
                  toast.action!.run();
                  dismiss(toast.id);
                }}
              >
                {toast.action.label}
              </button>
            </div>
          )}
        </div>
      ))}
    </section>
  );
}
