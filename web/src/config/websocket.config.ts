// Connection settings of the chat UI: where the server is, how reconnection
// backs off, and how long the UI waits for the server and for a typist.

/** Where the chat server is when nothing else says. */
export const DEFAULT_SERVER_URL = 'http://localhost:3001';

/**
 * The server's base URL: `VITE_API_URL` when the build sets it; otherwise
 * the page's own origin when the gateway (or the dev server's proxy) serves
 * the page; otherwise `http://localhost:3001`.
 */
export function resolveServerUrl(fromEnv: string | undefined, location: { protocol: string; origin: string } | undefined): string {
  const explicit = fromEnv?.trim();
  if (explicit) return explicit.replace(/\/+$/, '');
  if (location && (location.protocol === 'http:' || location.protocol === 'https:')) return location.origin;
  return DEFAULT_SERVER_URL;
}

export interface ReconnectionConfig {
  /** Reconnect by itself after a lost connection. */
  enabled: boolean;
  /** Attempts before giving up and offering a manual retry. */
  attempts: number;
  /** First delay (ms); it doubles per attempt, with jitter. */
  delay: number;
  /** Longest delay (ms) between two attempts. */
  maxDelay: number;
}

export interface WebSocketConfig {
  serverUrl: string;
  /** Socket.IO namespace of the chat. */
  namespace: string;
  /** The only transport: works behind load balancers without sticky sessions. */
  transports: ['websocket'];
  reconnection: ReconnectionConfig;
  timeouts: {
    /** Connecting, and waiting for an acknowledgement (ms). */
    connection: number;
    /** Input silence after which the user stops "typing" (ms). */
    typing: number;
  };
}

const env = (import.meta as ImportMeta & { env?: Record<string, string | boolean | undefined> }).env;
// Under the dev server, VITE_API_URL is where its proxy forwards /api and
// /socket.io; the page itself talks to its own origin.
const fromEnv = env?.DEV === true ? undefined : (env?.VITE_API_URL as string | undefined);

export const websocketConfig: WebSocketConfig = {
  serverUrl: resolveServerUrl(fromEnv, typeof window === 'undefined' ? undefined : window.location),
  namespace: '/chat',
  transports: ['websocket'],
  reconnection: {
    enabled: true,
    attempts: 10,
    delay: 1000,
    maxDelay: 5000,
  },
  timeouts: {
    connection: 10000,
    typing: 3000,
  },
};

export default websocketConfig;
