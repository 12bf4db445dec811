// The REST API of docs/protocol.md (base /api/chat) and the development token
// endpoint, with errors turned into `ApiError` carrying the protocol's code.

import { decodeClaims, type TokenSource } from './tokenSource';
import type { AgentEntry, Attachment, ChatErrorBody, ChatUser, Message, MessagePage, QueueEntry, Session, SessionEvent, SessionPage, SessionStatus, Stats } from './types';

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get body(): ChatErrorBody {
    return { code: this.code, message: this.message };
  }
}

async function request<T>(baseUrl: string, path: string, init: { method?: string; token?: string; body?: unknown } = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (init.token) headers.Authorization = `Bearer ${init.token}`;
  if (init.body !== undefined) headers['Content-Type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(`${baseUrl}${path}`, {
      method: init.method ?? 'GET',
      headers,
      body: init.body === undefined ? null : JSON.stringify(init.body),
    });
  } catch {
    throw new ApiError('network', 'The chat server cannot be reached. Check your connection and try again.', 0);
  }
  const text = await response.text();
  let data: unknown = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = (data as { error?: ChatErrorBody } | null)?.error;
    throw new ApiError(error?.code ?? `http_${response.status}`, error?.message ?? (text || response.statusText), response.status);
  }
  return data as T;
}

/** What the development sign-in asked for: enough to mint another token for the same user. */
export interface DevTokenRequest {
  userId: string;
  name: string;
  role: ChatUser['role'];
  pools?: string[];
}

export async function fetchDevToken(baseUrl: string, body: DevTokenRequest): Promise<{ token: string; user: ChatUser }> {
  return request(baseUrl, '/api/dev/token', { method: 'POST', body });
}

/** What ChatApi needs of a token source (see lib/tokenSource). */
export type TokenProvider = Pick<TokenSource, 'getFreshToken' | 'renew' | 'renewable'>;

/** Seconds of clock difference allowed when deciding that a refused token had expired. */
const EXPIRY_SKEW_S = 5;

function expiredToken(token: string, now: number): boolean {
  const { exp } = decodeClaims(token);
  return exp !== null && exp - EXPIRY_SKEW_S <= now / 1000;
}

/** The chat REST API for one signed-in user. */
export class ChatApi {
  private readonly tokens: TokenProvider;

  constructor(
    private readonly baseUrl: string,
    token: string | TokenProvider,
  ) {
    this.tokens = typeof token === 'string' ? { getFreshToken: async () => token, renew: () => Promise.reject(new Error('not renewable')), renewable: false } : token;
  }

  private async call<T>(path: string, method = 'GET', body?: unknown): Promise<T> {
    const token = await this.tokens.getFreshToken();
    try {
      return await request<T>(this.baseUrl, `/api/chat${path}`, { method, token, body });
    } catch (error) {
      // A token that expired on the way: renew once and try again.
      if (!(error instanceof ApiError) || error.status !== 401 || !this.tokens.renewable || !expiredToken(token, Date.now())) throw error;
      let fresh: string;
      try {
        fresh = await this.tokens.renew();
      } catch {
        throw error;
      }
      return request<T>(this.baseUrl, `/api/chat${path}`, { method, token: fresh, body });
    }
  }

  createSession(body: { subject?: string; pool?: string; message?: string }): Promise<Session> {
    return this.call('/sessions', 'POST', body);
  }

  listSessions(query: { status?: SessionStatus; pool?: string; limit?: number; cursor?: string } = {}): Promise<SessionPage> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') params.set(k, String(v));
    const qs = params.toString();
    return this.call(`/sessions${qs ? `?${qs}` : ''}`);
  }

  /** Every session of a status, following cursors (bounded). */
  async allSessions(status: SessionStatus, maxPages = 10): Promise<Session[]> {
    const items: Session[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < maxPages; page++) {
      const result = await this.listSessions({ status, limit: 200, ...(cursor ? { cursor } : {}) });
      items.push(...result.items);
      if (!result.nextCursor) break;
      cursor = result.nextCursor;
    }
    return items;
  }

  getSession(id: string): Promise<Session> {
    return this.call(`/sessions/${encodeURIComponent(id)}`);
  }

  messages(id: string, query: { afterSeq?: number; beforeSeq?: number; limit?: number }): Promise<MessagePage> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
    return this.call(`/sessions/${encodeURIComponent(id)}/messages?${params.toString()}`);
  }

  postMessage(id: string, content: string, clientMsgId: string): Promise<Message> {
    return this.call(`/sessions/${encodeURIComponent(id)}/messages`, 'POST', { content, clientMsgId });
  }

  assign(id: string, agentId?: string): Promise<Session> {
    return this.call(`/sessions/${encodeURIComponent(id)}/assign`, 'POST', agentId ? { agentId } : {});
  }

  transfer(id: string, target: { agentId?: string; pool?: string }): Promise<Session> {
    return this.call(`/sessions/${encodeURIComponent(id)}/transfer`, 'POST', target);
  }

  close(id: string, reason?: string): Promise<Session> {
    return this.call(`/sessions/${encodeURIComponent(id)}/close`, 'POST', reason ? { reason } : {});
  }

  /** The agents who serve `pool` (those who have connected), sorted by name; without a pool, those of the caller's pools (admins: everyone). */
  agents(pool?: string): Promise<{ items: AgentEntry[] }> {
    return this.call(`/agents${pool ? `?pool=${encodeURIComponent(pool)}` : ''}`);
  }

  /** Invites a colleague into the session (its assigned agent, admins). */
  invite(id: string, agentId: string): Promise<Session> {
    return this.call(`/sessions/${encodeURIComponent(id)}/participants`, 'POST', { agentId });
  }

  /** A colleague leaves (themself), or is let go by the assigned agent or an admin. */
  removeParticipant(id: string, agentId: string): Promise<Session> {
    return this.call(`/sessions/${encodeURIComponent(id)}/participants/${encodeURIComponent(agentId)}`, 'DELETE');
  }

  /** Internal notes, paged like messages by their own seq (staff only). */
  notes(id: string, query: { afterSeq?: number; beforeSeq?: number; limit?: number } = {}): Promise<MessagePage> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
    return this.call(`/sessions/${encodeURIComponent(id)}/notes?${params.toString()}`);
  }

  /** Where a file is uploaded to (the raw body, its name in the query). */
  uploadUrl(id: string, name: string): string {
    return `${this.baseUrl}/api/chat/sessions/${encodeURIComponent(id)}/attachments?name=${encodeURIComponent(name)}`;
  }

  /** A token for a request made outside `call` (an upload over XMLHttpRequest). */
  token(): Promise<string> {
    return this.tokens.getFreshToken();
  }

  /** An attachment's bytes, fetched with the token (an <img> or a link cannot send it). */
  async download(attachment: Pick<Attachment, 'id' | 'sessionId'>): Promise<Blob> {
    const path = `/api/chat/sessions/${encodeURIComponent(attachment.sessionId)}/attachments/${encodeURIComponent(attachment.id)}`;
    const token = await this.tokens.getFreshToken();
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, { headers: { Authorization: `Bearer ${token}` } });
    } catch {
      throw new ApiError('network', 'The chat server cannot be reached.', 0);
    }
    if (!response.ok) {
      let body: { error?: ChatErrorBody } | null = null;
      try {
        body = (await response.json()) as { error?: ChatErrorBody };
      } catch {
        body = null;
      }
      throw new ApiError(body?.error?.code ?? `http_${response.status}`, body?.error?.message ?? response.statusText, response.status);
    }
    return response.blob();
  }

  /** The session's latest timeline entries (SessionEvent), oldest first. */
  events(id: string): Promise<{ items: SessionEvent[] }> {
    return this.call(`/sessions/${encodeURIComponent(id)}/events`);
  }

  /** The waiting sessions in queue order, each with when it entered the queue. */
  queue(pool?: string): Promise<{ items: QueueEntry[] }> {
    return this.call(`/queue${pool ? `?pool=${encodeURIComponent(pool)}` : ''}`);
  }

  stats(pool?: string): Promise<Stats> {
    return this.call(`/stats${pool ? `?pool=${encodeURIComponent(pool)}` : ''}`);
  }
}
