// Provides one ChatClient (and, for agents and admins, one AgentDesk) to
// every screen of a signed-in user, and the small hooks that read them.

import { createContext, useContext, useEffect, useRef, useState, useSyncExternalStore, type ReactNode } from 'react';
import type { Auth } from '../lib/auth';
import { fetchDevToken } from '../lib/api';
import { TokenSource } from '../lib/tokenSource';
import websocketConfig, { type WebSocketConfig } from '../config/websocket.config';
import { AgentDesk, type DeskState } from './AgentDesk';
import { ChatClient, type ConnectionInfo } from './ChatClient';

interface ChatContextValue {
  client: ChatClient;
  desk: AgentDesk | null;
}

const ChatContext = createContext<ChatContextValue | null>(null);

export interface ChatProviderProps {
  auth: Auth;
  config?: WebSocketConfig;
  /** Called with each token minted to replace an expiring one (to keep it for a reload). */
  onTokenRenewed?: (auth: Auth) => void;
  children: ReactNode;
}

/** The token source of a sign-in: renewable through the development endpoint, or the host's `mint`. */
export function tokenSourceFor(auth: Auth, serverUrl: string, onRenewed?: (auth: Auth) => void): TokenSource {
  const dev = auth.dev;
  const mint = dev ? async () => (await fetchDevToken(serverUrl, dev)).token : (auth.mint ?? null);
  return new TokenSource({
    token: auth.token,
    mint,
    ...(onRenewed ? { onRenewed: (token: string) => onRenewed({ ...auth, token }) } : {}),
  });
}

export function ChatProvider({ auth, config, onTokenRenewed, children }: ChatProviderProps) {
  const [value, setValue] = useState<ChatContextValue | null>(null);
  const renewed = useRef(onTokenRenewed);
  renewed.current = onTokenRenewed;
  useEffect(() => {
    const tokens = tokenSourceFor(auth, (config ?? websocketConfig).serverUrl, (next) => renewed.current?.(next));
    const client = new ChatClient({ token: auth.token, tokens, user: auth.user, ...(config ? { config } : {}) });
    const desk = auth.user.role === 'customer' ? null : new AgentDesk(client);
    desk?.start();
    // Connect after a tick: a provider mounted and unmounted at once (React's
    // StrictMode does that in development) then never opens a socket.
    const timer = setTimeout(() => client.start(), 0);
    setValue({ client, desk });
    return () => {
      clearTimeout(timer);
      desk?.stop();
      client.stop();
    };
    // A new token for the same sign-in needs no new client: auth.token changes only on a new sign-in.
  }, [auth.token, auth.user, config]);
  if (!value) return null;
  return <ChatContext.Provider value={value}>{children}</ChatContext.Provider>;
}

export function useChatClient(): ChatClient {
  const value = useContext(ChatContext);
  if (!value) throw new Error('useChatClient must be used inside <ChatProvider>');
  return value.client;
}

export function useAgentDesk(): AgentDesk | null {
  return useContext(ChatContext)?.desk ?? null;
}

const EMPTY_DESK: DeskState = { queue: [], mine: [], closedInfo: {}, queuedAt: {}, loaded: false, error: null };

export function useDeskState(): DeskState {
  const desk = useAgentDesk();
  return useSyncExternalStore(
    desk ? desk.subscribe : noopSubscribe,
    desk ? desk.getState : () => EMPTY_DESK,
  );
}

export function useConnection(): ConnectionInfo {
  const client = useChatClient();
  return useSyncExternalStore(client.subscribeConnection, client.getConnection);
}

/** Total unread messages over the watched sessions. */
export function useTotalUnread(): number {
  const client = useChatClient();
  useSyncExternalStore(client.subscribeAll, client.getAllVersion);
  return client.totalUnread();
}

function noopSubscribe(): () => void {
  return () => undefined;
}
